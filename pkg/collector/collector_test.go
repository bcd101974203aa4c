package collector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eventpipe/eventpipe/pkg/event"
	"github.com/eventpipe/eventpipe/pkg/schema"
	"github.com/eventpipe/eventpipe/pkg/store"
	"github.com/eventpipe/eventpipe/pkg/stream"
)

// samples are the events.md samples, one per shape, plus a tiktok purchase,
// with the typed columns each must be stored with.
var samples = []struct {
	raw  string
	want storedRow
}{
	{`{"eventId":"fb-3e8f395a-661a-4dc5-b868-1b571b78e33f","timestamp":"2025-05-14T10:46:28.214Z","source":"facebook","funnelStage":"bottom","eventType":"checkout.complete","data":{"user":{"age":57,"name":"Henry Auer","gender":"non-binary","userId":"dcc79054-7a44-458d-b8a1-b01ee0ba5db6","location":{"city":"Lorenland","country":"Mongolia"}},"engagement":{"adId":"ad-DPFSHszH","device":"desktop","browser":"Firefox","campaignId":"camp-Mn15k","clickPosition":"center","purchaseAmount":"414.29"}}}`,
		storedRow{"2025-05-14T10:46:28.214Z", "facebook", "bottom", "checkout.complete", "dcc79054-7a44-458d-b8a1-b01ee0ba5db6",
			"57", "non-binary", "Mongolia", "Lorenland", "NULL", "desktop", "camp-Mn15k", "414.29", "sample-0", true}},
	{`{"eventId":"fb-fa3e4d6c-7062-4e6f-8f55-f8f41f7425cb","timestamp":"2025-06-10T18:01:43.455Z","source":"facebook","funnelStage":"top","eventType":"ad.view","data":{"user":{"userId":"81ac3c92-30ad-4290-974c-1d5273b230af","name":"Gregory Zulauf","age":58,"gender":"male","location":{"city":"Kyiv","country":"Ukraine"}},"engagement":{"actionTime":"2025-06-10T18:01:43.455Z","referrer":"newsfeed","videoId":null}}}`,
		storedRow{"2025-06-10T18:01:43.455Z", "facebook", "top", "ad.view", "81ac3c92-30ad-4290-974c-1d5273b230af",
			"58", "male", "Ukraine", "Kyiv", "NULL", "NULL", "NULL", "NULL", "sample-1", true}},
	{`{"eventId":"ttk-cf30e5ff-a2a5-4854-9a92-9d99e3f4da67","timestamp":"2025-06-10T18:01:44.759Z","source":"tiktok","funnelStage":"bottom","eventType":"profile.visit","data":{"user":{"userId":"55e08dd7-e088-451a-b80e-2639138a6f99","username":"Eliza92","followers":423769},"engagement":{"actionTime":"2025-06-10T18:01:44.759Z","profileId":"profile-I6SF6J","purchasedItem":null,"purchaseAmount":null}}}`,
		storedRow{"2025-06-10T18:01:44.759Z", "tiktok", "bottom", "profile.visit", "55e08dd7-e088-451a-b80e-2639138a6f99",
			"NULL", "NULL", "NULL", "NULL", "423769", "NULL", "NULL", "NULL", "sample-2", true}},
	{`{"eventId":"ttk-0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d","timestamp":"2025-06-10T18:01:45.002Z","source":"tiktok","funnelStage":"top","eventType":"video.view","data":{"user":{"userId":"9a8b7c6d-5e4f-4a3b-2c1d-0e9f8a7b6c5d","username":"rob_k","followers":1520},"engagement":{"watchTime":42,"percentageWatched":87,"device":"iOS","country":"Mongolia","videoId":"vid-Ab12Cd34"}}}`,
		storedRow{"2025-06-10T18:01:45.002Z", "tiktok", "top", "video.view", "9a8b7c6d-5e4f-4a3b-2c1d-0e9f8a7b6c5d",
			"NULL", "NULL", "Mongolia", "NULL", "1520", "iOS", "NULL", "NULL", "sample-3", true}},
	{`{"eventId":"ttk-purchase-1","timestamp":"2025-06-10T18:01:46.100Z","source":"tiktok","funnelStage":"bottom","eventType":"purchase","data":{"user":{"userId":"u-1","username":"ann","followers":0},"engagement":{"actionTime":"2025-06-10T18:01:46.100Z","profileId":null,"purchasedItem":"item-7","purchaseAmount":"5.10"}}}`,
		storedRow{"2025-06-10T18:01:46.100Z", "tiktok", "bottom", "purchase", "u-1",
			"NULL", "NULL", "NULL", "NULL", "0", "NULL", "NULL", "5.10", "sample-4", true}},
}

// storedRow is a stored event's typed columns as text, NULL as "NULL",
// and whether its payload equals the JSON sent.
type storedRow struct {
	occurredAt, source, stage, eventType, userID            string
	age, gender, country, city, followers, device, campaign string
	amount, correlationID                                   string
	payloadEqual                                            bool
}

