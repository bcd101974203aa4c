// Package natsembed runs a NATS server with JetStream inside the process,
// for the local stack and the tests.
package natsembed

import (
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Options configures the embedded server. Port -1 picks a free port;
// MonitorPort 0 disables the HTTP monitoring endpoint (/jsz, /varz).
type Options struct {
	Host        string
	Port        int
	MonitorPort int
	StoreDir    string
	// SyncInterval is how often JetStream fsyncs; 0 keeps the server's
	// default (2 minutes, relying on the page cache between syncs).
	SyncInterval time.Duration
}

// Start runs a server and waits until it accepts connections.
func Start(o Options) (*server.Server, error) {
	if o.StoreDir == "" {
		return nil, errors.New("natsembed: StoreDir is required")
	}
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	opts := &server.Options{
		ServerName:   "eventpipe-embedded",
		Host:         o.Host,
		Port:         o.Port,
		JetStream:    true,
		StoreDir:     o.StoreDir,
		NoSigs:       true,
		NoLog:        true,
		MaxPayload:   8 << 20,
		SyncInterval: o.SyncInterval,
	}
	if o.MonitorPort != 0 {
		opts.HTTPHost = o.Host
		opts.HTTPPort = o.MonitorPort
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats server: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(15 * time.Second) {
		s.Shutdown()
		return nil, errors.New("nats server: not ready after 15s")
	}
	return s, nil
}
