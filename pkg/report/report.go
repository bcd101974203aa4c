// Package report is the reporter service: the HTTP API of api.md "Reports"
// (/reports/events, /reports/revenue, /reports/demographics) over the
// events stored in PostgreSQL. Query parameters are parsed and checked
// here; the SQL lives in pkg/store.
package report

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eventpipe/eventpipe/pkg/httpserver"
	"github.com/eventpipe/eventpipe/pkg/schema"
	"github.com/eventpipe/eventpipe/pkg/store"
)

// Run serves the reports until ctx is cancelled, then stops: readiness
// turns 503, in-flight reports finish (http.Server.Shutdown), and the pool
// closes, all within opts.ShutdownTimeout. It returns nil on a clean stop.
//
// The listener is bound before the database is reached: /healthz answers
// at once and /readyz reports the database and schema version until they
// are usable. The pool connects on demand, so a database that comes up
// later is picked up without a restart.
func Run(ctx context.Context, opts Options, logger *slog.Logger, reg *prometheus.Registry) error {
	logger = logger.With("component", "reporter")
	want, err := schema.Want()
	if err != nil {
		return err
	}
	m, err := newMetrics(reg)
	if err != nil {
		return err
	}
	st, err := store.Open(ctx, opts.DatabaseURL, opts.DBMaxConns)
	if err != nil {
		return err
	}
	// Registered first, so it runs last: the pool outlives every request.
	defer st.Close()
	if err := registerPool(reg, st.Pool()); err != nil {
		return err
	}

	ready := httpserver.NewReadiness(httpserver.Check{Name: "postgres", Fn: st.Check(want)})
	engine := httpserver.NewEngine(logger, ready, reg)
	h := &handler{reports: st, metrics: m, queryTimeout: opts.QueryTimeout}
	h.register(engine)

	srv, err := httpserver.Start(opts.Addr, engine, httpserver.Options{
		// Report requests carry no body.
		ReadTimeout: 30 * time.Second,
		// Room for the slowest allowed report and for writing it out.
		WriteTimeout: opts.QueryTimeout + 30*time.Second,
	})
	if err != nil {
		return err
	}
	logger.Info("listening", "addr", srv.Addr(), "query_timeout", opts.QueryTimeout.String(), "db_max_conns", opts.DBMaxConns)
	if opts.Started != nil {
		opts.Started(srv.Addr())
	}

	var serveErr error
	select {
	case <-ctx.Done():
	case err := <-srv.Done():
		// Only a failed listener ends serving before Shutdown.
		serveErr = fmt.Errorf("http server: %w", err)
	}

	logger.Info("shutting down")
	ready.Drain()
	// The signal context is already cancelled: the grace period runs on a
	// fresh one.
	sctx, cancel := context.WithTimeout(context.Background(), opts.ShutdownTimeout)
	defer cancel()
	var shutdownErr error
	if serveErr == nil {
		shutdownErr = srv.Shutdown(sctx)
	}
	if err := errors.Join(serveErr, shutdownErr); err != nil {
		return err
	}
	logger.Info("stopped")
	return nil
}
