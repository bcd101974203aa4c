package main

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"sync/atomic"
	"testing"
)

// TestHealthcheckSubcommand runs `gateway healthcheck` against a stand-in
// /readyz on PORT: exit 0 while it answers 200, 1 otherwise. PUBLISH_TIMEOUT is
// invalid for the service itself, so passing also shows that the
// subcommand never loads the service's settings.
func TestHealthcheckSubcommand(t *testing.T) {
	var status atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(int(status.Load()))
	}))
	defer srv.Close()
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("PORT", u.Port())
	t.Setenv("PUBLISH_TIMEOUT", "soon")
	args := os.Args
	t.Cleanup(func() { os.Args = args })
	os.Args = []string{"gateway", "healthcheck"}

	for _, tt := range []struct{ status, want int }{{http.StatusOK, 0}, {http.StatusServiceUnavailable, 1}, {http.StatusOK, 0}} {
		status.Store(int32(tt.status))
		if got := run(); got != tt.want {
			t.Errorf("/readyz answering %d: got exit code %d; want %d", tt.status, got, tt.want)
		}
	}
}
