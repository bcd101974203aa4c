package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-migrate/migrate/v4"
	"github.com/golang-migrate/migrate/v4/source/iofs"

	"github.com/eventpipe/eventpipe/migrations"
	"github.com/eventpipe/eventpipe/pkg/event"
	"github.com/eventpipe/eventpipe/pkg/eventgen"
	"github.com/eventpipe/eventpipe/pkg/pgtest"
	"github.com/eventpipe/eventpipe/pkg/schema"
)

// The rollup tests hold the rollup-backed reports to the reference reports
// of reference_test.go, which scan the events table alone, over data made
// to find the seams: instants on and next to the bounds of minutes, hours,
// days and months, users that come back across them with changing
// attributes, rows with NULLs no parsed event has, and ranges whose bounds
// fall on, next to and between the same instants.

// rollupWindow is where the test events lie: across three month ends.
var rollupWindow = TimeRange{
	From: time.Date(2025, 5, 28, 0, 0, 0, 0, time.UTC),
	To:   time.Date(2025, 8, 3, 0, 0, 0, 0, time.UTC),
}

// boundaryInstant returns the start of a random minute, hour, day or month
// of the window, nudged by one of the offsets that sit next to it.
func boundaryInstant(r *rand.Rand) time.Time {
	w := rollupWindow
	at := w.From.Add(time.Duration(r.Int64N(int64(w.To.Sub(w.From)))))
	g := []granularity{byMinute, byHour, byDay, byMonth}[r.IntN(4)]
	at = g.floor(at)
	offsets := []time.Duration{0, 0, -time.Microsecond, time.Microsecond, -time.Millisecond,
		time.Millisecond, time.Minute - time.Microsecond, time.Second}
	return at.Add(offsets[r.IntN(len(offsets))])
}

// randomInstant returns an instant of the window to the microsecond.
func randomInstant(r *rand.Rand) time.Time {
	w := rollupWindow
	return w.From.Add(time.Duration(r.Int64N(int64(w.To.Sub(w.From)))).Truncate(time.Microsecond))
}

// rollupRecords returns n valid events: half at random instants, half on
// or next to bucket bounds. Two in three belong to a pool of 30 users per
// source, so users come back across buckets; as they keep the attributes
// eventgen gave the event, they also change country, age group, follower
// tier and device.
func rollupRecords(tb testing.TB, seed int64, n int) []Record {
	tb.Helper()
	g := eventgen.New(seed)
	r := rand.New(rand.NewPCG(uint64(seed), 99))
	recs := make([]Record, n)
	for i := range recs {
		at := randomInstant(r)
		if r.IntN(2) == 0 {
			at = boundaryInstant(r)
		}
		e := g.Next(at)
		e.Timestamp = at
		if r.IntN(3) > 0 {
			e.User.ID = fmt.Sprintf("pool-%s-%d", e.Source, r.IntN(30))
		}
		recs[i] = Record{Event: e, Raw: e.AppendJSON(nil), CorrelationID: "corr"}
	}
	return recs
}

