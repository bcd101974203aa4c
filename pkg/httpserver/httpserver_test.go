package httpserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
)

// TestMain checks that no test leaves a server or handler goroutine behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// engine is an engine whose logs land in a buffer. Tests drive it with
// ServeHTTP, so the buffer is only read after the request returned.
type engine struct {
	*gin.Engine
	logs  *bytes.Buffer
	ready *Readiness
	reg   *prometheus.Registry
}

func newEngine(t *testing.T, level slog.Level, checks ...Check) engine {
	t.Helper()
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: level}))
	ready := NewReadiness(checks...)
	reg := prometheus.NewRegistry()
	return engine{NewEngine(logger, ready, reg), &logs, ready, reg}
}

func (e engine) do(method, path string, header http.Header) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, nil)
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	return rec
}

// lines returns the JSON log lines written so far.
func (e engine) lines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(e.logs.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: got %v; want JSON", l, err)
		}
		out = append(out, m)
	}
	return out
}

func decode[T any](t *testing.T, rec *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatalf("body %q: got %v; want JSON", rec.Body, err)
	}
	return v
}

func TestHealthz(t *testing.T) {
	e := newEngine(t, slog.LevelInfo, Check{Name: "nats", Fn: func(context.Context) error { return errors.New("down") }})
	rec := e.do(http.MethodGet, "/healthz", nil)
	if rec.Code != http.StatusOK {
		t.Errorf("status: got %d; want 200 even with a failing readiness check", rec.Code)
	}
	if got := decode[map[string]string](t, rec)["status"]; got != "ok" {
		t.Errorf("status field: got %q; want ok", got)
	}
}

func TestReadyz(t *testing.T) {
	pass := func(context.Context) error { return nil }
	fail := func(context.Context) error { return errors.New("nats RECONNECTING") }
	cases := []struct {
		name       string
		checks     []Check
		drain      bool
		wantStatus int
		wantCheck  string
		wantError  string
	}{
		{name: "no checks", wantStatus: http.StatusOK},
		{name: "all pass", checks: []Check{{"nats", pass}, {"postgres", pass}}, wantStatus: http.StatusOK},
		{
			name:       "one fails",
			checks:     []Check{{"nats", pass}, {"postgres", fail}},
			wantStatus: http.StatusServiceUnavailable, wantCheck: "postgres", wantError: "nats RECONNECTING",
		},
		{
			name:       "first failure named",
			checks:     []Check{{"nats", fail}, {"postgres", fail}},
			wantStatus: http.StatusServiceUnavailable, wantCheck: "nats", wantError: "nats RECONNECTING",
		},
		{
			name:       "drained",
			checks:     []Check{{"nats", pass}},
			drain:      true,
			wantStatus: http.StatusServiceUnavailable, wantCheck: "shutdown", wantError: "shutting down",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEngine(t, slog.LevelInfo, tc.checks...)
			if tc.drain {
				e.ready.Drain()
			}
			rec := e.do(http.MethodGet, "/readyz", nil)
			if rec.Code != tc.wantStatus {
				t.Errorf("status: got %d; want %d", rec.Code, tc.wantStatus)
			}
			body := decode[map[string]string](t, rec)
			if tc.wantStatus == http.StatusOK {
				if body["status"] != "ready" {
					t.Errorf("status field: got %q; want ready", body["status"])
				}
				return
			}
			if body["status"] != "not ready" || body["check"] != tc.wantCheck || body["error"] != tc.wantError {
				t.Errorf("body: got %v; want status %q, check %q, error %q", body, "not ready", tc.wantCheck, tc.wantError)
			}
		})
	}
}

func TestReadyzCheckGetsDeadline(t *testing.T) {
	var hasDeadline bool
	e := newEngine(t, slog.LevelInfo, Check{Name: "db", Fn: func(ctx context.Context) error {
		_, hasDeadline = ctx.Deadline()
		return nil
	}})
	e.do(http.MethodGet, "/readyz", nil)
	if !hasDeadline {
		t.Errorf("check context deadline: got none; want one so a hung dependency cannot hang the probe")
	}
}

func TestMetrics(t *testing.T) {
	e := newEngine(t, slog.LevelInfo)
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "test_events_total", Help: "Events seen by the test."})
	e.reg.MustRegister(c)
	c.Add(3)
	rec := e.do(http.MethodGet, "/metrics", nil)
	if rec.Code != http.StatusOK {
		t.Fatalf("status: got %d; want 200", rec.Code)
	}
	if want := "test_events_total 3"; !strings.Contains(rec.Body.String(), want) {
		t.Errorf("body: got %q; want it to contain %q", rec.Body, want)
	}
}

