package stack_test

import (
	"context"
	"net/http"
	"sync"
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