func (env *testEnv) row(id string, raw []byte) storedRow {
	env.t.Helper()
	var r storedRow
	err := env.pool.QueryRow(context.Background(), `
		SELECT to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
			source, funnel_stage, event_type, user_id,
			coalesce(age::text, 'NULL'), coalesce(gender, 'NULL'), coalesce(country, 'NULL'),
			coalesce(city, 'NULL'), coalesce(followers::text, 'NULL'), coalesce(device, 'NULL'),
			coalesce(campaign_id, 'NULL'), coalesce(purchase_amount::text, 'NULL'),
			coalesce(correlation_id, 'NULL'), payload = $2::jsonb
		FROM events WHERE event_id = $1`, id, string(raw)).Scan(
		&r.occurredAt, &r.source, &r.stage, &r.eventType, &r.userID,
		&r.age, &r.gender, &r.country, &r.city, &r.followers, &r.device,
		&r.campaign, &r.amount, &r.correlationID, &r.payloadEqual)
	if err != nil {
		env.t.Fatalf("read %s: %v", id, err)
	}
	return r
}

// payloadsMatch returns how many of evs are stored with exactly the JSON
// sent as payload.
func (env *testEnv) payloadsMatch(evs []sent) int {
	env.t.Helper()
	ids := make([]string, len(evs))
	raws := make([]string, len(evs))
	for i, s := range evs {
		ids[i], raws[i] = s.event.ID, string(s.raw)
	}
	var n int
	err := env.pool.QueryRow(context.Background(), `
		SELECT count(*) FROM events e
		JOIN unnest($1::text[], $2::text[]) AS s(id, raw) ON e.event_id = s.id
		WHERE e.payload = s.raw::jsonb`, ids, raws).Scan(&n)
	if err != nil {
		env.t.Fatal(err)
	}
	return n
}

func bySource(evs []sent) map[event.Source][]sent {
	out := map[event.Source][]sent{}
	for _, s := range evs {
		out[s.event.Source] = append(out[s.event.Source], s)
	}
	return out
}

// TestBothCollectorsStoreEveryEvent runs both collectors on one stream:
// every event is stored once by the collector of its source, with its
// typed columns and payload, and the consumers and metrics agree.
func TestBothCollectorsStoreEveryEvent(t *testing.T) {
	env := newEnv(t)
	fb := env.start(env.options(event.Facebook, map[string]string{"BATCH_SIZE": "100"}))
	ttk := env.start(env.options(event.TikTok, map[string]string{"BATCH_SIZE": "100"}))

	evs := events(t, 1, "", 600)
	for i, s := range samples {
		e, err := event.Parse([]byte(s.raw))
		if err != nil {
			t.Fatal(err)
		}
		env.publish(event.Subject(e.Source, e.Type), []byte(s.raw), e.ID, fmt.Sprintf("sample-%d", i))
		evs = append(evs, sent{event: e, raw: []byte(s.raw)})
	}
	env.publishEvents(evs[:600])
	want := bySource(evs)

	eventually(t, 30*time.Second, func() string {
		if got := env.count(""); got != len(evs) {
			return fmt.Sprintf("rows: got %d; want %d", got, len(evs))
		}
		return ""
	})
	env.settled("fb-collector")
	env.settled("ttk-collector")

	for src, n := range map[event.Source]int{event.Facebook: len(want[event.Facebook]), event.TikTok: len(want[event.TikTok])} {
		if got := env.count("source = $1", string(src)); got != n {
			t.Errorf("%s rows: got %d; want %d", src, got, n)
		}
	}
	for i, s := range samples {
		id := evs[600+i].event.ID
		if got := env.row(id, []byte(s.raw)); got != s.want {
			t.Errorf("%s:\ngot  %+v\nwant %+v", id, got, s.want)
		}
	}
	if got := env.payloadsMatch(evs); got != len(evs) {
		t.Errorf("rows whose payload equals the JSON sent: got %d; want %d", got, len(evs))
	}
	if got := env.count("correlation_id IS NULL"); got != 0 {
		t.Errorf("rows without correlation id: got %d; want 0", got)
	}

	for _, c := range []struct {
		r      *running
		prefix string
		source event.Source
	}{{fb, "fb_collector_", event.Facebook}, {ttk, "ttk_collector_", event.TikTok}} {
		perType := map[string]int{}
		for _, s := range want[c.source] {
			perType[s.event.Type]++
		}
		for typ, n := range perType {
			for _, name := range []string{"events_accepted_total", "events_processed_total"} {
				if got := c.r.metric(c.prefix+name, "event_type", typ); got != float64(n) {
					t.Errorf("%s%s{event_type=%q}: got %v; want %d", c.prefix, name, typ, got, n)
				}
			}
		}
		n := float64(len(want[c.source]))
		checks := []struct {
			name string
			want func(float64) bool
			desc string
		}{
			{"events_processed_total", func(v float64) bool { return v == n }, fmt.Sprint(n)},
			{"events_duplicates_total", func(v float64) bool { return v == 0 }, "0"},
			{"events_failed_total", func(v float64) bool { return v == 0 }, "0"},
			{"redeliveries_total", func(v float64) bool { return v == 0 }, "0"},
			{"db_retries_total", func(v float64) bool { return v == 0 }, "0"},
			{"event_processing_duration_seconds", func(v float64) bool { return v >= 1 && v <= n }, "1..events batches"},
			{"db_pool_max_conns", func(v float64) bool { return v == 4 }, "4"},
		}
		for _, ch := range checks {
			if got := c.r.metric(c.prefix + ch.name); !ch.want(got) {
				t.Errorf("%s%s: got %v; want %s", c.prefix, ch.name, got, ch.desc)
			}
		}
		if b, d := c.r.metric(c.prefix+"batch_size"), c.r.metric(c.prefix+"event_processing_duration_seconds"); b != d {
			t.Errorf("%s: batches observed %v; durations observed %v; want equal", c.prefix, b, d)
		}
	}
	// The lag gauge is read from the consumer every few seconds.
	eventually(t, 30*time.Second, func() string {
		if got := fb.metric("fb_collector_consumer_pending"); got != 0 {
			return fmt.Sprintf("fb_collector_consumer_pending: got %v; want 0", got)
		}
		return ""
	})
	logs := fb.logs.String()
	if !strings.Contains(logs, `"msg":"batch stored"`) || !strings.Contains(logs, `"correlation_ids":["`) {
		t.Errorf("no batch log line with correlation ids in:\n%s", fb.logs.Tail(2000))
	}
}

