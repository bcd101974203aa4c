// Command devstack runs the whole system locally on embedded defaults: an
// embedded NATS JetStream, a private PostgreSQL kept under .data/ (or
// DATABASE_URL), the migrations, the four services as separate processes
// and the publisher at a gentle rate. Ctrl-C stops everything in order.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/eventpipe/eventpipe/pkg/config"
	"github.com/eventpipe/eventpipe/pkg/logging"
	"github.com/eventpipe/eventpipe/pkg/stack"
	"github.com/eventpipe/eventpipe/pkg/stream"
)

func main() { os.Exit(run()) }

func run() int {
	r := config.NewReader(os.LookupEnv)
	opts := stack.Options{
		Dir:             r.String("DATA_DIR", ".data"),
		BinDir:          r.String("BIN_DIR", ".bin"),
		DatabaseURL:     r.URL("DATABASE_URL", "", false, "postgres", "postgresql"),
		NATSPort:        r.Int("NATS_PORT", 4222, 1, 65535),
		NATSMonitorPort: r.Int("NATS_MONITOR_PORT", 8222, 1, 65535),
		PostgresPort:    r.Int("POSTGRES_PORT", 15432, 1, 65535),
		Env:             []string{"LOG_FORMAT=" + r.Enum("LOG_FORMAT", "text", "json", "text")},
	}
	verbose := r.Bool("STACK_VERBOSE", false)
	publish := r.Bool("PUBLISH", true)
	minBatch := r.Int("MIN_BATCH", 10, 1, 50000)
	maxBatch := r.Int("MAX_BATCH", 100, 1, 50000)
	if err := r.Err(); err != nil {
		fmt.Fprintf(os.Stderr, "devstack: invalid setting %v\n", err)
		return 2
	}
	if verbose {
		opts.Output = os.Stdout
	}
	logger, _ := logging.New(os.Stderr, "devstack", "info", "text")

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	s, err := stack.Start(ctx, opts, logger)
	if err != nil {
		logger.Error("could not start the stack", "error", err)
		return 1
	}
	if publish {
		if _, err := s.StartPublisher(fmt.Sprintf("MIN_BATCH=%d", minBatch), fmt.Sprintf("MAX_BATCH=%d", maxBatch)); err != nil {
			logger.Error("could not start the publisher", "error", err)
		}
	}
	fmt.Printf(`
eventpipe is running (logs in %[1]s/logs, data in %[1]s):
  webhook      POST %[2]s/webhook
  reports      %[3]s/reports/events  %[3]s/reports/revenue  %[3]s/reports/demographics
  metrics      %[2]s/metrics  %[4]s/metrics  %[5]s/metrics  %[3]s/metrics
  NATS         %[6]s  (monitoring %[7]s)
  PostgreSQL   %[8]s
Press Ctrl-C to stop.

`, opts.Dir, s.URL("gateway"), s.URL("reporter"), s.URL("fb-collector"), s.URL("ttk-collector"),
		s.NATSURL(), s.NATSMonitorURL(), s.DatabaseURL())

	status(ctx, s, logger)

	logger.Info("stopping")
	stopCtx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := s.Stop(stopCtx); err != nil {
		logger.Error("stopped with errors", "error", err)
		return 1
	}
	logger.Info("stopped cleanly")
	return 0
}

// status prints, every five seconds until ctx ends, how many events the
// reporter counts and the collectors' backlog.
func status(ctx context.Context, s *stack.Stack, logger *slog.Logger) {
	nc, err := nats.Connect(s.NATSURL())
	if err != nil {
		logger.Warn("status: nats", "error", err)
		<-ctx.Done()
		return
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	var last int64
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		total, err := storedEvents(ctx, s.URL("reporter"))
		if err != nil {
			logger.Warn("status: reporter", "error", err)
			continue
		}
		lag := map[string]uint64{}
		for _, name := range []string{"fb-collector", "ttk-collector"} {
			if c, err := js.Consumer(ctx, stream.Events, name); err == nil {
				if info, err := c.Info(ctx); err == nil {
					lag[name] = info.NumPending + uint64(info.NumAckPending)
				}
			}
		}
		fmt.Printf("%s  stored events: %d (+%d in 5s)  backlog: fb %d, ttk %d\n",
			time.Now().Format("15:04:05"), total, total-last, lag["fb-collector"], lag["ttk-collector"])
		last = total
	}
}

func storedEvents(ctx context.Context, reporter string) (int64, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, reporter+"/reports/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return 0, fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	var body struct {
		Total int64 `json:"total"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return 0, err
	}
	return body.Total, nil
}