// oddRows are rows a parsed event never makes, written straight into the
// table: NULL attributes, an amount on an event that is no transaction, a
// checkout without a campaign, fields of the other source.
var oddRows = []string{
	`('odd-fb-nulls', '2025-06-30 23:59:59.999999+00', 'facebook', 'top', 'ad.view', 'pool-facebook-1', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)`,
	`('odd-fb-city-only', '2025-07-01 00:00:00+00', 'facebook', 'top', 'comment', 'odd-u1', 70, 'female', NULL, 'Nowhere', NULL, NULL, NULL, NULL)`,
	`('odd-fb-no-city', '2025-07-01 00:30:00+00', 'facebook', 'top', 'comment', 'odd-u1', 16, 'male', 'Chile', NULL, NULL, NULL, NULL, NULL)`,
	`('odd-fb-no-campaign', '2025-06-15 12:00:00.5+00', 'facebook', 'bottom', 'checkout.complete', 'odd-u2', 30, 'male', 'Chile', 'Santiago', NULL, 'mobile', NULL, 12.345)`,
	`('odd-fb-click-amount', '2025-06-15 12:00:01+00', 'facebook', 'bottom', 'ad.click', 'odd-u2', 30, 'male', 'Chile', 'Santiago', NULL, 'mobile', 'camp-odd', 99.99)`,
	`('odd-fb-followers', '2025-06-15 12:00:02+00', 'facebook', 'top', 'ad.view', 'odd-u2', 30, 'male', 'Chile', 'Santiago', 5, 'iOS', NULL, NULL)`,
	`('odd-fb-tiny', '2025-06-15 12:00:03+00', 'facebook', 'bottom', 'checkout.complete', 'odd-u3', 30, 'male', 'Chile', 'Santiago', NULL, 'mobile', 'camp-odd', 0.004)`,
	`('odd-fb-tiny-2', '2025-06-15 13:00:03+00', 'facebook', 'bottom', 'checkout.complete', 'odd-u3', 30, 'male', 'Chile', 'Santiago', NULL, 'mobile', 'camp-odd', 0.004)`,
	`('odd-tt-no-followers', '2025-07-31 23:59:59.999+00', 'tiktok', 'top', 'like', 'odd-t1', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)`,
	`('odd-tt-top-no-device', '2025-08-01 00:00:00+00', 'tiktok', 'top', 'share', 'odd-t1', NULL, NULL, 'Kenya', NULL, 1000000, NULL, NULL, NULL)`,
	`('odd-tt-bottom-country', '2025-08-01 00:00:00.000001+00', 'tiktok', 'bottom', 'follow', 'odd-t1', NULL, 'female', 'Kenya', 'Nairobi', 999, 'iOS', NULL, NULL)`,
	`('odd-tt-purchase-campaign', '2025-06-01 00:00:00+00', 'tiktok', 'bottom', 'purchase', 'odd-t2', NULL, NULL, NULL, NULL, 0, NULL, 'camp-odd', 5.1)`,
	`('odd-tt-purchase-no-amount', '2025-06-01 00:00:01+00', 'tiktok', 'bottom', 'purchase', 'odd-t2', NULL, NULL, NULL, NULL, 0, NULL, NULL, NULL)`,
}

func insertOddRows(tb testing.TB, s *Store) {
	tb.Helper()
	rows := make([]string, len(oddRows))
	for i, r := range oddRows {
		rows[i] = strings.TrimSuffix(r, ")") + ", '{}')"
	}
	_, err := s.pool.Exec(context.Background(), `INSERT INTO events (event_id, occurred_at, source,
		funnel_stage, event_type, user_id, age, gender, country, city, followers, device, campaign_id,
		purchase_amount, payload) VALUES `+strings.Join(rows, ",\n"))
	if err != nil {
		tb.Fatal(err)
	}
}

// insertInBatches stores recs in batches of random sizes, each batch
// followed now and then by a redelivery of part of it, and checks that
// every event was counted new exactly once.
func insertInBatches(tb testing.TB, s *Store, r *rand.Rand, recs []Record) {
	tb.Helper()
	ctx := context.Background()
	var inserted int64
	for i := 0; i < len(recs); {
		j := min(len(recs), i+1+r.IntN(400))
		n, err := s.InsertEvents(ctx, recs[i:j])
		if err != nil {
			tb.Fatal(err)
		}
		inserted += n
		if r.IntN(3) == 0 {
			again := recs[max(0, i-r.IntN(200)) : i+r.IntN(j-i)+1]
			if n, err := s.InsertEvents(ctx, again); err != nil || n != 0 {
				tb.Fatalf("redelivery: got %d, %v; want 0 new, nil", n, err)
			}
		}
		i = j
	}
	if inserted != int64(len(recs)) {
		tb.Fatalf("inserted got %d; want %d", inserted, len(recs))
	}
}

// loadRollupData fills a fresh database with n test events and the odd
// rows.
func loadRollupData(tb testing.TB, seed int64, n int) (*Store, string) {
	tb.Helper()
	dbURL := pgtest.Migrated(tb)
	s, err := Open(context.Background(), dbURL, 4)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Close)
	insertInBatches(tb, s, rand.New(rand.NewPCG(uint64(seed), 5)), rollupRecords(tb, seed, n))
	insertOddRows(tb, s)
	return s, dbURL
}