// TestCollectorStoresOnlyItsSource runs the facebook collector alone: the
// tiktok events wait in the stream for theirs.
func TestCollectorStoresOnlyItsSource(t *testing.T) {
	env := newEnv(t)
	evs := events(t, 2, "", 300)
	want := bySource(evs)
	env.publishEvents(evs)
	env.start(env.options(event.Facebook, nil))

	eventually(t, 30*time.Second, func() string {
		if got := env.count(""); got != len(want[event.Facebook]) {
			return fmt.Sprintf("rows: got %d; want the %d facebook events", got, len(want[event.Facebook]))
		}
		return ""
	})
	env.settled("fb-collector")
	if got := env.count("source = 'tiktok'"); got != 0 {
		t.Errorf("tiktok rows stored by fb-collector: got %d; want 0", got)
	}
	if got := env.streamMsgs(stream.Events); got != uint64(len(want[event.TikTok])) {
		t.Errorf("messages left in EVENTS: got %d; want the %d tiktok ones", got, len(want[event.TikTok]))
	}

	env.start(env.options(event.TikTok, nil))
	eventually(t, 30*time.Second, func() string {
		if got := env.count(""); got != len(evs) {
			return fmt.Sprintf("rows: got %d; want %d", got, len(evs))
		}
		return ""
	})
	env.settled("ttk-collector")
	if got := env.streamMsgs(stream.Events); got != 0 {
		t.Errorf("messages left in EVENTS: got %d; want 0", got)
	}
}

// TestDuplicatesAreStoredOnce publishes events again under new message
// ids, which JetStream does not deduplicate: in the same batch as the
// first copy and in a later batch.
func TestDuplicatesAreStoredOnce(t *testing.T) {
	env := newEnv(t)
	evs := events(t, 3, event.Facebook, 100)
	// The backlog is published before the collector starts, so it arrives
	// in one batch: 100 events and 30 repeats.
	env.publishEvents(evs)
	for i, s := range evs[:30] {
		env.publish(event.Subject(s.event.Source, s.event.Type), s.raw, s.event.ID+"-again", fmt.Sprintf("again-%d", i))
	}
	c := env.start(env.options(event.Facebook, map[string]string{"BATCH_SIZE": "1000", "BATCH_WAIT": "500ms"}))
	eventually(t, 30*time.Second, func() string {
		if got := c.metric("fb_collector_events_processed_total"); got != 130 {
			return fmt.Sprintf("processed: got %v; want 130", got)
		}
		return ""
	})
	if got := env.count(""); got != 100 {
		t.Errorf("rows after repeats in one batch: got %d; want 100", got)
	}
	if got := c.metric("fb_collector_events_duplicates_total"); got != 30 {
		t.Errorf("duplicates after repeats in one batch: got %v; want 30", got)
	}
	if got := c.metric("fb_collector_batch_size"); got != 1 {
		t.Errorf("batches for the backlog: got %v; want 1", got)
	}

	// Later batches: every event once more.
	for i, s := range evs {
		env.publish(event.Subject(s.event.Source, s.event.Type), s.raw, s.event.ID+"-later", fmt.Sprintf("later-%d", i))
	}
	eventually(t, 30*time.Second, func() string {
		if got := c.metric("fb_collector_events_processed_total"); got != 230 {
			return fmt.Sprintf("processed: got %v; want 230", got)
		}
		return ""
	})
	env.settled("fb-collector")
	if got := env.count(""); got != 100 {
		t.Errorf("rows after repeats in later batches: got %d; want 100", got)
	}
	if got := c.metric("fb_collector_events_duplicates_total"); got != 130 {
		t.Errorf("duplicates: got %v; want 130", got)
	}
}

// TestReplicasShareTheDurable runs two replicas of one collector: they
// split the work and every event is stored once.
func TestReplicasShareTheDurable(t *testing.T) {
	env := newEnv(t)
	settings := map[string]string{"BATCH_SIZE": "10", "BATCH_WAIT": "5ms"}
	a := env.start(env.options(event.TikTok, settings))
	b := env.start(env.options(event.TikTok, settings))
	evs := events(t, 4, event.TikTok, 1000)
	env.publishEvents(evs)

	eventually(t, 60*time.Second, func() string {
		if got := env.count(""); got != len(evs) {
			return fmt.Sprintf("rows: got %d; want %d", got, len(evs))
		}
		return ""
	})
	env.settled("ttk-collector")
	pa, pb := a.metric("ttk_collector_events_processed_total"), b.metric("ttk_collector_events_processed_total")
	if pa == 0 || pb == 0 {
		t.Errorf("processed per replica: got %v and %v; want both above 0", pa, pb)
	}
	da, db := a.metric("ttk_collector_events_duplicates_total"), b.metric("ttk_collector_events_duplicates_total")
	if got := pa + pb - da - db; got != float64(len(evs)) {
		t.Errorf("processed less duplicates over both replicas: got %v; want %d", got, len(evs))
	}
}

