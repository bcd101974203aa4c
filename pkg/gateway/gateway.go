// Package gateway is the webhook side of the system: POST /webhook takes
// marketing events (shared/spec/events.md), validates each on its own, and
// publishes the valid ones to the JetStream EVENTS stream, answering 2xx only
// once JetStream has acknowledged every one of them (shared/spec/api.md,
// "Ingestion"). Rejected events go to the DEADLETTER stream with the reason.
//
// The gateway owns the streams' configuration: it creates or updates them at
// start.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eventpipe/eventpipe/pkg/httpserver"
	"github.com/eventpipe/eventpipe/pkg/stream"
)

// ensureMaxWait caps the backoff between attempts to set the streams up
// while NATS is not there yet.
const ensureMaxWait = 5 * time.Second

// Run serves the gateway until ctx is cancelled, then stops gracefully
// within opts.ShutdownTimeout: readiness turns 503, the HTTP server stops
// taking requests and lets the ones in flight finish (each answers after
// its acks), the publishes still pending are awaited, and the NATS
// connection is drained. It returns nil on a clean stop.
func Run(ctx context.Context, opts Options, logger *slog.Logger, reg *prometheus.Registry) error {
	logger = logger.With("component", "gateway")
	wh, err := newWebhook(opts, reg)
	if err != nil {
		return err
	}

	// The HTTP server is bound before NATS is dialled so that /healthz
	// answers, and /readyz says what is missing, while NATS comes up.
	var conn atomic.Pointer[nats.Conn]
	ready := httpserver.NewReadiness(
		httpserver.Check{Name: "nats", Fn: func(ctx context.Context) error {
			nc := conn.Load()
			if nc == nil {
				return errors.New("not connected yet")
			}
			return stream.Check(nc)(ctx)
		}},
		httpserver.Check{Name: "streams", Fn: func(context.Context) error {
			if wh.backend.Load() == nil {
				return errors.New("streams not set up yet")
			}
			return nil
		}},
	)
	engine := httpserver.NewEngine(logger, ready, reg)
	wh.register(engine)
	srv, err := httpserver.Start(opts.Addr, engine, httpserver.Options{})
	if err != nil {
		return err
	}
	logger.Info("listening", "addr", srv.Addr())
	if opts.Started != nil {
		opts.Started(srv.Addr())
	}

	nc, err := stream.Connect(opts.NATSURL, "gateway", logger)
	if err != nil {
		return errors.Join(err, stopHTTP(srv, opts.ShutdownTimeout))
	}
	conn.Store(nc)
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(opts.PublishMaxPending),
		jetstream.WithPublishAsyncTimeout(opts.PublishTimeout),
	)
	if err != nil {
		nc.Close()
		return errors.Join(fmt.Errorf("jetstream: %w", err), stopHTTP(srv, opts.ShutdownTimeout))
	}

	var serveErr error
	err = stream.Retry(ctx, logger, "set up streams", ensureMaxWait, func(ctx context.Context) error {
		return stream.Ensure(ctx, js, opts.Stream, true)
	})
	if err == nil {
		wh.backend.Store(newBackend(js, nc))
		logger.Info("streams set up; ready", "nats", nc.ConnectedUrlRedacted())
		select {
		case <-ctx.Done():
		case serveErr = <-srv.Done():
			if serveErr != nil {
				serveErr = fmt.Errorf("http server: %w", serveErr)
			}
		}
	}
	// A Retry error means ctx ended before the streams were set up: that
	// is a stop like any other.

	logger.Info("shutting down")
	ready.Drain()
	stopCtx, cancel := context.WithTimeout(context.Background(), opts.ShutdownTimeout)
	defer cancel()
	errs := []error{serveErr}
	if err := srv.Shutdown(stopCtx); err != nil {
		errs = append(errs, err)
	}
	// Requests that gave up (their client's publish failed) leave publishes
	// behind; they are still owed a wait.
	select {
	case <-js.PublishAsyncComplete():
	case <-stopCtx.Done():
		errs = append(errs, fmt.Errorf("%d publishes not acknowledged before the shutdown deadline", js.PublishAsyncPending()))
	}
	errs = append(errs, drain(stopCtx, nc))
	if err := errors.Join(errs...); err != nil {
		return err
	}
	logger.Info("stopped")
	return nil
}

// stopHTTP shuts the server down after a failed start.
func stopHTTP(srv *httpserver.Server, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return srv.Shutdown(ctx)
}

// drain drains the NATS connection and waits until it is closed.
func drain(ctx context.Context, nc *nats.Conn) error {
	closed := nc.StatusChanged(nats.CLOSED)
	defer nc.RemoveStatusListener(closed)
	if err := nc.Drain(); err != nil {
		// Closed already, or closed by Drain because it was reconnecting:
		// there is nothing left to flush.
		nc.Close()
		return nil
	}
	select {
	case <-closed:
		return nil
	case <-ctx.Done():
		nc.Close()
		return errors.New("nats drain did not finish before the shutdown deadline")
	}
}