// rollupRanges returns ranges whose bounds are open, on bucket bounds, next
// to them or anywhere, to the microsecond; some empty, some backwards.
func rollupRanges(seed int64, n int) []TimeRange {
	r := rand.New(rand.NewPCG(uint64(seed), 13))
	day := func(d int) time.Time { return time.Date(2025, 6, d, 0, 0, 0, 0, time.UTC) }
	ranges := []TimeRange{
		{},
		{From: day(1)},
		{To: day(15)},
		{From: day(1), To: day(1).AddDate(0, 1, 0)},
		{From: day(10), To: day(11)},
		{From: day(10).Add(10*time.Hour + 17*time.Minute + 5*time.Second), To: day(10).Add(15*time.Hour + 42*time.Minute)},
		{From: day(30).Add(23*time.Hour + 59*time.Minute + 59*time.Second), To: day(30).Add(24*time.Hour + time.Second)},
		{From: day(10).Add(time.Hour + time.Microsecond), To: day(10).Add(time.Hour + 30*time.Second)},
		{From: day(10).Add(90 * time.Minute), To: day(10).Add(90 * time.Minute)},
		{From: day(11), To: day(10)},
		{From: day(1).Add(-time.Microsecond), To: day(1).AddDate(0, 2, 0).Add(time.Microsecond)},
		{From: rollupWindow.From.AddDate(-1, 0, 0), To: rollupWindow.To.AddDate(1, 0, 0)},
	}
	for len(ranges) < n {
		pick := func() time.Time {
			switch r.IntN(6) {
			case 0:
				return time.Time{}
			case 1, 2:
				return randomInstant(r)
			default:
				return boundaryInstant(r)
			}
		}
		a, b := pick(), pick()
		if !a.IsZero() && !b.IsZero() && b.Before(a) && r.IntN(8) > 0 {
			a, b = b, a
		}
		if r.IntN(4) == 0 && !a.IsZero() {
			// Short ranges: inside one minute, hour or day, or just across
			// one bound.
			b = a.Add(time.Duration(r.Int64N(int64([]time.Duration{time.Minute, time.Hour, 26 * time.Hour}[r.IntN(3)]))))
		}
		ranges = append(ranges, TimeRange{From: a, To: b})
	}
	return ranges
}

func (r TimeRange) String() string {
	f := func(t time.Time) string {
		if t.IsZero() {
			return "open"
		}
		return t.Format(time.RFC3339Nano)
	}
	return "[" + f(r.From) + ", " + f(r.To) + ")"
}

// sameReport compares two reports of one kind by their JSON, which
// follows pointers and shows times in UTC.
func sameReport(tb testing.TB, what string, got, want any) bool {
	tb.Helper()
	g, err := json.Marshal(got)
	if err != nil {
		tb.Fatal(err)
	}
	w, err := json.Marshal(want)
	if err != nil {
		tb.Fatal(err)
	}
	if string(g) != string(w) {
		tb.Errorf("%s:\ngot  %s\nwant %s", what, g, w)
		return false
	}
	return true
}

// checkReportsMatchReference compares every report over ranges, with every
// filter combination, to the reference, and gives up after a few
// mismatches.
func checkReportsMatchReference(t *testing.T, s *Store, ranges []TimeRange) {
	t.Helper()
	ctx := context.Background()
	sources := []string{"", "facebook", "tiktok"}
	stages := []string{"", "top", "bottom"}
	types := []string{"", "ad.view", "video.view", "checkout.complete", "purchase", "follow"}
	intervals := []string{"", "minute", "hour", "day"}
	campaigns := []string{"", "camp-odd", "camp-none", eventgen.New(1).Next(time.Now()).Engagement.CampaignID}
	failures := 0
	check := func(what string, got, want any, errGot, errWant error) {
		t.Helper()
		if errGot != nil || errWant != nil {
			t.Fatalf("%s: got error %v; reference error %v", what, errGot, errWant)
		}
		if !sameReport(t, what, got, want) {
			failures++
		}
		if failures >= 5 {
			t.FailNow()
		}
	}
	combo := 0
	for _, r := range ranges {
		for _, src := range sources {
			for _, stage := range stages {
				for _, typ := range types {
					combo++
					q := EventsQuery{TimeRange: r, Source: src, FunnelStage: stage, EventType: typ,
						Interval: intervals[combo%len(intervals)]}
					got, errGot := s.ReportEvents(ctx, q)
					want, errWant := s.referenceEvents(ctx, q)
					check(fmt.Sprintf("events %v %+v", r, q), got, want, errGot, errWant)
				}
			}
			for i, campaign := range campaigns {
				q := RevenueQuery{TimeRange: r, Source: src, CampaignID: campaign, Limit: []int{1, 2, 10, 1000}[i]}
				got, errGot := s.ReportRevenue(ctx, q)
				want, errWant := s.referenceRevenue(ctx, q)
				check(fmt.Sprintf("revenue %v %+v", r, q), got, want, errGot, errWant)
			}
			for _, limit := range []int{3, 1000} {
				q := DemographicsQuery{TimeRange: r, Source: src, Limit: limit}
				got, errGot := s.ReportDemographics(ctx, q)
				want, errWant := s.referenceDemographics(ctx, q)
				check(fmt.Sprintf("demographics %v %+v", r, q), got, want, errGot, errWant)
			}
		}
	}
}