// TestTransientDatabaseFailure makes the database fail for a while: the
// collector acknowledges nothing meanwhile, keeps the messages from being
// redelivered, backs off between tries, and stores everything once after.
func TestTransientDatabaseFailure(t *testing.T) {
	env := newEnv(t)
	var (
		failing atomic.Bool
		calls   atomic.Int64
	)
	failing.Store(true)
	// One batch: only the batch in hand is kept in progress, so messages
	// waiting behind it would be redelivered.
	opts := env.options(event.Facebook, map[string]string{"RETRY_MIN": "50ms", "RETRY_MAX": "400ms", "BATCH_WAIT": "300ms"})
	opts.wrapInserter = failWhile(&failing, &calls)
	evs := events(t, 5, event.Facebook, 50)
	env.publishEvents(evs)
	c := env.start(opts)
	start := time.Now()

	// Failing for more than twice AckWait: without the in-progress
	// signals JetStream would redeliver the messages meanwhile.
	eventually(t, 30*time.Second, func() string {
		if n := calls.Load(); n < 4 || time.Since(start) < 2500*time.Millisecond {
			return fmt.Sprintf("calls while failing: got %d; want at least 4 over 2.5s", n)
		}
		return ""
	})
	elapsed, n := time.Since(start), calls.Load()
	info := env.consumerInfo("fb-collector")
	if info.NumAckPending != len(evs) {
		t.Errorf("ack pending while failing: got %d; want %d (nothing acknowledged)", info.NumAckPending, len(evs))
	}
	if info.NumRedelivered != 0 {
		t.Errorf("redelivered while failing: got %d; want 0", info.NumRedelivered)
	}
	if got := env.count(""); got != 0 {
		t.Errorf("rows while failing: got %d; want 0", got)
	}
	// Backing off from 50ms makes a handful of calls; even retrying every
	// RETRY_MIN would stay under this, and a hot loop would be far above.
	if limit := int64(elapsed/(50*time.Millisecond)) + 1; n > limit {
		t.Errorf("insert calls in %s: got %d; want at most %d", elapsed, n, limit)
	}
	if got, most := c.metric("fb_collector_db_retries_total"), calls.Load(); got < float64(n-1) || got > float64(most) {
		t.Errorf("db_retries_total: got %v; want one per failed call, %d..%d", got, n-1, most)
	}

	failing.Store(false)
	eventually(t, 30*time.Second, func() string {
		if got := env.count(""); got != len(evs) {
			return fmt.Sprintf("rows after recovery: got %d; want %d", got, len(evs))
		}
		return ""
	})
	env.settled("fb-collector")
	if got := c.metric("fb_collector_events_processed_total"); got != float64(len(evs)) {
		t.Errorf("processed: got %v; want %d", got, len(evs))
	}
}

// TestOutageHoldsPrefetchedMessages: in a database outage longer than
// several ACK_WAITs, the messages prefetched behind the failing batch are
// held in progress with it rather than left to time out, so JetStream
// delivers nothing twice; once the database is back, everything is stored
// and the collector goes on with a new subscription.
func TestOutageHoldsPrefetchedMessages(t *testing.T) {
	env := newEnv(t)
	var (
		down  atomic.Bool
		calls atomic.Int64
	)
	down.Store(true)
	opts := env.options(event.TikTok, map[string]string{"BATCH_SIZE": "10", "RETRY_MIN": "50ms", "RETRY_MAX": "200ms"})
	opts.wrapInserter = failWhile(&down, &calls)
	evs := events(t, 19, event.TikTok, 60)
	env.publishEvents(evs)
	c := env.start(opts)
	start := time.Now()
	// Down for more than three ACK_WAITs (1s).
	eventually(t, 30*time.Second, func() string {
		if calls.Load() < 1 || time.Since(start) < 3500*time.Millisecond {
			return "the outage goes on"
		}
		return ""
	})
	if !strings.Contains(c.logs.String(), "holding the prefetched messages") {
		t.Errorf("no held messages logged in the outage")
	}
	down.Store(false)
	eventually(t, 30*time.Second, func() string {
		if got := env.count(""); got != len(evs) {
			return fmt.Sprintf("rows after the outage: got %d; want %d", got, len(evs))
		}
		return ""
	})
	env.settled("ttk-collector")
	// Every message the collector received came once.
	if got := c.metric("ttk_collector_redeliveries_total"); got != 0 {
		t.Errorf("redeliveries_total: %v; want 0", got)
	}
	// The new subscription goes on storing.
	more := events(t, 20, event.TikTok, 15)
	env.publishEvents(more)
	eventually(t, 30*time.Second, func() string {
		if got := env.count(""); got != len(evs)+len(more) {
			return fmt.Sprintf("rows after the new subscription: got %d; want %d", got, len(evs)+len(more))
		}
		return ""
	})
}