func TestErrorShape(t *testing.T) {
	cases := []struct {
		name       string
		method     string
		path       string
		wantStatus int
		wantCode   string
	}{
		{"unknown path", http.MethodGet, "/nope", http.StatusNotFound, "not_found"},
		{"unknown nested path", http.MethodPost, "/a/b/c", http.StatusNotFound, "not_found"},
		{"wrong method on probe", http.MethodPost, "/healthz", http.StatusMethodNotAllowed, "method_not_allowed"},
		{"wrong method on metrics", http.MethodDelete, "/metrics", http.StatusMethodNotAllowed, "method_not_allowed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEngine(t, slog.LevelInfo)
			rec := e.do(tc.method, tc.path, nil)
			if rec.Code != tc.wantStatus {
				t.Errorf("status: got %d; want %d", rec.Code, tc.wantStatus)
			}
			if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type: got %q; want application/json", ct)
			}
			body := decode[ErrorBody](t, rec)
			if body.Error.Code != tc.wantCode || body.Error.Message == "" {
				t.Errorf("error: got %+v; want code %q and a message", body.Error, tc.wantCode)
			}
			if rec.Header().Get(HeaderCorrelationID) == "" {
				t.Errorf("%s: got none; want one on error responses too", HeaderCorrelationID)
			}
		})
	}
}

var generatedID = regexp.MustCompile(`^[0-9a-f]{32}$`)

func TestCorrelationIDFromRequest(t *testing.T) {
	long := strings.Repeat("a", 129)
	cases := []struct {
		name   string
		header http.Header
		want   string // "" means a generated id
	}{
		{name: "correlation id echoed", header: http.Header{HeaderCorrelationID: {"abc-123"}}, want: "abc-123"},
		{name: "request id used", header: http.Header{HeaderRequestID: {"req-7"}}, want: "req-7"},
		{name: "correlation id wins", header: http.Header{HeaderCorrelationID: {"corr-1"}, HeaderRequestID: {"req-1"}}, want: "corr-1"},
		{name: "unsafe correlation id falls back", header: http.Header{HeaderCorrelationID: {"a b"}, HeaderRequestID: {"req-2"}}, want: "req-2"},
		{name: "absent", header: nil},
		{name: "too long", header: http.Header{HeaderCorrelationID: {long}}},
		{name: "space", header: http.Header{HeaderCorrelationID: {"a b"}}},
		{name: "control character", header: http.Header{HeaderCorrelationID: {"a\x01b"}}},
		{name: "header injection", header: http.Header{HeaderRequestID: {"a\r\nSet-Cookie: x=1"}}},
		{name: "non-ASCII", header: http.Header{HeaderCorrelationID: {"idé"}}},
		{name: "both unsafe", header: http.Header{HeaderCorrelationID: {long}, HeaderRequestID: {"x\ty"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEngine(t, slog.LevelInfo)
			e.GET("/echo", func(c *gin.Context) { c.String(http.StatusOK, CorrelationID(c.Request.Context())) })
			rec := e.do(http.MethodGet, "/echo", tc.header)
			got := rec.Header().Get(HeaderCorrelationID)
			switch {
			case tc.want != "" && got != tc.want:
				t.Errorf("%s: got %q; want %q", HeaderCorrelationID, got, tc.want)
			case tc.want == "" && !generatedID.MatchString(got):
				t.Errorf("%s: got %q; want a generated 32-hex-character id", HeaderCorrelationID, got)
			}
			if inHandler := rec.Body.String(); inHandler != got {
				t.Errorf("CorrelationID in handler: got %q; want the response header %q", inHandler, got)
			}
		})
	}
}

func TestSanitizeCorrelationID(t *testing.T) {
	cases := []struct {
		name string
		id   string
		want string
	}{
		{"plain", "abc-123", "abc-123"},
		{"uuid", "0b9c7a1e-3f2d-4c5b-8a6e-1d2f3a4b5c6d", "0b9c7a1e-3f2d-4c5b-8a6e-1d2f3a4b5c6d"},
		{"printable punctuation", "!#$%&'*+.^_`|~", "!#$%&'*+.^_`|~"},
		{"one character", "x", "x"},
		{"128 characters", strings.Repeat("a", 128), strings.Repeat("a", 128)},
		{"129 characters", strings.Repeat("a", 129), ""},
		{"empty", "", ""},
		{"space", "a b", ""},
		{"tab", "a\tb", ""},
		{"newline", "a\nb", ""},
		{"NUL", "a\x00b", ""},
		{"DEL", "a\x7fb", ""},
		{"non-ASCII", "idé", ""},
		{"emoji", "id🙂", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := SanitizeCorrelationID(tc.id); got != tc.want {
				t.Errorf("SanitizeCorrelationID(%q): got %q; want %q", tc.id, got, tc.want)
			}
		})
	}
}

