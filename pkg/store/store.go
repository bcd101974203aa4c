// Package store is the PostgreSQL side of the system: the connection pool,
// idempotent batch inserts of events and the report queries.
package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventpipe/eventpipe/pkg/schema"
)

// Store wraps a pgx pool.
type Store struct {
	pool *pgxpool.Pool
}

// Open returns a Store over a pool of at most maxConns connections. It
// does not wait for the database: connections are made on first use, and
// Check reports whether the database is usable.
func Open(ctx context.Context, databaseURL string, maxConns int32) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	// The reports read a few thousand rollup rows, and the events of a
	// range's edges: starting parallel workers for them costs more than
	// it saves (measured: an hourly series over 25 days took 25 ms with
	// workers, 4 ms without), all the more on a busy machine. Inserts never
	// run in parallel anyway.
	cfg.ConnConfig.RuntimeParams["max_parallel_workers_per_gather"] = "0"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open pool: %w", err)
	}
	return &Store{pool: pool}, nil
}

// New wraps an existing pool.
func New(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// Pool returns the underlying pool.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Close closes every connection.
func (s *Store) Close() { s.pool.Close() }

// Check returns a readiness check: the database answers and carries at
// least schema version want.
func (s *Store) Check(want uint) func(context.Context) error {
	return func(ctx context.Context) error {
		if err := s.pool.Ping(ctx); err != nil {
			return fmt.Errorf("postgres: %w", err)
		}
		return schema.Check(ctx, s.pool, want)
	}
}