// TestRetryWakesWhenTheDatabaseReturns: with a backoff of ten minutes, a
// batch failing in an outage is stored as soon as the database answers
// the readiness check again, not when the backoff ends; and a failure while
// the database answers (not an outage) waits out its backoff, without a
// hot loop.
func TestRetryWakesWhenTheDatabaseReturns(t *testing.T) {
	env := newEnv(t)
	var (
		down, unhealthy   atomic.Bool
		calls, probeCalls atomic.Int64
	)
	down.Store(true)
	opts := env.options(event.Facebook, map[string]string{"RETRY_MIN": "10m", "RETRY_MAX": "10m"})
	opts.wrapInserter = func(real Inserter) Inserter {
		return insertFunc(func(ctx context.Context, recs []store.Record) (int64, error) {
			calls.Add(1)
			if down.Load() {
				return 0, fmt.Errorf("insert: %w", &pgconn.PgError{Code: "57P01", Message: "terminating connection due to administrator command"})
			}
			if unhealthy.Load() {
				return 0, fmt.Errorf("insert: %w", &pgconn.PgError{Code: "40001", Message: "could not serialize access"})
			}
			return real.InsertEvents(ctx, recs)
		})
	}
	opts.probe = func(context.Context) error {
		probeCalls.Add(1)
		if down.Load() {
			return errors.New("connection refused")
		}
		return nil
	}
	evs := events(t, 17, event.Facebook, 30)
	env.publishEvents(evs)
	env.start(opts)
	eventually(t, 30*time.Second, func() string {
		if calls.Load() < 1 || probeCalls.Load() < 2 {
			return fmt.Sprintf("while down: %d inserts, %d probes; want at least 1 and 2", calls.Load(), probeCalls.Load())
		}
		return ""
	})
	down.Store(false)
	eventually(t, 30*time.Second, func() string {
		if got := env.count(""); got != len(evs) {
			return fmt.Sprintf("rows after the outage: got %d; want %d, long before the 10m backoff ends", got, len(evs))
		}
		return ""
	})
	env.settled("fb-collector")
	if got := calls.Load(); got != 2 {
		t.Errorf("inserts: got %d; want 2, one failed in the outage and one after", got)
	}

	// The database answers, yet the insert fails: the whole backoff.
	unhealthy.Store(true)
	calls.Store(0)
	probed := probeCalls.Load()
	env.publishEvents(events(t, 18, event.Facebook, 5))
	eventually(t, 30*time.Second, func() string {
		if calls.Load() < 1 || probeCalls.Load() < probed+4 {
			return fmt.Sprintf("failing with the database up: %d inserts, %d probes; want at least 1 and 4", calls.Load(), probeCalls.Load()-probed)
		}
		return ""
	})
	if got := calls.Load(); got != 1 {
		t.Errorf("inserts while the database answers: got %d; want 1, then the 10m backoff", got)
	}
}

// TestUngrantedRoleWaits runs a collector as a login role that exists but
// has no rights yet, as a Kubernetes operator creates roles before migrate
// has granted them anything. Every insert is refused (permission denied),
// for every event alike: the collector keeps its batch, dead-letters
// nothing and is not ready, and once the role joins the writers every
// event is stored once.
func TestUngrantedRoleWaits(t *testing.T) {
	env := newEnv(t)
	ctx := context.Background()
	role := pgx.Identifier{fmt.Sprintf("collector_%d_ungranted", os.Getpid())}.Sanitize()
	if _, err := env.pool.Exec(ctx, `CREATE ROLE `+role+` LOGIN PASSWORD 'secret'`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := env.pool.Exec(context.Background(), `DROP ROLE `+role); err != nil {
			t.Errorf("drop role: %v", err)
		}
	})
	u, err := url.Parse(env.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(strings.Trim(role, `"`), "secret")
	evs := events(t, 13, event.Facebook, 40)
	env.publishEvents(evs)
	c := env.start(env.options(event.Facebook, map[string]string{"DATABASE_URL": u.String(), "MAX_DELIVER": "2"}))

	// Longer than MAX_DELIVER deliveries' worth of ACK_WAIT (1s): were
	// the refusal taken for the data's fault, every event would be
	// dead-lettered by now.
	start := time.Now()
	eventually(t, 30*time.Second, func() string {
		if got := c.metric("fb_collector_db_retries_total"); got < 3 || time.Since(start) < 3*time.Second {
			return fmt.Sprintf("retries while ungranted: got %v; want at least 3 over 3s", got)
		}
		return ""
	})
	resp, err := http.Get("http://" + c.addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/readyz while ungranted: got %d; want 503", resp.StatusCode)
	}
	if got := len(env.deadLetters()); got != 0 {
		t.Errorf("dead letters while ungranted: got %d; want 0", got)
	}

	if _, err := env.pool.Exec(ctx, `GRANT `+pgx.Identifier{schema.WriterRole}.Sanitize()+` TO `+role); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() string {
		if got := env.count(""); got != len(evs) {
			return fmt.Sprintf("rows once granted: got %d; want %d", got, len(evs))
		}
		return ""
	})
	env.settled("fb-collector")
	if got := len(env.deadLetters()); got != 0 {
		t.Errorf("dead letters: got %d; want 0", got)
	}
	if got := c.metric("fb_collector_events_failed_total", "reason", "db_permanent"); got != 0 {
		t.Errorf("failed{db_permanent}: got %v; want 0", got)
	}
}

