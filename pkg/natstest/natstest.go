// Package natstest starts an embedded JetStream server for a test.
package natstest

import (
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/eventpipe/eventpipe/pkg/natsembed"
)

// Start runs a JetStream server on a free loopback port, storing in a test
// temp dir, shut down when the test ends.
func Start(t testing.TB) *server.Server {
	t.Helper()
	s, err := natsembed.Start(natsembed.Options{Port: -1, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatalf("start nats: %v", err)
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}
