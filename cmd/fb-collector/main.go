// Command fb-collector stores the facebook events of the EVENTS stream in
// PostgreSQL. Its settings are environment variables (README, api.md).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/eventpipe/eventpipe/pkg/collector"
	"github.com/eventpipe/eventpipe/pkg/event"
	"github.com/eventpipe/eventpipe/pkg/httpserver"
	"github.com/eventpipe/eventpipe/pkg/logging"
)

func main() { os.Exit(run()) }

func run() int {
	// `<binary> healthcheck` is the container healthcheck: distroless
	// images have no curl.
	if len(os.Args) > 1 && os.Args[1] == "healthcheck" {
		return httpserver.HealthCheck(os.LookupEnv, 3001, os.Stderr) // api.md's PORT
	}
	opts, err := collector.LoadOptions(event.Facebook, os.LookupEnv)
	if err != nil {
		fmt.Fprintf(os.Stderr, "fb-collector: invalid setting %v\n", err)
		return 2
	}
	logger, err := logging.New(os.Stderr, opts.Service, opts.LogLevel, opts.LogFormat)
	if err != nil {
		fmt.Fprintf(os.Stderr, "fb-collector: invalid setting %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := collector.Run(ctx, opts, logger, httpserver.NewRegistry()); err != nil {
		logger.Error("collector failed", "error", err)
		return 1
	}
	return 0
}
