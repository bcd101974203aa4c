package collector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/eventpipe/eventpipe/pkg/config"
	"github.com/eventpipe/eventpipe/pkg/event"
	"github.com/eventpipe/eventpipe/pkg/eventgen"
	"github.com/eventpipe/eventpipe/pkg/logtest"
	"github.com/eventpipe/eventpipe/pkg/natstest"
	"github.com/eventpipe/eventpipe/pkg/pgtest"
	"github.com/eventpipe/eventpipe/pkg/store"
	"github.com/eventpipe/eventpipe/pkg/stream"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }

// testEnv is one embedded JetStream with the streams, and one migrated
// database, for one test.
type testEnv struct {
	t       testing.TB
	natsURL string
	dbURL   string
	js      jetstream.JetStream
	pool    *pgxpool.Pool
}

func newEnv(t testing.TB) *testEnv {
	t.Helper()
	ns := natstest.Start(t)
	env := &testEnv{t: t, natsURL: ns.ClientURL(), dbURL: pgtest.Migrated(t)}
	nc, err := nats.Connect(env.natsURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if env.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	if err := stream.Ensure(context.Background(), env.js, stream.ReadOptions(config.NewReader(config.MapLookup(nil))), false); err != nil {
		t.Fatal(err)
	}
	if env.pool, err = pgxpool.New(context.Background(), env.dbURL); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(env.pool.Close)
	return env
}

// options returns a collector's options for this environment, with waits
// short enough for tests; extra overrides the settings.
func (env *testEnv) options(source event.Source, extra map[string]string) Options {
	env.t.Helper()
	settings := map[string]string{
		"NATS_URL":         env.natsURL,
		"DATABASE_URL":     env.dbURL,
		"ACK_WAIT":         "1s",
		"BATCH_WAIT":       "20ms",
		"RETRY_MIN":        "20ms",
		"RETRY_MAX":        "200ms",
		"SHUTDOWN_TIMEOUT": "10s",
	}
	maps.Copy(settings, extra)
	opts, err := LoadOptions(source, config.MapLookup(settings))
	if err != nil {
		env.t.Fatal(err)
	}
	opts.Addr = "127.0.0.1:0"
	return opts
}

// running is a collector started in-process by start.
type running struct {
	t      testing.TB
	reg    *prometheus.Registry
	addr   string
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
	logs   *logtest.Buffer
}

// start runs a collector until stop (or the test's end).
func (env *testEnv) start(opts Options) *running {
	env.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{t: env.t, reg: prometheus.NewRegistry(), cancel: cancel, done: make(chan error, 1), logs: &logtest.Buffer{}}
	addr := make(chan string, 1)
	opts.Started = func(a string) { addr <- a }
	logger := slog.New(slog.NewJSONHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	go func() { r.done <- Run(ctx, opts, logger, r.reg) }()
	select {
	case r.addr = <-addr:
	case err := <-r.done:
		env.t.Fatalf("collector stopped at start: %v", err)
	case <-time.After(30 * time.Second):
		env.t.Fatal("collector did not bind its HTTP server within 30s")
	}
	env.t.Cleanup(func() {
		if err := r.stop(); err != nil {
			env.t.Errorf("collector stop: %v", err)
		}
		if env.t.Failed() {
			env.t.Logf("collector logs:\n%s", r.logs.Tail(6000))
		}
	})
	return r
}

// stop cancels the collector's context and returns what Run returned.
func (r *running) stop() error {
	r.once.Do(func() {
		r.cancel()
		select {
		case r.err = <-r.done:
		case <-time.After(60 * time.Second):
			r.err = errors.New("Run did not return within 60s of cancel")
		}
	})
	return r.err
}

// sent is one published event.
type sent struct {
	event event.Event
	raw   []byte
}

// events returns n valid events of source (both sources when it is
// empty), drawn from seed.
func events(t testing.TB, seed int64, source event.Source, n int) []sent {
	t.Helper()
	g := eventgen.New(seed)
	ts := time.Date(2025, 6, 10, 18, 0, 0, 0, time.UTC)
	out := make([]sent, 0, n)
	for len(out) < n {
		e := g.Next(ts)
		ts = ts.Add(time.Millisecond)
		if source != "" && e.Source != source {
			continue
		}
		out = append(out, sent{event: e, raw: e.AppendJSON(nil)})
	}
	return out
}

// publish publishes raw on subject as the gateway does: the message id
// (which JetStream deduplicates on) and the correlation id as headers.
func (env *testEnv) publish(subject string, raw []byte, msgID, correlationID string) {
	env.t.Helper()
	msg := nats.NewMsg(subject)
	msg.Data = raw
	if correlationID != "" {
		msg.Header.Set(stream.HeaderCorrelationID, correlationID)
	}
	var opts []jetstream.PublishOpt
	if msgID != "" {
		opts = append(opts, jetstream.WithMsgID(msgID))
	}
	if _, err := env.js.PublishMsg(context.Background(), msg, opts...); err != nil {
		env.t.Fatalf("publish %s: %v", subject, err)
	}
}

// publishEvents publishes evs on their subjects, message id = eventId,
// with correlation ids corr-0 .. corr-9.
func (env *testEnv) publishEvents(evs []sent) {
	env.t.Helper()
	for i, s := range evs {
		env.publish(event.Subject(s.event.Source, s.event.Type), s.raw, s.event.ID, fmt.Sprintf("corr-%d", i%10))
	}
}

// publishAsync publishes evs without waiting for each acknowledgement, a
// window at a time, for large backlogs.
func (env *testEnv) publishAsync(evs []sent) {
	env.t.Helper()
	const window = 2000
	for i, s := range evs {
		msg := nats.NewMsg(event.Subject(s.event.Source, s.event.Type))
		msg.Data = s.raw
		msg.Header.Set(stream.HeaderCorrelationID, fmt.Sprintf("corr-%d", i/1000))
		if _, err := env.js.PublishMsgAsync(msg, jetstream.WithMsgID(s.event.ID)); err != nil {
			env.t.Fatalf("publish: %v", err)
		}
		if (i+1)%window == 0 || i == len(evs)-1 {
			select {
			case <-env.js.PublishAsyncComplete():
			case <-time.After(2 * time.Minute):
				env.t.Fatal("async publishes not acknowledged within 2 minutes")
			}
		}
	}
}

// count returns the number of stored rows matching where.
func (env *testEnv) count(where string, args ...any) int {
	env.t.Helper()
	var n int
	q := "SELECT count(*) FROM events"
	if where != "" {
		q += " WHERE " + where
	}
	if err := env.pool.QueryRow(context.Background(), q, args...).Scan(&n); err != nil {
		env.t.Fatal(err)
	}
	return n
}

// consumerInfo returns the durable consumer's state.
func (env *testEnv) consumerInfo(name string) *jetstream.ConsumerInfo {
	env.t.Helper()
	c, err := env.js.Consumer(context.Background(), stream.Events, name)
	if err != nil {
		env.t.Fatalf("consumer %s: %v", name, err)
	}
	info, err := c.Info(context.Background())
	if err != nil {
		env.t.Fatal(err)
	}
	return info
}

// streamMsgs returns how many messages a stream holds.
func (env *testEnv) streamMsgs(name string) uint64 {
	env.t.Helper()
	s, err := env.js.Stream(context.Background(), name)
	if err != nil {
		env.t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		env.t.Fatal(err)
	}
	return info.State.Msgs
}

// deadLetters returns every message of the DEADLETTER stream.
func (env *testEnv) deadLetters() []*jetstream.RawStreamMsg {
	env.t.Helper()
	s, err := env.js.Stream(context.Background(), stream.DeadLetter)
	if err != nil {
		env.t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		env.t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(context.Background(), seq)
		if err != nil {
			env.t.Fatalf("dead letter %d: %v", seq, err)
		}
		out = append(out, m)
	}
	return out
}

// settled waits until the consumer has nothing pending or unacknowledged.
func (env *testEnv) settled(name string) {
	env.t.Helper()
	eventually(env.t, 30*time.Second, func() string {
		info := env.consumerInfo(name)
		if info.NumPending != 0 || info.NumAckPending != 0 {
			return fmt.Sprintf("consumer %s: pending %d, ack pending %d; want 0 and 0", name, info.NumPending, info.NumAckPending)
		}
		return ""
	})
}

// eventually polls cond until it returns "" or the deadline passes, then
// fails with cond's last complaint.
func eventually(t testing.TB, within time.Duration, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		msg := cond()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", within, msg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// metric returns the value of a counter or gauge, or the sample count of a
// histogram, whose labels include labels (pairs of name, value); summed
// over every series that matches.
func (r *running) metric(name string, labels ...string) float64 {
	r.t.Helper()
	families, err := r.reg.Gather()
	if err != nil {
		r.t.Fatal(err)
	}
	var sum float64
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if !hasLabels(m, labels) {
				continue
			}
			switch {
			case m.Counter != nil:
				sum += m.GetCounter().GetValue()
			case m.Gauge != nil:
				sum += m.GetGauge().GetValue()
			case m.Histogram != nil:
				sum += float64(m.GetHistogram().GetSampleCount())
			}
		}
		return sum
	}
	r.t.Fatalf("no metric %s", name)
	return 0
}

func hasLabels(m *dto.Metric, labels []string) bool {
	for i := 0; i+1 < len(labels); i += 2 {
		found := false
		for _, lp := range m.GetLabel() {
			if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// insertFunc adapts a function to Inserter.
type insertFunc func(ctx context.Context, recs []store.Record) (int64, error)

func (f insertFunc) InsertEvents(ctx context.Context, recs []store.Record) (int64, error) {
	return f(ctx, recs)
}

// failWhile decorates the store so that every insert fails as a lost
// connection while down is set; calls counts the inserts tried.
func failWhile(down *atomic.Bool, calls *atomic.Int64) func(Inserter) Inserter {
	return func(real Inserter) Inserter {
		return insertFunc(func(ctx context.Context, recs []store.Record) (int64, error) {
			calls.Add(1)
			if down.Load() {
				return 0, fmt.Errorf("insert: %w", &pgconn.PgError{Code: "08006", Message: "connection failure"})
			}
			return real.InsertEvents(ctx, recs)
		})
	}
}
