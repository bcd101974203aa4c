package collector

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/eventpipe/eventpipe/pkg/config"
	"github.com/eventpipe/eventpipe/pkg/event"
	"github.com/eventpipe/eventpipe/pkg/stream"
)

// Options configures one collector.
type Options struct {
	// Source is the platform whose events this collector stores.
	Source event.Source
	// Service names the process in logs, on the NATS connection and as
	// the origin of what it dead-letters: fb-collector or ttk-collector.
	Service string
	// ConsumerName is the durable consumer every replica shares.
	ConsumerName string
	// MetricPrefix starts every metric name: fb_collector_ or ttk_collector_.
	MetricPrefix string

	// Addr is where the probes and metrics are served (":" + PORT).
	Addr string
	// Started, when set, is called with the bound address once the HTTP
	// listener is up, so in-process tests learn a port picked by the OS.
	Started func(addr string)

	NATSURL     string
	DatabaseURL string
	// DBMaxConns bounds the pool: batches are stored one at a time, so a
	// few connections cover the inserts and the readiness probes.
	DBMaxConns int32

	LogLevel  string
	LogFormat string
	// ShutdownTimeout bounds the graceful stop, counted from the signal:
	// the in-flight batch must be committed and acknowledged within it.
	ShutdownTimeout time.Duration

	// BatchSize is the most messages stored in one insert.
	BatchSize int
	// BatchWait is how long a batch waits for more messages after its
	// first one before it is stored anyway.
	BatchWait time.Duration
	// AckWait is how long JetStream waits for an acknowledgement before
	// redelivering a message, to this or another replica.
	AckWait time.Duration
	// MaxAckPending bounds the messages delivered and not yet acknowledged
	// across all replicas.
	MaxAckPending int
	// MaxDeliver is the delivery count from which a message PostgreSQL
	// keeps refusing is dead-lettered instead of retried.
	MaxDeliver int
	// RetryMin and RetryMax bound the backoff between tries of an insert
	// that failed for a reason that may pass.
	RetryMin time.Duration
	RetryMax time.Duration

	// Stream configures the streams, created only when missing: the
	// gateway owns their configuration.
	Stream stream.Options

	// wrapInserter, when set, decorates the store: tests inject database
	// failures through it.
	wrapInserter func(Inserter) Inserter
	// probe, when set, replaces the database check that the retries of a
	// failing insert poll: tests end a fake outage through it.
	probe func(context.Context) error
}

// sourceDefaults returns the service name and port api.md gives the
// collector of a source.
func sourceDefaults(source event.Source) (service string, port int, ok bool) {
	switch source {
	case event.Facebook:
		return "fb-collector", 3001, true
	case event.TikTok:
		return "ttk-collector", 3002, true
	}
	return "", 0, false
}

// LoadOptions reads the collector of source's settings through lookup.
// The error names the first invalid setting.
func LoadOptions(source event.Source, lookup config.Lookup) (Options, error) {
	service, port, ok := sourceDefaults(source)
	if !ok {
		return Options{}, fmt.Errorf("source: unknown source %q", source)
	}
	r := config.NewReader(lookup)
	common := r.ReadCommon(port)
	o := Options{
		Source:          source,
		Service:         service,
		ConsumerName:    r.String("CONSUMER_NAME", service),
		MetricPrefix:    strings.ReplaceAll(service, "-", "_") + "_",
		Addr:            fmt.Sprintf(":%d", common.Port),
		NATSURL:         r.URL("NATS_URL", "nats://127.0.0.1:4222", true, "nats", "tls", "ws", "wss"),
		DatabaseURL:     r.URL("DATABASE_URL", "", false, "postgres", "postgresql"),
		DBMaxConns:      int32(r.Int("DB_MAX_CONNS", 4, 2, 100)),
		LogLevel:        common.LogLevel,
		LogFormat:       common.LogFormat,
		ShutdownTimeout: common.ShutdownTimeout,
		BatchSize:       r.Int("BATCH_SIZE", 1000, 1, 10000),
		BatchWait:       r.Duration("BATCH_WAIT", 100*time.Millisecond),
		AckWait:         r.Duration("ACK_WAIT", 30*time.Second),
		MaxDeliver:      r.Int("MAX_DELIVER", 5, 1, 1000),
		RetryMin:        r.Duration("RETRY_MIN", 200*time.Millisecond),
		RetryMax:        r.Duration("RETRY_MAX", 10*time.Second),
		Stream:          stream.ReadOptions(r),
	}
	if o.DatabaseURL == "" {
		r.Fail("DATABASE_URL", "is required")
	}
	if err := checkConsumerName(o.ConsumerName); err != nil {
		r.Fail("CONSUMER_NAME", "%v, got %q", err, o.ConsumerName)
	}
	o.MaxAckPending = r.Int("MAX_ACK_PENDING", 4*o.BatchSize, 1, 1_000_000)
	if o.MaxAckPending < o.BatchSize {
		// Fewer would keep every batch from filling: it would always wait
		// BATCH_WAIT for messages the server may not send.
		r.Fail("MAX_ACK_PENDING", "must be at least BATCH_SIZE (%d), got %d", o.BatchSize, o.MaxAckPending)
	}
	if o.AckWait < time.Second {
		// The collector tells JetStream it is still working every quarter
		// of AckWait while a batch waits for the database; shorter would
		// turn that into a flood.
		r.Fail("ACK_WAIT", "must be at least 1s, got %s", o.AckWait)
	}
	if o.RetryMax < o.RetryMin {
		r.Fail("RETRY_MAX", "must not be below RETRY_MIN (%s), got %s", o.RetryMin, o.RetryMax)
	}
	if err := r.Err(); err != nil {
		return Options{}, err
	}
	return o, nil
}

// checkConsumerName applies JetStream's rules for durable names.
func checkConsumerName(name string) error {
	if len(name) > 255 {
		return fmt.Errorf("must be at most 255 characters")
	}
	if strings.ContainsAny(name, " \t\r\n.*>/\\") {
		return fmt.Errorf("must not contain whitespace, '.', '*', '>', '/' or '\\'")
	}
	return nil
}
