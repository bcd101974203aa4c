// Command migrate applies the embedded schema migrations to DATABASE_URL
// and exits: a compose one-shot service and a Helm hook Job.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/eventpipe/eventpipe/pkg/config"
	"github.com/eventpipe/eventpipe/pkg/logging"
	"github.com/eventpipe/eventpipe/pkg/schema"
	"github.com/eventpipe/eventpipe/pkg/stream"
)

func main() { os.Exit(run()) }

func run() int {
	r := config.NewReader(os.LookupEnv)
	databaseURL := r.URL("DATABASE_URL", "", false, "postgres", "postgresql")
	if databaseURL == "" {
		r.Fail("DATABASE_URL", "is required")
	}
	level := r.Enum("LOG_LEVEL", "info", "debug", "info", "warn", "error")
	format := r.Enum("LOG_FORMAT", "json", "json", "text")
	// The database may still be starting (compose, a fresh cluster): wait
	// for it this long before giving up.
	wait := r.Duration("MIGRATE_WAIT", 60*time.Second)
	if err := r.Err(); err != nil {
		fmt.Fprintf(os.Stderr, "migrate: invalid setting %v\n", err)
		return 2
	}
	logger, err := logging.New(os.Stderr, "migrate", level, format)
	if err != nil {
		fmt.Fprintf(os.Stderr, "migrate: invalid setting %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()

	want, err := schema.Want()
	if err != nil {
		logger.Error("read embedded migrations", "error", err)
		return 1
	}
	// Only reaching the database is retried; a failing migration is not.
	err = stream.Retry(ctx, logger, "connect to database", 5*time.Second, func(ctx context.Context) error {
		conn, err := pgx.Connect(ctx, databaseURL)
		if err != nil {
			return err
		}
		return conn.Close(ctx)
	})
	if err != nil {
		logger.Error("database unreachable", "error", err)
		return 1
	}
	version, err := schema.Up(databaseURL)
	if err != nil {
		logger.Error("migration failed", "error", err)
		return 1
	}
	logger.Info("schema up to date", "version", version, "want", want)
	return 0
}