func TestRollupReportsMatchTheEventsTable(t *testing.T) {
	n, ranges := 4000, 40
	if testing.Short() {
		n, ranges = 1500, 12
	}
	s, _ := loadRollupData(t, 1, n)
	checkReportsMatchReference(t, s, rollupRanges(1, ranges))
}

func TestSplit(t *testing.T) {
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	rng := func(from, to string) TimeRange {
		var r TimeRange
		if from != "" {
			r.From = at(from)
		}
		if to != "" {
			r.To = at(to)
		}
		return r
	}
	tests := []struct {
		name  string
		r     TimeRange
		grans []granularity
		want  []string
	}{
		{"the issue's example", rng("2025-06-10T10:17:05Z", "2025-06-10T15:42:00Z"), []granularity{byHour},
			[]string{"hour [2025-06-10T11:00:00Z, 2025-06-10T15:00:00Z)",
				"raw [2025-06-10T10:17:05Z, 2025-06-10T11:00:00Z)", "raw [2025-06-10T15:00:00Z, 2025-06-10T15:42:00Z)"}},
		{"days, hours, minutes", rng("2025-06-09T22:58:30Z", "2025-06-12T01:02:03Z"), []granularity{byDay, byHour, byMinute},
			[]string{"day [2025-06-10T00:00:00Z, 2025-06-12T00:00:00Z)",
				"hour [2025-06-09T23:00:00Z, 2025-06-10T00:00:00Z)",
				"minute [2025-06-09T22:59:00Z, 2025-06-09T23:00:00Z)",
				"raw [2025-06-09T22:58:30Z, 2025-06-09T22:59:00Z)",
				"hour [2025-06-12T00:00:00Z, 2025-06-12T01:00:00Z)",
				"minute [2025-06-12T01:00:00Z, 2025-06-12T01:02:00Z)",
				"raw [2025-06-12T01:02:00Z, 2025-06-12T01:02:03Z)"}},
		{"aligned", rng("2025-06-10T00:00:00Z", "2025-06-11T00:00:00Z"), []granularity{byDay, byHour, byMinute},
			[]string{"day [2025-06-10T00:00:00Z, 2025-06-11T00:00:00Z)"}},
		{"open", rng("", ""), []granularity{byDay, byHour}, []string{"day [open, open)"}},
		{"open from", rng("", "2025-06-10T10:30:00Z"), []granularity{byDay, byHour},
			[]string{"day [open, 2025-06-10T00:00:00Z)", "hour [2025-06-10T00:00:00Z, 2025-06-10T10:00:00Z)",
				"raw [2025-06-10T10:00:00Z, 2025-06-10T10:30:00Z)"}},
		{"inside one minute", rng("2025-06-10T10:17:05.5Z", "2025-06-10T10:17:06Z"), []granularity{byDay, byHour, byMinute},
			[]string{"raw [2025-06-10T10:17:05.5Z, 2025-06-10T10:17:06Z)"}},
		{"empty", rng("2025-06-10T10:00:00Z", "2025-06-10T10:00:00Z"), []granularity{byDay},
			[]string{"raw [2025-06-10T10:00:00Z, 2025-06-10T10:00:00Z)"}},
		{"backwards", rng("2025-06-11T00:00:00Z", "2025-06-10T00:00:00Z"), []granularity{byDay},
			[]string{"raw [2025-06-11T00:00:00Z, 2025-06-10T00:00:00Z)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, sp := range split(tt.r, tt.grans...) {
				g := string(sp.gran)
				if g == "" {
					g = "raw"
				}
				got = append(got, g+" "+sp.TimeRange.String())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestActiveMonths(t *testing.T) {
	h := func(month time.Month, day, hour int) time.Time {
		return time.Date(2025, month, day, hour, 0, 0, 0, time.UTC)
	}
	// bits renders a mask as the ranges of hours it sets.
	bits := func(mask string) string {
		var out []string
		for i := 0; i < len(mask); i++ {
			if mask[i] == '1' {
				j := i
				for j < len(mask) && mask[j] == '1' {
					j++
				}
				out = append(out, fmt.Sprintf("%d-%d", i, j))
				i = j
			}
		}
		return strings.Join(out, ",")
	}
	tests := []struct {
		name    string
		r       TimeRange
		whole   string
		partial []string
	}{
		{"open", TimeRange{}, "[open, open)", nil},
		{"inside one month", TimeRange{From: h(6, 1, 5), To: h(6, 2, 1)}, "", []string{"2025-06: 5-25"}},
		{"across one month end", TimeRange{From: h(6, 30, 23), To: h(7, 1, 2)}, "", []string{"2025-06: 719-720", "2025-07: 0-2"}},
		{"whole months and edges", TimeRange{From: h(5, 31, 22), To: h(8, 1, 1)},
			"[2025-06-01T00:00:00Z, 2025-08-01T00:00:00Z)", []string{"2025-05: 742-744", "2025-08: 0-1"}},
		{"open to", TimeRange{From: h(7, 1, 0)}, "[2025-07-01T00:00:00Z, open)", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			whole, partial := activeMonths(tt.r)
			gotWhole := ""
			if whole != nil {
				gotWhole = whole.String()
			}
			var got []string
			for _, p := range partial {
				got = append(got, p.month.Format("2006-01")+": "+bits(p.mask))
			}
			if gotWhole != tt.whole || !slices.Equal(got, tt.partial) {
				t.Errorf("got %s %q; want %s %q", gotWhole, got, tt.whole, tt.partial)
			}
		})
	}
}

// rollupTables are the tables migration 2 keeps up to date.
var rollupTables = []string{"event_counts", "revenue_sums", "audience_counts", "audience_users"}

// rollupSnapshot returns every rollup row as text, in order.
func rollupSnapshot(tb testing.TB, s *Store) map[string]string {
	tb.Helper()
	snap := map[string]string{}
	for _, table := range rollupTables {
		var rows string
		err := s.pool.QueryRow(context.Background(),
			`SELECT coalesce(string_agg(t::text, E'\n' ORDER BY t::text), '') FROM `+table+` t`).Scan(&rows)
		if err != nil {
			tb.Fatal(err)
		}
		snap[table] = rows
	}
	return snap
}

// migrateTo moves the database at dbURL to version.
func migrateTo(tb testing.TB, dbURL string, version uint) {
	tb.Helper()
	src, err := iofs.New(migrations.FS, ".")
	if err != nil {
		tb.Fatal(err)
	}
	m, err := migrate.NewWithSourceInstance("iofs", src, "pgx5://"+strings.TrimPrefix(dbURL, "postgres://"))
	if err != nil {
		tb.Fatal(err)
	}
	defer m.Close()
	if err := m.Migrate(version); err != nil && !errors.Is(err, migrate.ErrNoChange) {
		tb.Fatalf("migrate to %d: %v", version, err)
	}
}

func latestVersion(tb testing.TB) uint {
	tb.Helper()
	v, err := schema.Want()
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

// checkRollupsAreBackfill checks that the rollups s holds are what the
// migration's backfill builds from the events stored: it goes down to
// version 1 and up again.
func checkRollupsAreBackfill(t *testing.T, s *Store, dbURL string) {
	t.Helper()
	incremental := rollupSnapshot(t, s)
	for _, table := range rollupTables {
		if incremental[table] == "" {
			t.Fatalf("%s is empty", table)
		}
	}
	// The pool's connections cache plans of the dropped tables.
	s.pool.Reset()
	migrateTo(t, dbURL, 1)
	migrateTo(t, dbURL, latestVersion(t))
	backfill := rollupSnapshot(t, s)
	for _, table := range rollupTables {
		if incremental[table] != backfill[table] {
			t.Errorf("%s: incremental and backfill differ:\nincremental %.2000s\nbackfill    %.2000s",
				table, incremental[table], backfill[table])
		}
	}
}

func TestMigrationBackfillMatchesIncrementalRollups(t *testing.T) {
	s, dbURL := loadRollupData(t, 2, 3000)
	checkRollupsAreBackfill(t, s, dbURL)
}

// Duplicates and redeliveries, in one batch, across batches and from
// concurrent writers, never count twice: every rollup adds up to the
// events stored, and equals the backfill of what is stored.
func TestRollupsCountEachEventOnce(t *testing.T) {
	s, dbURL := loadRollupData(t, 3, 0)
	ctx := context.Background()
	recs := rollupRecords(t, 3, 3000)
	var inserted int64
	insert := func(batch []Record) {
		n, err := s.InsertEvents(ctx, batch)
		if err != nil {
			t.Fatal(err)
		}
		inserted += n
	}
	insert(recs[:500])
	insert(recs[:500])
	insert(append(slices.Clone(recs[250:1000]), recs[250:1000]...))
	insert(recs[900:1100])

	// Two writers store the rest at the same time, in the same overlapping
	// batches, each batch's events shuffled differently, as two collector
	// replicas given redelivered messages would: they contend for the same
	// event ids and the same rollup rows. Row locks on events may deadlock
	// them; PostgreSQL then aborts one statement, which the writer retries
	// as a collector does.
	n, retries := writeConcurrently(t, s, recs[1000:], func(r *rand.Rand, batch []Record) {
		r.Shuffle(len(batch), func(a, b int) { batch[a], batch[b] = batch[b], batch[a] })
	})
	t.Logf("%d batches retried after a transient error", retries)
	inserted += n
	if inserted != int64(len(recs)) {
		t.Fatalf("inserted got %d; want %d", inserted, len(recs))
	}
	stored := int64(len(recs) + len(oddRows))
	if n := countEvents(t, s); n != stored {
		t.Fatalf("rows got %d; want %d", n, stored)
	}
	// Every granularity and every grouping of event_counts adds up to the
	// events stored.
	rows, err := s.pool.Query(ctx, `SELECT granularity, rolled_up, sum(events)::bigint
		FROM event_counts GROUP BY 1, 2 ORDER BY 1, 2`)
	if err != nil {
		t.Fatal(err)
	}
	groupings := 0
	for rows.Next() {
		var (
			g         string
			rolled, n int64
		)
		if err := rows.Scan(&g, &rolled, &n); err != nil {
			t.Fatal(err)
		}
		groupings++
		if n != stored {
			t.Errorf("event_counts by %s, rolled up %d: got %d events; want %d", g, rolled, n, stored)
		}
	}
	if err := rows.Err(); err != nil || groupings != 15 {
		t.Fatalf("got %d groupings of event_counts, %v; want 15", groupings, err)
	}
	checkRollupsAreBackfill(t, s, dbURL)
	checkReportsMatchReference(t, s, rollupRanges(3, 4))
}

// writeConcurrently stores recs from two writers at once, in the same
// overlapping batches, each arranged by arrange with the writer's own
// random source, and retrying what fails for a transient reason. It returns
// how many events were new and how many batches were retried.
func writeConcurrently(t *testing.T, s *Store, recs []Record, arrange func(*rand.Rand, []Record)) (inserted int64, retries int) {
	t.Helper()
	ctx := context.Background()
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		errs   []error
		counts [2]int64
	)
	for w := range 2 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			chunks := rand.New(rand.NewPCG(9, 9)) // the same batches for both
			for i := 0; i < len(recs); {
				j := min(len(recs), i+50+chunks.IntN(250))
				// Each batch reaches back over part of the previous one.
				batch := slices.Clone(recs[max(0, i-chunks.IntN(100)):j])
				arrange(r, batch)
				for {
					n, err := s.InsertEvents(ctx, batch)
					if err == nil {
						counts[w] += n
						break
					}
					mu.Lock()
					if IsPermanent(err) {
						errs = append(errs, err)
						mu.Unlock()
						return
					}
					retries++
					mu.Unlock()
				}
				i = j
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return counts[0] + counts[1], retries
}

// Rollup rows are locked in key order, so writers whose events are locked
// in one order too (sorted by id) never deadlock, however much their
// batches share buckets.
func TestRollupsDoNotDeadlock(t *testing.T) {
	s, _ := loadRollupData(t, 8, 0)
	recs := rollupRecords(t, 8, 3000)
	// One hour: every batch updates the same rollup rows.
	for i := range recs {
		recs[i].Event.Timestamp = time.Date(2025, 6, 10, 18, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Millisecond)
	}
	n, retries := writeConcurrently(t, s, recs, func(_ *rand.Rand, batch []Record) {
		slices.SortFunc(batch, func(a, b Record) int { return strings.Compare(a.Event.ID, b.Event.ID) })
	})
	if n != int64(len(recs)) || retries != 0 {
		t.Fatalf("got %d new events, %d batches retried; want %d new, none retried", n, retries, len(recs))
	}
}

// Version 1 has no rollups; going down to it leaves the events alone, with
// the index migration 3 dropped, and inserts keep working; going up again
// rebuilds the rollups from every event, those stored in between included.
func TestDownMigration(t *testing.T) {
	s, dbURL := loadRollupData(t, 4, 1000)
	ctx := context.Background()
	s.pool.Reset()
	migrateTo(t, dbURL, 1)
	var leftovers []string
	err := s.pool.QueryRow(ctx, `SELECT coalesce(array_agg(name), '{}') FROM (
			SELECT relname::text AS name FROM pg_class
			WHERE relname = ANY($1) OR relname LIKE '%rollup%'
			UNION ALL SELECT tgname::text FROM pg_trigger WHERE NOT tgisinternal
			UNION ALL SELECT proname::text FROM pg_proc
			WHERE proname IN ('events_rollup', 'age_group', 'follower_tier', 'utc_bucket', 'utc_month', 'utc_month_hour_bit')) x`,
		rollupTables).Scan(&leftovers)
	if err != nil {
		t.Fatal(err)
	}
	if len(leftovers) > 0 {
		t.Fatalf("after going down: got %q left; want nothing of version 2", leftovers)
	}
	var indexed bool
	if err := s.pool.QueryRow(ctx, `SELECT to_regclass('events_source_occurred_at_idx') IS NOT NULL`).Scan(&indexed); err != nil || !indexed {
		t.Fatalf("after going down: events_source_occurred_at_idx exists %v, %v; want true", indexed, err)
	}
	if n := countEvents(t, s); n != 1000+int64(len(oddRows)) {
		t.Fatalf("events after going down: got %d; want %d", n, 1000+len(oddRows))
	}
	more := rollupRecords(t, 5, 500)
	if n, err := s.InsertEvents(ctx, more); err != nil || n != 500 {
		t.Fatalf("insert at version 1: got %d, %v; want 500, nil", n, err)
	}
	s.pool.Reset()
	migrateTo(t, dbURL, latestVersion(t))
	checkReportsMatchReference(t, s, rollupRanges(4, 6))
}

func TestRollupsIgnoreFailedInserts(t *testing.T) {
	s, _ := loadRollupData(t, 6, 200)
	before := rollupSnapshot(t, s)
	recs := rollupRecords(t, 7, 100)
	bad := "-1.00"
	recs[99].Event.Engagement.PurchaseAmount = &bad
	recs[99].Event.Source, recs[99].Event.Type = event.Facebook, event.FacebookPurchaseType
	if _, err := s.InsertEvents(context.Background(), recs); !IsPermanent(err) {
		t.Fatalf("got %v; want a permanent error", err)
	}
	after := rollupSnapshot(t, s)
	for _, table := range rollupTables {
		if before[table] != after[table] {
			t.Errorf("%s changed by a failed insert", table)
		}
	}
}