func TestNewCorrelationID(t *testing.T) {
	a, b := NewCorrelationID(), NewCorrelationID()
	if !generatedID.MatchString(a) {
		t.Errorf("NewCorrelationID: got %q; want 32 hex characters", a)
	}
	if a == b {
		t.Errorf("NewCorrelationID twice: got %q both times; want different ids", a)
	}
}

func TestRequestLogLine(t *testing.T) {
	e := newEngine(t, slog.LevelInfo)
	e.POST("/work", func(c *gin.Context) {
		AddLogAttrs(c, "events", 7)
		AddLogAttrs(c, "source", "facebook", "rejected", 2)
		c.Status(http.StatusAccepted)
	})
	e.do(http.MethodPost, "/work", http.Header{HeaderCorrelationID: {"corr-42"}})
	lines := e.lines(t)
	if len(lines) != 1 {
		t.Fatalf("log lines: got %d (%v); want 1", len(lines), lines)
	}
	want := map[string]any{
		"level":          "INFO",
		"msg":            "request",
		"correlation_id": "corr-42",
		"method":         "POST",
		"path":           "/work",
		"status":         float64(http.StatusAccepted),
		"events":         float64(7),
		"source":         "facebook",
		"rejected":       float64(2),
	}
	for k, v := range want {
		if got := lines[0][k]; got != v {
			t.Errorf("%s: got %v; want %v", k, got, v)
		}
	}
	if _, ok := lines[0]["duration_ms"].(float64); !ok {
		t.Errorf("duration_ms: got %v; want a number", lines[0]["duration_ms"])
	}
}

func TestRequestLogLevel(t *testing.T) {
	failing := Check{Name: "nats", Fn: func(context.Context) error { return errors.New("down") }}
	cases := []struct {
		name      string
		path      string
		level     slog.Level
		wantLevel string // "" means no line
	}{
		{"healthz at info", "/healthz", slog.LevelInfo, ""},
		{"readyz at info", "/readyz", slog.LevelInfo, ""},
		{"metrics at info", "/metrics", slog.LevelInfo, ""},
		{"healthz at debug", "/healthz", slog.LevelDebug, "DEBUG"},
		{"failing readyz at debug", "/readyz", slog.LevelDebug, "DEBUG"},
		{"metrics at debug", "/metrics", slog.LevelDebug, "DEBUG"},
		{"not found at info", "/nope", slog.LevelInfo, "INFO"},
		{"server error at info", "/fail", slog.LevelInfo, "ERROR"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEngine(t, tc.level, failing)
			e.GET("/fail", func(c *gin.Context) { Error(c, http.StatusBadGateway, "upstream", "upstream failed") })
			e.do(http.MethodGet, tc.path, nil)
			lines := e.lines(t)
			if tc.wantLevel == "" {
				if len(lines) != 0 {
					t.Errorf("log lines: got %v; want none", lines)
				}
				return
			}
			if len(lines) != 1 {
				t.Fatalf("log lines: got %d (%v); want 1", len(lines), lines)
			}
			if got := lines[0]["level"]; got != tc.wantLevel {
				t.Errorf("level: got %v; want %s", got, tc.wantLevel)
			}
		})
	}
}

func TestPanicRecovered(t *testing.T) {
	e := newEngine(t, slog.LevelInfo)
	e.GET("/boom", func(*gin.Context) { panic("kaboom") })
	rec := e.do(http.MethodGet, "/boom", http.Header{HeaderCorrelationID: {"corr-boom"}})
	if rec.Code != http.StatusInternalServerError {
		t.Errorf("status: got %d; want 500", rec.Code)
	}
	if body := decode[ErrorBody](t, rec); body.Error.Code != "internal" || body.Error.Message == "" {
		t.Errorf("error: got %+v; want code internal and a message", body.Error)
	}
	if strings.Contains(rec.Body.String(), "kaboom") {
		t.Errorf("body: got %q; want the panic value kept out of the response", rec.Body)
	}

	lines := e.lines(t)
	var panicLine, requestLine map[string]any
	for _, l := range lines {
		switch l["msg"] {
		case "handler panic":
			panicLine = l
		case "request":
			requestLine = l
		}
	}
	if panicLine == nil || panicLine["panic"] != "kaboom" || panicLine["correlation_id"] != "corr-boom" || panicLine["level"] != "ERROR" {
		t.Errorf("panic log line: got %v; want an ERROR line with panic kaboom and correlation_id corr-boom (all lines: %v)", panicLine, lines)
	}
	if requestLine == nil || requestLine["status"] != float64(500) || requestLine["level"] != "ERROR" {
		t.Errorf("request log line: got %v; want an ERROR line with status 500", requestLine)
	}
}

