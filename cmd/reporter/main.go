// Command reporter serves the report API of api.md "Reports" over the
// events the collectors store in PostgreSQL.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/eventpipe/eventpipe/pkg/httpserver"
	"github.com/eventpipe/eventpipe/pkg/logging"
	"github.com/eventpipe/eventpipe/pkg/report"
)

func main() { os.Exit(run()) }

func run() int {
	// `<binary> healthcheck` is the container healthcheck: distroless
	// images have no curl.
	if len(os.Args) > 1 && os.Args[1] == "healthcheck" {
		return httpserver.HealthCheck(os.LookupEnv, report.DefaultPort, os.Stderr)
	}
	opts, err := report.LoadOptions(os.LookupEnv)
	if err != nil {
		fmt.Fprintf(os.Stderr, "reporter: invalid setting %v\n", err)
		return 2
	}
	logger, err := logging.New(os.Stderr, "reporter", opts.LogLevel, opts.LogFormat)
	if err != nil {
		fmt.Fprintf(os.Stderr, "reporter: invalid setting %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := report.Run(ctx, opts, logger, httpserver.NewRegistry()); err != nil {
		logger.Error("reporter failed", "error", err)
		return 1
	}
	return 0
}
