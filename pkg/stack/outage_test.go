package stack_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eventpipe/eventpipe/pkg/stack"
)

// readyStatus returns a service's /readyz status code, 0 when unreachable.
func readyStatus(s *stack.Stack, name string) int {
	resp, err := http.Get(s.URL(name) + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// waitStatus polls a service's /readyz until it answers want.
func waitStatus(t *testing.T, s *stack.Stack, name string, want int) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for readyStatus(s, name) != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s /readyz: got %d; want %d", name, readyStatus(s, name), want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestPostgresOutageLosesNothing stops PostgreSQL under load: the gateway
// keeps acknowledging (JetStream holds the events), the collectors and the
// reporter report not ready while the database is gone and ready again
// once it is back, and every acknowledged event ends up stored exactly
// once.
func TestPostgresOutageLosesNothing(t *testing.T) {
	s := startStack(t, nil)
	l := newLoader(s.URL("gateway"), 31)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); l.run(ctx) }()

	time.Sleep(time.Second)
	if err := s.StopPostgres(); err != nil {
		t.Fatalf("stop postgres: %v", err)
	}
	dbDependent := []string{"fb-collector", "ttk-collector", "reporter"}
	for _, name := range dbDependent {
		waitStatus(t, s, name, http.StatusServiceUnavailable)
	}
	l.mu.Lock()
	ackedBefore := len(l.acked)
	l.mu.Unlock()
	// The outage lasts long enough for the collectors to retry with backoff
	// while the gateway keeps taking requests.
	time.Sleep(8 * time.Second)
	if got := readyStatus(s, "gateway"); got != http.StatusOK {
		t.Errorf("gateway /readyz during the outage: got %d; want 200 (it needs no database)", got)
	}
	l.mu.Lock()
	ackedDuring := len(l.acked) - ackedBefore
	l.mu.Unlock()
	if ackedDuring == 0 {
		t.Error("no event was acknowledged during the outage; want the gateway to keep accepting")
	}

	if err := s.StartPostgres(context.Background()); err != nil {
		t.Fatalf("start postgres: %v", err)
	}
	for _, name := range dbDependent {
		waitStatus(t, s, name, http.StatusOK)
	}
	time.Sleep(time.Second)
	cancel()
	wg.Wait()
	assertExactlyOnce(t, s, l)
	t.Logf("acknowledged during the outage: %d", ackedDuring)
}

// TestGatewayKilledMidRequest SIGKILLs the gateway while a request's body
// is still arriving, after part of it was published: that request fails,
// its events are stored at most once, and after a restart every event a
// 2xx acknowledged, before and after, is stored exactly once.
func TestGatewayKilledMidRequest(t *testing.T) {
	s := startStack(t, nil)
	l := newLoader(s.URL("gateway"), 77)
	ctx := context.Background()
	if status, err := l.post(ctx, 300, 0.1); err != nil || status != http.StatusAccepted {
		t.Fatalf("post before the kill: got %d %v; want 202", status, err)
	}

	// A body written in two halves: the gateway publishes the first half
	// as it streams in, then dies before the second arrives.
	pr, pw := io.Pipe()
	answered := make(chan error, 1)
	go func() {
		resp, err := http.Post(s.URL("gateway")+"/webhook", "application/json", pr)
		if err == nil {
			resp.Body.Close()
			err = fmt.Errorf("answered %d", resp.StatusCode)
		}
		answered <- err
	}()
	l.mu.Lock()
	var raws [][]byte
	for range 2000 {
		e := l.gen.Next(l.base.Add(time.Duration(l.rnd.Int64N(int64(72 * time.Hour)))))
		raws = append(raws, e.AppendJSON(nil))
		l.maybe[e.ID] = true
	}
	l.mu.Unlock()
	if _, err := pw.Write(append([]byte("["), bytes.Join(raws[:1000], []byte(","))...)); err != nil {
		t.Fatalf("write the first half: %v", err)
	}
	time.Sleep(500 * time.Millisecond)
	gw := s.Proc("gateway")
	if err := gw.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	gw.Wait()
	_, _ = pw.Write(append([]byte(","), bytes.Join(raws[1000:], []byte(","))...))
	pw.CloseWithError(errors.New("gateway killed"))
	select {
	case err := <-answered:
		if err != nil && strings.HasPrefix(err.Error(), "answered 2") {
			t.Fatalf("the cut request got %v; want no 2xx", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the cut request never ended")
	}

	if err := s.Restart(ctx, "gateway"); err != nil {
		t.Fatalf("restart gateway: %v", err)
	}
	for range 5 {
		if status, err := l.post(ctx, 300, 0.1); err != nil || status != http.StatusAccepted {
			t.Fatalf("post after the restart: got %d %v; want 202", status, err)
		}
	}
	assertExactlyOnce(t, s, l)

	// Part of the cut request was published before the kill and is stored
	// once; the rest never arrived.
	stored := storedIDs(t, s.DatabaseURL())
	cut := 0
	for _, raw := range raws {
		var e struct {
			EventID string `json:"eventId"`
		}
		if err := json.Unmarshal(raw, &e); err != nil {
			t.Fatal(err)
		}
		if stored[e.EventID] > 0 {
			cut++
		}
	}
	t.Logf("of the cut request's 2000 events, %d were published before the kill and stored once", cut)
}
