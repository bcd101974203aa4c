package store

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventpipe/eventpipe/pkg/eventgen"
	"github.com/eventpipe/eventpipe/pkg/pgtest"
	"github.com/eventpipe/eventpipe/pkg/schema"
)

// scaleStart is where the events of BenchmarkReportsAtScale begin; they
// span scaleDays days from it.
var scaleStart = time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)

const scaleDays = 30

// BenchmarkReportsAtScale times the reports through the store over
// EVENTPIPE_BENCH_EVENTS events spread evenly over 30 days, drawn from
// eventgen (20,000 users per source), and reports each query's median and
// 95th percentile:
//
//	EVENTPIPE_BENCH_EVENTS=1000000 go test -run '^$' -bench ReportsAtScale \
//	    -benchtime 40x -timeout 2h ./pkg/store
//
// The events are loaded with COPY into a database at schema version 1,
// then the migrations are applied, so the rollups are built by the
// migration's backfill. EVENTPIPE_BENCH_DATABASE_URL names a database to
// load into, or to reuse when it already holds the events (migrated up if
// need be), instead of a fresh one. EVENTPIPE_BENCH_REFERENCE=1 also times
// the same queries scanning the events table alone, as the reports did
// before the rollups (slow: use a small -benchtime); =only times just
// those, on the database as it is, which may be at version 1, the schema
// before the rollups.
func BenchmarkReportsAtScale(b *testing.B) {
	n, _ := strconv.Atoi(os.Getenv("EVENTPIPE_BENCH_EVENTS"))
	if n <= 0 {
		b.Skip("set EVENTPIPE_BENCH_EVENTS to the number of events to load, e.g. 1000000")
	}
	dbURL := os.Getenv("EVENTPIPE_BENCH_DATABASE_URL")
	reference := os.Getenv("EVENTPIPE_BENCH_REFERENCE")
	switch {
	case reference == "only" && dbURL == "":
		b.Fatal("EVENTPIPE_BENCH_REFERENCE=only needs EVENTPIPE_BENCH_DATABASE_URL")
	case reference == "only":
		// The database as it is: one at version 1 is the schema before
		// the rollups.
	case dbURL == "":
		dbURL = pgtest.NewDatabase(b)
		fallthrough
	default:
		loadScale(b, dbURL, n)
	}
	s, err := Open(context.Background(), dbURL, 2)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	// The reference runs with the settings the reports had before the
	// rollups: parallel query allowed.
	pool, err := pgxpool.New(context.Background(), dbURL)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	ref := New(pool)

	day := scaleStart.AddDate(0, 0, 10)
	all := TimeRange{}
	oneDay := TimeRange{From: day, To: day.AddDate(0, 0, 1)}
	// Uneven bounds, to the second, across most of the data.
	uneven := TimeRange{From: scaleStart.Add(2*24*time.Hour + 10*time.Hour + 17*time.Minute + 5*time.Second),
		To: scaleStart.Add(27*24*time.Hour + 15*time.Hour + 42*time.Minute)}
	campaign := eventgen.New(1).Next(day).Engagement.CampaignID
	type query struct {
		name      string
		rollups   func(context.Context) error
		reference func(context.Context) error
	}
	events := func(name string, q EventsQuery) query {
		return query{"events/" + name,
			func(ctx context.Context) error { _, err := s.ReportEvents(ctx, q); return err },
			func(ctx context.Context) error { _, err := ref.referenceEvents(ctx, q); return err }}
	}
	revenue := func(name string, q RevenueQuery) query {
		q.Limit = 10
		return query{"revenue/" + name,
			func(ctx context.Context) error { _, err := s.ReportRevenue(ctx, q); return err },
			func(ctx context.Context) error { _, err := ref.referenceRevenue(ctx, q); return err }}
	}
	demographics := func(name string, q DemographicsQuery) query {
		q.Limit = 10
		return query{"demographics/" + name,
			func(ctx context.Context) error { _, err := s.ReportDemographics(ctx, q); return err },
			func(ctx context.Context) error { _, err := ref.referenceDemographics(ctx, q); return err }}
	}
	queries := []query{
		events("full", EventsQuery{TimeRange: all}),
		events("one_day", EventsQuery{TimeRange: oneDay}),
		events("filtered_uneven", EventsQuery{TimeRange: uneven, Source: "facebook", EventType: "ad.view"}),
		events("full_hourly", EventsQuery{TimeRange: all, Interval: "hour"}),
		events("uneven_hourly", EventsQuery{TimeRange: uneven, Interval: "hour"}),
		events("one_day_minutely", EventsQuery{TimeRange: oneDay, Interval: "minute"}),
		events("full_minutely", EventsQuery{TimeRange: all, Interval: "minute"}),
		revenue("full", RevenueQuery{TimeRange: all}),
		revenue("one_day", RevenueQuery{TimeRange: oneDay}),
		revenue("filtered_uneven", RevenueQuery{TimeRange: uneven, CampaignID: campaign}),
		demographics("full", DemographicsQuery{TimeRange: all}),
		demographics("one_day", DemographicsQuery{TimeRange: oneDay}),
		demographics("filtered_uneven", DemographicsQuery{TimeRange: uneven, Source: "tiktok"}),
		demographics("uneven", DemographicsQuery{TimeRange: uneven}),
	}
	impls := []string{"rollups"}
	switch reference {
	case "1":
		impls = append(impls, "events_table")
	case "only":
		impls = []string{"events_table"}
	}
	for _, q := range queries {
		for _, impl := range impls {
			run := q.rollups
			if impl == "events_table" {
				run = q.reference
			}
			b.Run(q.name+"/"+impl, func(b *testing.B) {
				ctx := context.Background()
				took := make([]time.Duration, 0, b.N)
				for b.Loop() {
					start := time.Now()
					if err := run(ctx); err != nil {
						b.Fatal(err)
					}
					took = append(took, time.Since(start))
				}
				slices.Sort(took)
				b.ReportMetric(ms(took[len(took)/2]), "p50-ms")
				b.ReportMetric(ms(took[(len(took)*95+99)/100-1]), "p95-ms")
			})
		}
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// loadScale leaves n events in the database at dbURL, at the latest schema
// version, with the rollups built by the migrations' backfill: it COPYs
// them in at version 1, then migrates up. A database already holding n
// events is only migrated up, if it needs to be.
func loadScale(tb testing.TB, dbURL string, n int) {
	tb.Helper()
	ctx := context.Background()
	want, err := schema.Want()
	if err != nil {
		tb.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close(ctx)
	var stored int64
	err = conn.QueryRow(ctx, `SELECT count(*) FROM events`).Scan(&stored)
	switch {
	case err == nil && stored == int64(n):
		tb.Logf("reusing %d events", stored)
	case err == nil && stored != 0:
		tb.Fatalf("the database holds %d events; want %d or none", stored, n)
	default:
		migrateTo(tb, dbURL, 1)
		start := time.Now()
		src := &scaleSource{g: eventgen.New(1), n: n, step: scaleDays * 24 * time.Hour / time.Duration(n)}
		copied, err := conn.CopyFrom(ctx, pgx.Identifier{"events"}, stageColumns, src)
		if err != nil {
			tb.Fatalf("copy: %v", err)
		}
		if copied != int64(n) {
			tb.Fatalf("copied %d events; want %d", copied, n)
		}
		tb.Logf("copied %d events in %s", n, time.Since(start).Round(time.Second))
	}

	start := time.Now()
	migrateTo(tb, dbURL, want)
	tb.Logf("migrated to version %d (rollup backfill) in %s", want, time.Since(start).Round(time.Second))
	start = time.Now()
	// Autovacuum would do as much after a bulk load: statistics for the
	// planner, and the visibility map for index-only scans.
	if _, err := conn.Exec(ctx, `VACUUM ANALYZE`); err != nil {
		tb.Fatal(err)
	}
	tb.Logf("vacuumed in %s", time.Since(start).Round(time.Second))
}

// scaleSource generates the COPY rows of n events in time order, columns
// filled as InsertEvents fills them.
type scaleSource struct {
	g    *eventgen.Generator
	n, i int
	step time.Duration
	// chunk holds the next rows, column by column.
	chunk  *columns
	amount []pgtype.Numeric
	at     int
	err    error
}

func (s *scaleSource) Next() bool {
	if s.chunk != nil && s.at+1 < len(s.chunk.ids) {
		s.at++
		return true
	}
	if s.i >= s.n {
		return false
	}
	recs := make([]Record, min(10000, s.n-s.i))
	for j := range recs {
		e := s.g.Next(scaleStart.Add(time.Duration(s.i) * s.step))
		recs[j] = Record{Event: e, Raw: e.AppendJSON(nil), CorrelationID: fmt.Sprintf("load-%d", s.i/1000)}
		s.i++
	}
	s.chunk, s.at = newColumns(recs), 0
	s.amount = make([]pgtype.Numeric, len(recs))
	for j, a := range s.chunk.amounts {
		if a.Valid {
			if err := s.amount[j].Scan(a.String); err != nil {
				s.err = err
				return false
			}
		}
	}
	return true
}

func (s *scaleSource) Values() ([]any, error) {
	c, i := s.chunk, s.at
	return []any{c.ids[i], c.occurred[i], c.sources[i], c.stages[i], c.types[i],
		c.users[i], c.ages[i], c.genders[i], c.countries[i], c.cities[i],
		c.followers[i], c.devices[i], c.campaigns[i], s.amount[i],
		c.correlations[i], c.payloads[i]}, nil
}

func (s *scaleSource) Err() error { return s.err }
