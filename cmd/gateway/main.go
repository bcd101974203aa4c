// Command gateway serves POST /webhook: it validates marketing events and
// publishes them to NATS JetStream (shared/spec/api.md, "Ingestion").
// Settings are environment variables; see the README.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/eventpipe/eventpipe/pkg/gateway"
	"github.com/eventpipe/eventpipe/pkg/httpserver"
	"github.com/eventpipe/eventpipe/pkg/logging"
)

func main() { os.Exit(run()) }

func run() int {
	// `<binary> healthcheck` is the container healthcheck: distroless
	// images have no curl.
	if len(os.Args) > 1 && os.Args[1] == "healthcheck" {
		return httpserver.HealthCheck(os.LookupEnv, gateway.DefaultPort, os.Stderr)
	}
	opts, err := gateway.LoadOptions(os.LookupEnv)
	if err != nil {
		fmt.Fprintf(os.Stderr, "gateway: invalid setting %v\n", err)
		return 2
	}
	logger, err := logging.New(os.Stderr, "gateway", opts.LogLevel, opts.LogFormat)
	if err != nil {
		fmt.Fprintf(os.Stderr, "gateway: invalid setting %v\n", err)
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	if err := gateway.Run(ctx, opts, logger, httpserver.NewRegistry()); err != nil {
		logger.Error("gateway stopped", "error", err)
		return 1
	}
	return 0
}
