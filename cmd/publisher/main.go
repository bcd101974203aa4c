// Command publisher sends generated marketing events to the gateway the way
// the andriiuni/events publisher does, and prints a summary when it stops.
// Settings are environment variables mirrored by flags; run with -h to list
// them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/eventpipe/eventpipe/pkg/logging"
	"github.com/eventpipe/eventpipe/pkg/publisher"
)

func main() { os.Exit(run()) }

func run() int {
	cfg, err := publisher.LoadConfig(os.Args[1:], os.LookupEnv)
	if errors.Is(err, flag.ErrHelp) {
		publisher.Usage(os.Stdout)
		return 0
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "publisher:", err)
		return 2
	}
	logger, err := logging.New(os.Stderr, "publisher", cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		fmt.Fprintln(os.Stderr, "publisher:", err)
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	// POSTs overlap by design; the default two idle connections per host
	// would make most of them dial anew.
	client := &http.Client{}
	if t, ok := http.DefaultTransport.(*http.Transport); ok {
		t = t.Clone()
		t.MaxIdleConnsPerHost = 64
		client.Transport = t
	}

	summary, err := publisher.Run(ctx, cfg.Options, client, logger)
	if err != nil {
		fmt.Fprintln(os.Stderr, "publisher:", err)
		return 2
	}
	summary.WriteText(os.Stdout)
	return 0
}