// TestCollectorStoppedAfterCommitBeforeAck stops a collector between the
// commit of a batch and its acknowledgement; a new collector on the same
// durable gets those messages again, and everything is stored once.
func TestCollectorStoppedAfterCommitBeforeAck(t *testing.T) {
	tests := []struct {
		name     string
		settings map[string]string
		// afterCommit runs once the batch is committed, in place of the
		// store's return.
		afterCommit func(ctx context.Context) error
	}{
		{
			name:     "insert fails after commit",
			settings: nil,
			afterCommit: func(context.Context) error {
				return errors.New("connection reset after commit")
			},
		},
		{
			name:     "flush deadline passes",
			settings: map[string]string{"SHUTDOWN_TIMEOUT": "300ms"},
			afterCommit: func(ctx context.Context) error {
				<-ctx.Done()
				return ctx.Err()
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newEnv(t)
			evs := events(t, 6, event.Facebook, 200)
			env.publishEvents(evs)

			settings := map[string]string{"BATCH_SIZE": "50"}
			for k, v := range tt.settings {
				settings[k] = v
			}
			var (
				calls     atomic.Int64
				committed atomic.Int64
				first     *running
				started   = make(chan struct{})
			)
			opts := env.options(event.Facebook, settings)
			opts.wrapInserter = func(real Inserter) Inserter {
				return insertFunc(func(ctx context.Context, recs []store.Record) (int64, error) {
					n, err := real.InsertEvents(ctx, recs)
					if calls.Add(1) != 2 || err != nil {
						return n, err
					}
					committed.Store(int64(len(recs)))
					<-started
					first.cancel() // the kill, while the batch is held
					return 0, tt.afterCommit(ctx)
				})
			}
			first = env.start(opts)
			close(started)
			eventually(t, 30*time.Second, func() string {
				if committed.Load() == 0 {
					return "the batch to fail after its commit was never committed"
				}
				return ""
			})
			if err := first.stop(); err != nil {
				t.Fatalf("first collector: Run returned %v; want nil", err)
			}
			if got := first.metric("fb_collector_events_processed_total"); got >= float64(len(evs)) {
				t.Fatalf("first collector processed %v; want fewer than %d (a batch left unacknowledged)", got, len(evs))
			}

			second := env.start(env.options(event.Facebook, map[string]string{"BATCH_SIZE": "50"}))
			eventually(t, 30*time.Second, func() string {
				if got := env.count(""); got != len(evs) {
					return fmt.Sprintf("rows: got %d; want %d", got, len(evs))
				}
				return ""
			})
			env.settled("fb-collector")
			if got := second.metric("fb_collector_events_duplicates_total"); got < float64(committed.Load()) {
				t.Errorf("duplicates on the second collector: got %v; want at least the %d committed, unacknowledged ones", got, committed.Load())
			}
			if got := second.metric("fb_collector_redeliveries_total"); got < float64(committed.Load()) {
				t.Errorf("redeliveries on the second collector: got %v; want at least %d", got, committed.Load())
			}
			if got := env.payloadsMatch(evs); got != len(evs) {
				t.Errorf("stored events: got %d; want %d", got, len(evs))
			}
		})
	}
}

// TestPoisonMessageIsDeadLettered publishes what is not a valid event of
// the source among valid events: it goes to DEADLETTER once with the
// reason, and the rest of its batch is stored.
func TestPoisonMessageIsDeadLettered(t *testing.T) {
	env := newEnv(t)
	evs := events(t, 7, event.Facebook, 20)
	env.publishEvents(evs[:10])
	poison := []struct {
		subject, data string
	}{
		{"events.facebook.ad.view", `{"eventId": "fb-broken", "timestamp": `},
		// A valid tiktok event on a facebook subject belongs to no one here.
		{"events.facebook.ad.view", string(events(t, 8, event.TikTok, 1)[0].raw)},
	}
	for i, p := range poison {
		env.publish(p.subject, []byte(p.data), fmt.Sprintf("poison-%d", i), fmt.Sprintf("poison-corr-%d", i))
	}
	env.publishEvents(evs[10:])
	c := env.start(env.options(event.Facebook, map[string]string{"BATCH_WAIT": "300ms"}))

	eventually(t, 30*time.Second, func() string {
		if got := env.count(""); got != len(evs) {
			return fmt.Sprintf("rows: got %d; want %d", got, len(evs))
		}
		if got := len(env.deadLetters()); got != len(poison) {
			return fmt.Sprintf("dead letters: got %d; want %d", got, len(poison))
		}
		return ""
	})
	// Past AckWait, a message that was not terminated would be back.
	time.Sleep(2500 * time.Millisecond)
	env.settled("fb-collector")
	dls := env.deadLetters()
	if len(dls) != len(poison) {
		t.Fatalf("dead letters: got %d; want %d", len(dls), len(poison))
	}
	for i, dl := range dls {
		p := poison[i]
		if dl.Subject != "deadletter.fb-collector" {
			t.Errorf("dead letter %d subject: got %q; want deadletter.fb-collector", i, dl.Subject)
		}
		if string(dl.Data) != p.data {
			t.Errorf("dead letter %d data: got %q; want %q", i, dl.Data, p.data)
		}
		for h, want := range map[string]string{
			stream.HeaderOrigin:        "fb-collector",
			stream.HeaderSubject:       p.subject,
			stream.HeaderCorrelationID: fmt.Sprintf("poison-corr-%d", i),
		} {
			if got := dl.Header.Get(h); got != want {
				t.Errorf("dead letter %d header %s: got %q; want %q", i, h, got, want)
			}
		}
		if dl.Header.Get(stream.HeaderReason) == "" {
			t.Errorf("dead letter %d: no %s header", i, stream.HeaderReason)
		}
	}
	if got := env.streamMsgs(stream.Events); got != 0 {
		t.Errorf("messages left in EVENTS: got %d; want 0", got)
	}
	if got := c.metric("fb_collector_events_failed_total", "reason", "decode"); got != float64(len(poison)) {
		t.Errorf("failed{decode}: got %v; want %d", got, len(poison))
	}
	if got := c.metric("fb_collector_events_accepted_total", "event_type", "ad.view"); got < float64(len(poison)) {
		t.Errorf("accepted{ad.view}: got %v; want at least the %d poison messages", got, len(poison))
	}
}

