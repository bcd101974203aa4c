package main

import (
	"net/http"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/eventpipe/eventpipe/pkg/pgtest"
)

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
