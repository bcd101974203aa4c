package httpserver

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventpipe/eventpipe/pkg/config"
)

// probeTarget serves a real engine whose one readiness check fails while
// down is set; it returns the server and its port.
func probeTarget(t *testing.T, down *atomic.Bool) (*httptest.Server, string) {
	t.Helper()
	e := newEngine(t, slog.LevelInfo, Check{Name: "nats", Fn: func(context.Context) error {
		if down.Load() {
			return errors.New("not connected")
		}
		return nil
	}})
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return srv, u.Port()
}

// closedPort returns a port nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	ln.Close()
	return port
}

func TestProbe(t *testing.T) {
	var down atomic.Bool
	srv, _ := probeTarget(t, &down)

	if err := Probe(context.Background(), srv.URL+"/readyz"); err != nil {
		t.Errorf("ready service: got %v; want nil", err)
	}
	down.Store(true)
	err := Probe(context.Background(), srv.URL+"/readyz")
	if err == nil || !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), `"check":"nats"`) {
		t.Errorf("service not ready: got %v; want an error with 503 and the failing check", err)
	}
	if err := Probe(context.Background(), srv.URL+"/no-such-path"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("unknown path: got %v; want a 404 error", err)
	}
	if err := Probe(context.Background(), "http://127.0.0.1:"+closedPort(t)+"/readyz"); err == nil {
		t.Error("nothing listening: got nil; want an error")
	}
}

// A redirect is not a 200: the probe must not follow it to a page that is.
func TestProbeRedirectFails(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/elsewhere" {
			w.WriteHeader(http.StatusOK)
			return
		}
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	}))
	defer srv.Close()
	if err := Probe(context.Background(), srv.URL+"/readyz"); err == nil || !strings.Contains(err.Error(), "302") {
		t.Errorf("got %v; want a 302 error", err)
	}
}

// A service that accepts the connection but never answers fails the probe
// when its context ends.
func TestProbeDeadline(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := Probe(ctx, srv.URL+"/readyz"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got %v; want context.DeadlineExceeded", err)
	}
}

func TestHealthCheck(t *testing.T) {
	var down atomic.Bool
	_, port := probeTarget(t, &down)
	closed := closedPort(t)
	defaultPort, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name       string
		env        map[string]string
		down       bool
		wantCode   int
		wantStderr string
	}{
		{"ready", map[string]string{"PORT": port}, false, 0, ""},
		{"not ready", map[string]string{"PORT": port}, true, 1, "healthcheck: GET http://127.0.0.1:" + port + "/readyz: 503 "},
		{"PORT unset probes the default port", map[string]string{}, false, 0, ""},
		{"nothing listening", map[string]string{"PORT": closed}, false, 1, "healthcheck: "},
		{"invalid PORT", map[string]string{"PORT": "http"}, false, 1, "healthcheck: PORT: must be an integer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			down.Store(tt.down)
			var stderr bytes.Buffer
			code := HealthCheck(config.MapLookup(tt.env), defaultPort, &stderr)
			if code != tt.wantCode {
				t.Errorf("exit code: got %d; want %d (stderr %q)", code, tt.wantCode, stderr.String())
			}
			if tt.wantStderr == "" && stderr.Len() != 0 {
				t.Errorf("stderr: got %q; want nothing", stderr.String())
			}
			if tt.wantStderr != "" && (!strings.HasPrefix(stderr.String(), tt.wantStderr) || strings.Count(stderr.String(), "\n") != 1) {
				t.Errorf("stderr: got %q; want one line starting %q", stderr.String(), tt.wantStderr)
			}
		})
	}
}
