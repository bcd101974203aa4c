// Package natstest starts an embedded JetStream server for a test.
package natstest

import (
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/eventpipe/eventpipe/pkg/natsembed"
)

// Start runs a JetStream server on a free loopback port, storing in a test
// temp dir, shut down when the test ends.
func Start(t testing.TB) *server.Server {
	t.Helper()
	return start(t, natsembed.Options{Port: -1, StoreDir: t.TempDir()})
}

// StartMonitored is Start with the HTTP monitoring endpoint (/jsz, /varz)
// on a free port too: s.MonitorAddr().
func StartMonitored(t testing.TB) *server.Server {
	t.Helper()
	return start(t, natsembed.Options{Port: -1, MonitorPort: -1, StoreDir: t.TempDir()})
}

func start(t testing.TB, o natsembed.Options) *server.Server {
	t.Helper()
	s, err := natsembed.Start(o)
	if err != nil {
		t.Fatalf("start nats: %v", err)
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

// Client connects a JetStream client to s, closed when the test ends.
func Client(t testing.TB, s *server.Server) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	return js
}