// TestDeadLetterFailureKeepsTheMessage removes the DEADLETTER stream: the
// poison message cannot be put aside, so it is nak'd, not terminated, and
// is dead-lettered once the stream is back.
func TestDeadLetterFailureKeepsTheMessage(t *testing.T) {
	env := newEnv(t)
	c := env.start(env.options(event.Facebook, nil))
	// The collector has made sure of the streams by the time it consumes.
	eventually(t, 30*time.Second, func() string {
		if !strings.Contains(c.logs.String(), `"msg":"consuming"`) {
			return "collector not consuming yet"
		}
		return ""
	})
	if err := env.js.DeleteStream(context.Background(), stream.DeadLetter); err != nil {
		t.Fatal(err)
	}
	env.publish("events.facebook.comment", []byte("not json"), "poison", "poison-corr")
	eventually(t, 30*time.Second, func() string {
		if got := c.metric("fb_collector_events_failed_total", "reason", "deadletter"); got < 2 {
			return fmt.Sprintf("failed{deadletter}: got %v; want at least 2 tries", got)
		}
		return ""
	})
	if got := c.metric("fb_collector_events_failed_total", "reason", "decode"); got != 0 {
		t.Errorf("failed{decode} while DEADLETTER is missing: got %v; want 0", got)
	}
	if err := stream.Ensure(context.Background(), env.js, env.options(event.Facebook, nil).Stream, false); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() string {
		if got := len(env.deadLetters()); got != 1 {
			return fmt.Sprintf("dead letters: got %d; want 1", got)
		}
		return ""
	})
	env.settled("fb-collector")
	if got := c.metric("fb_collector_events_failed_total", "reason", "decode"); got != 1 {
		t.Errorf("failed{decode}: got %v; want 1", got)
	}
}

// TestRefusedRowIsDeadLetteredAfterMaxDeliver makes the database refuse one
// event for good: the others are stored at once, and that one is tried
// MAX_DELIVER times, then dead-lettered with the database's reason.
func TestRefusedRowIsDeadLetteredAfterMaxDeliver(t *testing.T) {
	env := newEnv(t)
	evs := events(t, 9, event.TikTok, 30)
	bad := evs[17].event.ID
	var badTries atomic.Int64
	opts := env.options(event.TikTok, map[string]string{"MAX_DELIVER": "2", "BATCH_WAIT": "300ms"})
	opts.wrapInserter = func(real Inserter) Inserter {
		return insertFunc(func(ctx context.Context, recs []store.Record) (int64, error) {
			for _, r := range recs {
				if r.Event.ID == bad {
					if len(recs) == 1 {
						badTries.Add(1)
					}
					return 0, fmt.Errorf("insert: %w", &pgconn.PgError{Code: "22003", Message: "numeric field overflow"})
				}
			}
			return real.InsertEvents(ctx, recs)
		})
	}
	env.publishEvents(evs)
	c := env.start(opts)

	eventually(t, 30*time.Second, func() string {
		if got := len(env.deadLetters()); got != 1 {
			return fmt.Sprintf("dead letters: got %d; want 1", got)
		}
		return ""
	})
	env.settled("ttk-collector")
	if got := env.count(""); got != len(evs)-1 {
		t.Errorf("rows: got %d; want %d", got, len(evs)-1)
	}
	if got := env.count("event_id = $1", bad); got != 0 {
		t.Errorf("refused event rows: got %d; want 0", got)
	}
	if got := badTries.Load(); got != 2 {
		t.Errorf("tries of the refused event alone: got %d; want MAX_DELIVER = 2", got)
	}
	dl := env.deadLetters()[0]
	if reason := dl.Header.Get(stream.HeaderReason); !strings.Contains(reason, "22003") {
		t.Errorf("dead letter reason: got %q; want the database error (22003)", reason)
	}
	if got := dl.Header.Get(stream.HeaderSubject); got != event.Subject(event.TikTok, evs[17].event.Type) {
		t.Errorf("dead letter subject header: got %q; want %q", got, event.Subject(event.TikTok, evs[17].event.Type))
	}
	for reason, want := range map[string]float64{"db_rejected": 1, "db_permanent": 1, "decode": 0, "deadletter": 0} {
		if got := c.metric("ttk_collector_events_failed_total", "reason", reason); got != want {
			t.Errorf("failed{%s}: got %v; want %v", reason, got, want)
		}
	}
}

