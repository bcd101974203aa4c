package store

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/eventpipe/eventpipe/pkg/event"
	"github.com/eventpipe/eventpipe/pkg/eventgen"
	"github.com/eventpipe/eventpipe/pkg/pgtest"
)

// openInsertStore returns a Store over a fresh migrated database.
func openInsertStore(tb testing.TB) *Store {
	tb.Helper()
	s, err := Open(context.Background(), pgtest.Migrated(tb), 4)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Close)
	return s
}

// insertRecords returns n valid records drawn from seed, parsed from their
// wire form as the collector does.
func insertRecords(tb testing.TB, seed int64, n int) []Record {
	tb.Helper()
	g := eventgen.New(seed)
	start := time.Date(2025, 6, 10, 18, 0, 0, 0, time.UTC)
	recs := make([]Record, 0, n)
	for i := range n {
		e := g.Next(start.Add(time.Duration(i) * time.Millisecond))
		rec, err := insertRecord(e.AppendJSON(nil), fmt.Sprintf("corr-%d", i%7))
		if err != nil {
			tb.Fatal(err)
		}
		recs = append(recs, rec)
	}
	return recs
}

func insertRecord(raw []byte, correlationID string) (Record, error) {
	e, err := event.Parse(raw)
	if err != nil {
		return Record{}, fmt.Errorf("parse %s: %w", raw, err)
	}
	return Record{Event: e, Raw: raw, CorrelationID: correlationID}, nil
}

func countEvents(tb testing.TB, s *Store) int64 {
	tb.Helper()
	var n int64
	if err := s.pool.QueryRow(context.Background(), `SELECT count(*) FROM events`).Scan(&n); err != nil {
		tb.Fatal(err)
	}
	return n
}

func TestInsertEventsReturnsNewRows(t *testing.T) {
	s := openInsertStore(t)
	ctx := context.Background()
	recs := insertRecords(t, 1, 300)

	steps := []struct {
		name  string
		batch []Record
		want  int64
		total int64
	}{
		{"first 200", recs[:200], 200, 200},
		{"same 200 again", recs[:200], 0, 200},
		{"100 old and 100 new", recs[100:300], 100, 300},
		{"empty batch", nil, 0, 300},
	}
	for _, st := range steps {
		got, err := s.InsertEvents(ctx, st.batch)
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if got != st.want {
			t.Errorf("%s: inserted got %d; want %d", st.name, got, st.want)
		}
		if n := countEvents(t, s); n != st.total {
			t.Errorf("%s: rows got %d; want %d", st.name, n, st.total)
		}
	}
}

func TestInsertEventsDuplicatesInsideOneBatch(t *testing.T) {
	s := openInsertStore(t)
	recs := insertRecords(t, 2, 50)
	// Each event three times, interleaved, as redeliveries and publisher
	// repeats can land in one batch.
	batch := append(append(append([]Record{}, recs...), recs...), recs[:25]...)
	got, err := s.InsertEvents(context.Background(), batch)
	if err != nil {
		t.Fatal(err)
	}
	if got != 50 {
		t.Errorf("inserted got %d; want 50", got)
	}
	if n := countEvents(t, s); n != 50 {
		t.Errorf("rows got %d; want 50", n)
	}
}

// The samples of events.md, one per shape, plus a tiktok purchase.
var insertSamples = []string{
	`{"eventId":"fb-3e8f395a-661a-4dc5-b868-1b571b78e33f","timestamp":"2025-05-14T10:46:28.214Z","source":"facebook","funnelStage":"bottom","eventType":"checkout.complete","data":{"user":{"age":57,"name":"Henry Auer","gender":"non-binary","userId":"dcc79054-7a44-458d-b8a1-b01ee0ba5db6","location":{"city":"Lorenland","country":"Mongolia"}},"engagement":{"adId":"ad-DPFSHszH","device":"desktop","browser":"Firefox","campaignId":"camp-Mn15k","clickPosition":"center","purchaseAmount":"414.29"}}}`,
	`{"eventId":"fb-fa3e4d6c-7062-4e6f-8f55-f8f41f7425cb","timestamp":"2025-06-10T18:01:43.455Z","source":"facebook","funnelStage":"top","eventType":"ad.view","data":{"user":{"userId":"81ac3c92-30ad-4290-974c-1d5273b230af","name":"Gregory Zulauf","age":58,"gender":"male","location":{"city":"Kyiv","country":"Ukraine"}},"engagement":{"actionTime":"2025-06-10T18:01:43.455Z","referrer":"newsfeed","videoId":null}}}`,
	`{"eventId":"ttk-cf30e5ff-a2a5-4854-9a92-9d99e3f4da67","timestamp":"2025-06-10T18:01:44.759Z","source":"tiktok","funnelStage":"bottom","eventType":"profile.visit","data":{"user":{"userId":"55e08dd7-e088-451a-b80e-2639138a6f99","username":"Eliza92","followers":423769},"engagement":{"actionTime":"2025-06-10T18:01:44.759Z","profileId":"profile-I6SF6J","purchasedItem":null,"purchaseAmount":null}}}`,
	`{"eventId":"ttk-0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d","timestamp":"2025-06-10T18:01:45.002Z","source":"tiktok","funnelStage":"top","eventType":"video.view","data":{"user":{"userId":"9a8b7c6d-5e4f-4a3b-2c1d-0e9f8a7b6c5d","username":"rob_k","followers":1520},"engagement":{"watchTime":42,"percentageWatched":87,"device":"iOS","country":"Mongolia","videoId":"vid-Ab12Cd34"}}}`,
	`{"eventId":"ttk-purchase-1","timestamp":"2025-06-10T18:01:46.100Z","source":"tiktok","funnelStage":"bottom","eventType":"purchase","data":{"user":{"userId":"u-1","username":"ann","followers":0},"engagement":{"actionTime":"2025-06-10T18:01:46.100Z","profileId":null,"purchasedItem":"item-7","purchaseAmount":"5.10"}}}`,
}

