// Package collector moves the events of one source from JetStream into
// PostgreSQL: fb-collector and ttk-collector are this one implementation
// run with a different source.
//
// Every replica of a collector pulls from one shared durable consumer,
// stores what it gets in batches (one idempotent insert each) and
// acknowledges a message only once its row is committed. A message that
// cannot be stored never blocks the others: undecodable ones, and rows
// PostgreSQL keeps refusing after MAX_DELIVER deliveries, go to the
// dead-letter stream with the reason.
package collector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eventpipe/eventpipe/pkg/event"
	"github.com/eventpipe/eventpipe/pkg/httpserver"
	"github.com/eventpipe/eventpipe/pkg/schema"
	"github.com/eventpipe/eventpipe/pkg/store"
	"github.com/eventpipe/eventpipe/pkg/stream"
)

// Inserter stores records idempotently and returns how many rows were
// new; *store.Store is one. A failure stores none of them.
type Inserter interface {
	InsertEvents(ctx context.Context, recs []store.Record) (int64, error)
}

// pendingEvery is how often the consumer's lag is read for the
// consumer_pending gauge.
const pendingEvery = 5 * time.Second

// Run runs the collector until ctx ends, then stops gracefully within
// opts.ShutdownTimeout: it stops fetching, stores and acknowledges what it
// already holds, drains NATS, closes the pool and the HTTP server last. It
// returns nil after a clean stop.
func Run(ctx context.Context, opts Options, logger *slog.Logger, reg *prometheus.Registry) error {
	logger = logger.With("component", "collector", "source", string(opts.Source))
	want, err := schema.Want()
	if err != nil {
		return err
	}
	// Opening the pool does not wait for the database: readiness reports
	// it until it answers.
	st, err := store.Open(ctx, opts.DatabaseURL, opts.DBMaxConns)
	if err != nil {
		return err
	}
	defer st.Close()
	m, err := newMetrics(reg, opts.MetricPrefix, opts.Source, st.Pool())
	if err != nil {
		return fmt.Errorf("register metrics: %w", err)
	}

	// The HTTP side comes up first, so /healthz answers and /readyz says
	// what is missing while NATS and PostgreSQL come up.
	var conn atomic.Pointer[nats.Conn]
	ready := httpserver.NewReadiness(
		httpserver.Check{Name: "nats", Fn: func(ctx context.Context) error {
			nc := conn.Load()
			if nc == nil {
				return errors.New("nats not connected yet")
			}
			return stream.Check(nc)(ctx)
		}},
		httpserver.Check{Name: "postgres", Fn: st.Check(want)},
	)
	srv, err := httpserver.Start(opts.Addr, httpserver.NewEngine(logger, ready, reg), httpserver.Options{})
	if err != nil {
		return err
	}
	if opts.Started != nil {
		opts.Started(srv.Addr())
	}

	// A dead listener stops the collector: without probes the orchestrator
	// would act blind.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var srvErr error
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		select {
		case err := <-srv.Done():
			srvErr = fmt.Errorf("http server stopped: %w", err)
			cancel()
		case <-ctx.Done():
		}
	}()
	// The stop budget is counted from the signal, on a context of its own:
	// the signal's context is already cancelled when the work must finish.
	shutdownCtx, cancelShutdown := afterStop(ctx, opts.ShutdownTimeout)
	defer cancelShutdown()
	stopReady := context.AfterFunc(ctx, ready.Drain)
	defer stopReady()

	var ins Inserter = st
	if opts.wrapInserter != nil {
		ins = opts.wrapInserter(st)
	}
	probe := st.Check(want)
	if opts.probe != nil {
		probe = opts.probe
	}
	nc, err := stream.Connect(opts.NATSURL, opts.Service, logger)
	if err == nil {
		conn.Store(nc)
		err = consume(ctx, shutdownCtx, opts, logger, m, nc, ins, probe)
	}
	ready.Drain()

	cancel()
	<-watched
	errs := []error{err, srvErr}
	if nc != nil {
		drainNATS(shutdownCtx, nc, logger)
	}
	st.Close()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	logger.Info("collector stopped")
	return nil
}