// TestGracefulStopLosesNothing stops a collector in the middle of a
// backlog: Run returns nil, and a second run stores the rest, every event
// once.
func TestGracefulStopLosesNothing(t *testing.T) {
	env := newEnv(t)
	evs := events(t, 10, event.Facebook, 20000)
	env.publishAsync(evs)
	settings := map[string]string{"BATCH_SIZE": "100"}
	first := env.start(env.options(event.Facebook, settings))
	eventually(t, 30*time.Second, func() string {
		if got := env.count(""); got < 500 {
			return fmt.Sprintf("rows: got %d; want at least 500 before stopping", got)
		}
		return ""
	})
	if err := first.stop(); err != nil {
		t.Fatalf("Run after cancel: got %v; want nil", err)
	}
	if !strings.Contains(first.logs.String(), `"msg":"collector stopped"`) {
		t.Errorf("no clean stop logged:\n%s", first.logs.Tail(2000))
	}
	stored := env.count("")
	if stored == len(evs) {
		t.Logf("the backlog was drained before the stop")
	}

	second := env.start(env.options(event.Facebook, settings))
	eventually(t, 60*time.Second, func() string {
		if got := env.count(""); got != len(evs) {
			return fmt.Sprintf("rows: got %d; want %d", got, len(evs))
		}
		return ""
	})
	env.settled("fb-collector")
	processed := first.metric("fb_collector_events_processed_total") + second.metric("fb_collector_events_processed_total")
	duplicates := first.metric("fb_collector_events_duplicates_total") + second.metric("fb_collector_events_duplicates_total")
	if got := processed - duplicates; got != float64(len(evs)) {
		t.Errorf("new rows over both runs: got %v; want %d", got, len(evs))
	}
}

// TestDeletedConsumerIsRecreated deletes the durable under a running
// collector: it subscribes again and goes on storing.
func TestDeletedConsumerIsRecreated(t *testing.T) {
	env := newEnv(t)
	c := env.start(env.options(event.Facebook, nil))
	evs := events(t, 12, event.Facebook, 40)
	env.publishEvents(evs[:20])
	eventually(t, 30*time.Second, func() string {
		if got := env.count(""); got != 20 {
			return fmt.Sprintf("rows: got %d; want 20", got)
		}
		return ""
	})
	if err := env.js.DeleteConsumer(context.Background(), stream.Events, "fb-collector"); err != nil {
		t.Fatal(err)
	}
	env.publishEvents(evs[20:])
	eventually(t, 30*time.Second, func() string {
		if got := env.count(""); got != len(evs) {
			return fmt.Sprintf("rows after the consumer was deleted: got %d; want %d", got, len(evs))
		}
		return ""
	})
	env.settled("fb-collector")
	if !strings.Contains(c.logs.String(), "subscribing again") {
		t.Errorf("no resubscription logged:\n%s", c.logs.Tail(3000))
	}
}

// TestProbes checks /healthz, /readyz and /metrics while the database is
// unreachable and once the collector stops.
func TestProbes(t *testing.T) {
	env := newEnv(t)
	opts := env.options(event.TikTok, map[string]string{
		"DATABASE_URL": "postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=1",
	})
	c := env.start(opts)
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + c.addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: got %d; want 200", code)
	}
	// NATS connects in the background; then only the database is missing.
	eventually(t, 30*time.Second, func() string {
		code, body := get("/readyz")
		var ready struct{ Check string }
		_ = json.Unmarshal([]byte(body), &ready)
		if code != http.StatusServiceUnavailable || ready.Check != "postgres" {
			return fmt.Sprintf("/readyz with the database down: got %d %s; want 503 naming postgres", code, body)
		}
		return ""
	})
	_, metrics := get("/metrics")
	for _, name := range []string{"ttk_collector_events_accepted_total", "ttk_collector_events_processed_total",
		"ttk_collector_events_failed_total", "ttk_collector_events_duplicates_total",
		"ttk_collector_event_processing_duration_seconds", "ttk_collector_db_pool_max_conns"} {
		if !strings.Contains(metrics, name) {
			t.Errorf("/metrics: no %s", name)
		}
	}
	if err := c.stop(); err != nil {
		t.Errorf("Run: got %v; want nil", err)
	}

	healthy := env.start(env.options(event.TikTok, nil))
	eventually(t, 30*time.Second, func() string {
		resp, err := http.Get("http://" + healthy.addr + "/readyz")
		if err != nil {
			return err.Error()
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Sprintf("/readyz with NATS and the database up: got %d; want 200", resp.StatusCode)
		}
		return ""
	})
}

// TestPortInUse checks that a busy port fails Run at once.
func TestPortInUse(t *testing.T) {
	env := newEnv(t)
	c := env.start(env.options(event.Facebook, nil))
	opts := env.options(event.Facebook, nil)
	opts.Addr = c.addr
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := Run(ctx, opts, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	if err == nil || ctx.Err() != nil {
		t.Fatalf("Run on a busy port: got %v; want an error at once", err)
	}
}