// client never keeps connections, so none outlives a test.
var client = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

func TestServerLifecycle(t *testing.T) {
	e := newEngineDiscard()
	started, release := make(chan struct{}), make(chan struct{})
	e.GET("/slow", func(c *gin.Context) {
		close(started)
		<-release
		c.String(http.StatusOK, "finished")
	})
	s, err := Start("127.0.0.1:0", e, Options{})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}

	host, port, err := net.SplitHostPort(s.Addr())
	if err != nil || host != "127.0.0.1" || port == "0" {
		t.Fatalf("Addr: got %q (%v); want 127.0.0.1 with the bound port", s.Addr(), err)
	}
	if want := "http://" + s.Addr(); s.URL() != want {
		t.Errorf("URL: got %q; want %q", s.URL(), want)
	}
	resp, err := client.Get(s.URL() + "/healthz")
	if err != nil {
		t.Fatalf("GET /healthz: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /healthz: got %d; want 200", resp.StatusCode)
	}

	type result struct {
		status int
		body   string
		err    error
	}
	slow := make(chan result, 1)
	go func() {
		resp, err := client.Get(s.URL() + "/slow")
		if err != nil {
			slow <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		slow <- result{resp.StatusCode, string(b), err}
	}()
	<-started

	shutdown := make(chan error, 1)
	go func() { shutdown <- s.Shutdown(context.Background()) }()
	waitRefused(t, s.Addr())
	select {
	case err := <-shutdown:
		t.Fatalf("Shutdown: returned %v while a request was in flight; want it to wait", err)
	default:
	}

	close(release)
	r := <-slow
	if r.err != nil || r.status != http.StatusOK || r.body != "finished" {
		t.Errorf("in-flight request: got %d %q (%v); want 200 %q", r.status, r.body, r.err, "finished")
	}
	if err := <-shutdown; err != nil {
		t.Errorf("Shutdown: got %v; want nil", err)
	}
	if err := <-s.Done(); err != nil {
		t.Errorf("Done: got %v; want nil after Shutdown", err)
	}
}

func TestShutdownDeadline(t *testing.T) {
	e := newEngineDiscard()
	started, release := make(chan struct{}), make(chan struct{})
	handlerDone := make(chan struct{})
	e.GET("/stuck", func(c *gin.Context) {
		defer close(handlerDone)
		close(started)
		<-release
	})
	s, err := Start("127.0.0.1:0", e, Options{})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	clientDone := make(chan struct{})
	go func() {
		defer close(clientDone)
		if resp, err := client.Get(s.URL() + "/stuck"); err == nil {
			resp.Body.Close()
		}
	}()
	<-started

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = s.Shutdown(ctx)
	if !errors.Is(err, context.Canceled) || !strings.HasPrefix(err.Error(), "http shutdown: ") {
		t.Errorf("Shutdown with an ended context: got %v; want %q wrapping context.Canceled", err, "http shutdown: ...")
	}
	// The connection was closed under the handler, so the client is
	// answered without waiting for it.
	<-clientDone
	close(release)
	<-handlerDone
	if err := <-s.Done(); err != nil {
		t.Errorf("Done: got %v; want nil after Shutdown", err)
	}
}

func TestStartBusyPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	s, err := Start(addr, http.NotFoundHandler(), Options{})
	if err == nil {
		s.Shutdown(context.Background())
		t.Fatalf("Start on busy %s: got nil error; want one", addr)
	}
	if !strings.Contains(err.Error(), addr) {
		t.Errorf("Start on busy %s: got %q; want the address named", addr, err)
	}
}

func TestNewRegistry(t *testing.T) {
	families, err := NewRegistry().Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	var goMetrics, processMetrics int
	for _, f := range families {
		switch {
		case strings.HasPrefix(f.GetName(), "go_"):
			goMetrics++
		case strings.HasPrefix(f.GetName(), "process_"):
			processMetrics++
		}
	}
	if goMetrics == 0 || processMetrics == 0 {
		t.Errorf("families: got %d go_ and %d process_; want some of each", goMetrics, processMetrics)
	}
}

func newEngineDiscard() *gin.Engine {
	return NewEngine(slog.New(slog.NewTextHandler(io.Discard, nil)), NewReadiness(), prometheus.NewRegistry())
}

// waitRefused waits until addr refuses connections, which shows Shutdown
// has closed the listener.
func waitRefused(t *testing.T, addr string) {
	t.Helper()
	for range 500 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return
		}
		c.Close()
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("dial %s: still accepting after Shutdown; want refused", addr)
}
