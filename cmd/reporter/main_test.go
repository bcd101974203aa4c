package main

import (
	"net/http"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/eventpipe/eventpipe/pkg/pgtest"
)

func TestRunRejectsInvalidSettings(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
	}{
		{"missing DATABASE_URL", map[string]string{"DATABASE_URL": ""}},
		{"bad QUERY_TIMEOUT", map[string]string{"DATABASE_URL": "postgres://127.0.0.1:1/x", "QUERY_TIMEOUT": "forever"}},
		{"bad PORT", map[string]string{"DATABASE_URL": "postgres://127.0.0.1:1/x", "PORT": "0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			if got := run(); got != 2 {
				t.Fatalf("got exit code %d; want 2", got)
			}
		})
	}
}

// SIGTERM stops the service cleanly: exit code 0.
func TestRunStopsOnSIGTERM(t *testing.T) {
	port, err := pgtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	// No database is needed to start: readiness reports it missing.
	t.Setenv("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none?sslmode=disable")
	t.Setenv("PORT", strconv.Itoa(port))
	t.Setenv("LOG_LEVEL", "warn")
	code := make(chan int, 1)
	go func() { code <- run() }()

	url := "http://127.0.0.1:" + strconv.Itoa(port) + "/healthz"
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			break
		}
		select {
		case c := <-code:
			t.Fatalf("run returned %d before serving", c)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("healthz never answered: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The signal handler is installed before the server starts, so the
	// signal cannot kill the test process.
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-code:
		if c != 0 {
			t.Fatalf("got exit code %d; want 0", c)
		}
	case <-time.After(time.Minute):
		t.Fatal("run did not return after SIGTERM")
	}
}