// consume subscribes and stores batches until stop ends, subscribing again
// if the server ends the subscription (the consumer was deleted). It
// returns nil once stopped.
func consume(stop, work context.Context, opts Options, logger *slog.Logger, m *metrics, nc *nats.Conn, ins Inserter, probe func(context.Context) error) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	w := newWorker(opts, logger, m, js, ins, probe)
	for {
		var (
			cons jetstream.Consumer
			iter jetstream.MessagesContext
		)
		err := stream.Retry(stop, logger, "subscribe", 5*time.Second, func(ctx context.Context) error {
			var err error
			if cons, err = subscribe(ctx, js, opts); err != nil {
				return err
			}
			if iter, err = cons.Messages(jetstream.PullMaxMessages(2 * opts.BatchSize)); err != nil {
				return fmt.Errorf("pull messages: %w", err)
			}
			return nil
		})
		if err != nil {
			// Stopped before the subscription was made: nothing is held.
			return nil
		}
		logger.Info("consuming", "stream", stream.Events, "consumer", opts.ConsumerName,
			"filter", event.SourceFilter(opts.Source), "batch_size", opts.BatchSize)
		if serve(stop, work, w, cons, iter) {
			return nil
		}
		iter.Stop()
		if w.drained {
			logger.Info("held messages stored; subscribing again")
		} else {
			logger.Warn("subscription ended by the server; subscribing again")
		}
	}
}

// serve runs w on one subscription, keeping the lag gauges current
// meanwhile; it returns what w.consume returns.
func serve(stop, work context.Context, w *worker, cons jetstream.Consumer, iter jetstream.MessagesContext) bool {
	ctx, cancel := context.WithCancel(stop)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		watchPending(ctx, cons, w.m)
	}()
	defer func() {
		cancel()
		wg.Wait()
	}()
	return w.consume(stop, work, iter)
}

// subscribe makes sure the streams exist (creating them only when missing:
// the gateway owns their configuration) and creates or updates the
// durable consumer every replica shares.
func subscribe(ctx context.Context, js jetstream.JetStream, opts Options) (jetstream.Consumer, error) {
	if err := stream.Ensure(ctx, js, opts.Stream, false); err != nil {
		return nil, err
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, stream.Events, jetstream.ConsumerConfig{
		Durable:       opts.ConsumerName,
		Description:   "stores " + string(opts.Source) + " events in PostgreSQL",
		FilterSubject: event.SourceFilter(opts.Source),
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       opts.AckWait,
		MaxAckPending: opts.MaxAckPending,
		// Unlimited at the server: the collector itself dead-letters what
		// keeps failing, with the reason, which the server cannot do.
		MaxDeliver: -1,
	})
	if err != nil {
		return nil, fmt.Errorf("create consumer %s: %w", opts.ConsumerName, err)
	}
	return cons, nil
}

// watchPending keeps the lag gauges current until ctx ends.
func watchPending(ctx context.Context, cons jetstream.Consumer, m *metrics) {
	t := time.NewTicker(pendingEvery)
	defer t.Stop()
	for {
		if info, err := cons.Info(ctx); err == nil {
			m.pending.Set(float64(info.NumPending))
			m.ackPending.Set(float64(info.NumAckPending))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// drainNATS drains the connection, which sends what is still buffered (the
// last acknowledgements), and closes it; past ctx it closes at once.
func drainNATS(ctx context.Context, nc *nats.Conn, logger *slog.Logger) {
	closed := nc.StatusChanged(nats.CLOSED)
	if err := nc.Drain(); err != nil {
		nc.Close()
		return
	}
	select {
	case <-closed:
	case <-ctx.Done():
		logger.Warn("nats drain did not finish in time; closing")
		nc.Close()
	}
}

// afterStop returns a context free of ctx's cancellation that ends timeout
// after ctx ends: the deadline of the graceful stop.
func afterStop(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(timeout, cancel)
		context.AfterFunc(sctx, func() { t.Stop() })
	})
	return sctx, func() {
		stop()
		cancel()
	}
}