// storedRow is a stored event's typed columns as text, NULL as "NULL".
type storedRow struct {
	occurredAt, source, stage, eventType, userID            string
	age, gender, country, city, followers, device, campaign string
	amount, correlationID                                   string
	payloadEqual                                            bool
}

func readStoredRow(tb testing.TB, s *Store, id string, raw []byte) storedRow {
	tb.Helper()
	var r storedRow
	err := s.pool.QueryRow(context.Background(), `
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
		tb.Fatalf("read %s: %v", id, err)
	}
	return r
}

func TestInsertEventsTypedColumns(t *testing.T) {
	s := openInsertStore(t)
	var batch []Record
	for i, raw := range insertSamples {
		corr := "corr-" + fmt.Sprint(i)
		if i == 1 {
			corr = "" // no header: stored as NULL
		}
		rec, err := insertRecord([]byte(raw), corr)
		if err != nil {
			t.Fatal(err)
		}
		batch = append(batch, rec)
	}
	if n, err := s.InsertEvents(context.Background(), batch); err != nil || n != int64(len(batch)) {
		t.Fatalf("insert: got %d, %v; want %d, nil", n, err, len(batch))
	}
	want := []storedRow{
		{"2025-05-14T10:46:28.214Z", "facebook", "bottom", "checkout.complete", "dcc79054-7a44-458d-b8a1-b01ee0ba5db6",
			"57", "non-binary", "Mongolia", "Lorenland", "NULL", "desktop", "camp-Mn15k", "414.29", "corr-0", true},
		{"2025-06-10T18:01:43.455Z", "facebook", "top", "ad.view", "81ac3c92-30ad-4290-974c-1d5273b230af",
			"58", "male", "Ukraine", "Kyiv", "NULL", "NULL", "NULL", "NULL", "NULL", true},
		{"2025-06-10T18:01:44.759Z", "tiktok", "bottom", "profile.visit", "55e08dd7-e088-451a-b80e-2639138a6f99",
			"NULL", "NULL", "NULL", "NULL", "423769", "NULL", "NULL", "NULL", "corr-2", true},
		{"2025-06-10T18:01:45.002Z", "tiktok", "top", "video.view", "9a8b7c6d-5e4f-4a3b-2c1d-0e9f8a7b6c5d",
			"NULL", "NULL", "Mongolia", "NULL", "1520", "iOS", "NULL", "NULL", "corr-3", true},
		{"2025-06-10T18:01:46.100Z", "tiktok", "bottom", "purchase", "u-1",
			"NULL", "NULL", "NULL", "NULL", "0", "NULL", "NULL", "5.10", "corr-4", true},
	}
	for i, rec := range batch {
		t.Run(rec.Event.ID, func(t *testing.T) {
			if got := readStoredRow(t, s, rec.Event.ID, rec.Raw); got != want[i] {
				t.Errorf("got  %+v\nwant %+v", got, want[i])
			}
		})
	}
}

func TestIsPermanent(t *testing.T) {
	s := openInsertStore(t)
	ctx := context.Background()
	cancelled, cancel := context.WithCancel(ctx)
	cancel()

	// withAmount returns one valid record whose purchaseAmount PostgreSQL
	// will see as amount.
	withAmount := func(amount string) []Record {
		rec, err := insertRecord([]byte(insertSamples[0]), "")
		if err != nil {
			t.Fatal(err)
		}
		rec.Event.ID = "fb-" + amount
		rec.Event.Engagement.PurchaseAmount = &amount
		return []Record{rec}
	}
	down, err := Open(ctx, "postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=2", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer down.Close()

	tests := []struct {
		name string
		err  func() error
		want bool
	}{
		{"numeric overflow", func() error {
			_, err := s.pool.Exec(ctx, `SELECT 12345.678::numeric(5,2)`)
			return err
		}, true},
		{"CHECK violation: negative amount", func() error {
			_, err := s.InsertEvents(ctx, withAmount("-1.00"))
			return err
		}, true},
		{"amount that is not a number", func() error {
			_, err := s.InsertEvents(ctx, withAmount("12abc"))
			return err
		}, true},
		{"payload that is not JSON", func() error {
			recs := withAmount("1.00")
			recs[0].Raw = []byte("{not json")
			_, err := s.InsertEvents(ctx, recs)
			return err
		}, true},
		// A statement that does not fit the database is retried: the
		// migrations or the grants may not have run yet.
		{"undefined table", func() error {
			_, err := s.pool.Exec(ctx, `SELECT * FROM no_such_table`)
			return err
		}, false},
		{"undefined column", func() error {
			_, err := s.pool.Exec(ctx, `SELECT no_such_column FROM events`)
			return err
		}, false},
		{"cancelled context", func() error {
			_, err := s.InsertEvents(cancelled, withAmount("2.00"))
			return err
		}, false},
		{"statement timeout", func() error {
			return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, `SET LOCAL statement_timeout = '10ms'`); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, `SELECT pg_sleep(5)`)
				return err
			})
		}, false},
		{"database unreachable", func() error {
			_, err := down.InsertEvents(ctx, withAmount("3.00"))
			return err
		}, false},
		// Serialization failures and an administrator's shutdown cannot be
		// provoked on demand here; their SQLSTATEs stand in for them.
		{"serialization failure", func() error {
			return fmt.Errorf("insert: %w", &pgconn.PgError{Code: "40001"})
		}, false},
		{"permission denied", func() error {
			return fmt.Errorf("insert: %w", &pgconn.PgError{Code: "42501"})
		}, false},
		{"admin shutdown", func() error {
			return fmt.Errorf("insert: %w", &pgconn.PgError{Code: "57P01"})
		}, false},
		{"no error", func() error { return nil }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.err()
			if tt.name != "no error" && err == nil {
				t.Fatal("got no error; the case did not provoke one")
			}
			if got := IsPermanent(err); got != tt.want {
				t.Errorf("IsPermanent(%v) got %v; want %v", err, got, tt.want)
			}
		})
	}
	if n := countEvents(t, s); n != 0 {
		t.Errorf("rows after failed inserts got %d; want 0", n)
	}
}

// stageSQL is the staging table of the COPY variant, one per connection,
// emptied by every commit.
const stageSQL = `CREATE TEMP TABLE IF NOT EXISTS events_stage (
	event_id text, occurred_at timestamptz, source text, funnel_stage text,
	event_type text, user_id text, age int4, gender text, country text, city text,
	followers int8, device text, campaign_id text, purchase_amount text,
	correlation_id text, payload text) ON COMMIT DELETE ROWS`

const fromStageSQL = `
INSERT INTO events (event_id, occurred_at, source, funnel_stage, event_type, user_id,
	age, gender, country, city, followers, device, campaign_id, purchase_amount,
	correlation_id, payload)
SELECT event_id, occurred_at, source, funnel_stage, event_type, user_id,
	age, gender, country, city, followers, device, campaign_id, purchase_amount::numeric,
	correlation_id, payload::jsonb
FROM events_stage
ON CONFLICT (event_id) DO NOTHING`

var stageColumns = []string{"event_id", "occurred_at", "source", "funnel_stage", "event_type",
	"user_id", "age", "gender", "country", "city", "followers", "device", "campaign_id",
	"purchase_amount", "correlation_id", "payload"}

// insertEventsCopy is the alternative InsertEvents was measured against:
// COPY the batch into a staging table, then move it with one INSERT.
func (s *Store) insertEventsCopy(ctx context.Context, recs []Record) (int64, error) {
	c := newColumns(recs)
	var inserted int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, stageSQL); err != nil {
			return err
		}
		_, err := tx.CopyFrom(ctx, pgx.Identifier{"events_stage"}, stageColumns,
			pgx.CopyFromSlice(len(recs), func(i int) ([]any, error) {
				return []any{c.ids[i], c.occurred[i], c.sources[i], c.stages[i], c.types[i],
					c.users[i], c.ages[i], c.genders[i], c.countries[i], c.cities[i],
					c.followers[i], c.devices[i], c.campaigns[i], c.amounts[i],
					c.correlations[i], c.payloads[i]}, nil
			}))
		if err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, fromStageSQL)
		inserted = tag.RowsAffected()
		return err
	})
	return inserted, err
}

func TestInsertEventsCopyVariantAgrees(t *testing.T) {
	s := openInsertStore(t)
	recs := insertRecords(t, 3, 100)
	batch := append(append([]Record{}, recs...), recs[:10]...)
	got, err := s.insertEventsCopy(context.Background(), batch)
	if err != nil {
		t.Fatal(err)
	}
	if got != 100 {
		t.Errorf("inserted got %d; want 100", got)
	}
	if got, err := s.insertEventsCopy(context.Background(), batch); err != nil || got != 0 {
		t.Errorf("again: got %d, %v; want 0, nil", got, err)
	}
}

// BenchmarkInsertEvents compares the two ways of storing a 1,000-event
// batch idempotently, without and with 10% of already stored events (the
// redeliveries and publisher repeats a collector sees). The last variant
// stores like the first with the rollup trigger disabled: the difference
// is what keeping the report rollups costs. Its users are mostly new to
// their hour, the dearest case for audience_users.
func BenchmarkInsertEvents(b *testing.B) {
	const batchSize = 1000
	variants := []struct {
		name    string
		insert  func(*Store, context.Context, []Record) (int64, error)
		rollups bool
	}{
		{"unnest", (*Store).InsertEvents, true},
		{"copy", (*Store).insertEventsCopy, true},
		{"unnest-without-rollups", (*Store).InsertEvents, false},
	}
	for _, v := range variants {
		for _, dupPct := range []int{0, 10} {
			b.Run(fmt.Sprintf("%s/dup=%d%%", v.name, dupPct), func(b *testing.B) {
				s := openInsertStore(b)
				ctx := context.Background()
				if !v.rollups {
					if _, err := s.pool.Exec(ctx, `ALTER TABLE events DISABLE TRIGGER events_rollup`); err != nil {
						b.Fatal(err)
					}
				}
				dups := batchSize * dupPct / 100
				// One extra batch is stored first, so the first timed batch
				// has duplicates to repeat too.
				all := insertRecords(b, 42, (b.N+1)*(batchSize-dups)+dups)
				if _, err := v.insert(s, ctx, all[:batchSize]); err != nil {
					b.Fatal(err)
				}
				batches := make([][]Record, b.N)
				next := batchSize
				for i := range batches {
					batch := make([]Record, 0, batchSize)
					batch = append(batch, all[next-dups:next]...) // already stored
					batch = append(batch, all[next:next+batchSize-dups]...)
					next += batchSize - dups
					batches[i] = batch
				}
				var inserted int64
				b.ResetTimer()
				for i := range b.N {
					n, err := v.insert(s, ctx, batches[i])
					if err != nil {
						b.Fatal(err)
					}
					inserted += n
				}
				b.StopTimer()
				if want := int64(b.N * (batchSize - dups)); inserted != want {
					b.Fatalf("inserted got %d; want %d", inserted, want)
				}
				b.ReportMetric(float64(b.N*batchSize)/b.Elapsed().Seconds(), "events/s")
			})
		}
	}
}

// TestCopyRowsStoreLikeInsertEvents loads the same events once with
// InsertEvents and once with COPY from CopyRows, into two databases, and
// requires every column of every row (received_at aside) to read the same.
func TestCopyRowsStoreLikeInsertEvents(t *testing.T) {
	ctx := context.Background()
	recs := insertRecords(t, 11, 400)
	inserted, copied := openInsertStore(t), openInsertStore(t)
	if _, err := inserted.InsertEvents(ctx, recs); err != nil {
		t.Fatal(err)
	}
	rows, err := CopyRows(recs)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := copied.pool.CopyFrom(ctx, pgx.Identifier{"events"}, CopyColumns, pgx.CopyFromRows(rows)); err != nil || n != int64(len(recs)) {
		t.Fatalf("copy: %d rows, %v; want %d", n, err, len(recs))
	}
	dump := func(s *Store) string {
		var out string
		err := s.pool.QueryRow(ctx, `SELECT string_agg(row(`+strings.Join(CopyColumns, ", ")+`)::text, E'\n' ORDER BY event_id) FROM events`).Scan(&out)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	if a, b := dump(inserted), dump(copied); a != b || a == "" {
		t.Errorf("COPY stored the events differently from InsertEvents")
	}
	var revenue int
	if err := copied.pool.QueryRow(ctx, `SELECT count(*) FROM events WHERE purchase_amount IS NOT NULL`).Scan(&revenue); err != nil || revenue == 0 {
		t.Errorf("no purchase amounts among %d events (%v): the comparison misses numeric", len(recs), err)
	}
}
