package store_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/eventpipe/eventpipe/pkg/pgtest"
	"github.com/eventpipe/eventpipe/pkg/store"
)

// The report queries are checked end to end, against generated traffic, by
// pkg/report's tests; these pin down what the store alone decides: money
// rounding, bucketing, empty results, byte-order naming, timeouts.

// reportRow is one events row; "" and a nil followers are NULL.
type reportRow struct {
	id, at, source, stage, eventType, user string
	age                                    int
	gender, country, city, device          string
	followers                              *int64
	campaign, amount                       string
}

func openReportStore(t *testing.T, rows ...reportRow) *store.Store {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, pgtest.Migrated(t), 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	for _, r := range rows {
		ts, err := time.Parse(time.RFC3339Nano, r.at)
		if err != nil {
			t.Fatal(err)
		}
		_, err = st.Pool().Exec(ctx, `INSERT INTO events (event_id, occurred_at, source, funnel_stage,
			event_type, user_id, age, gender, country, city, followers, device, campaign_id,
			purchase_amount, payload)
			VALUES ($1, $2, $3, $4, $5, $6, NULLIF($7, 0), NULLIF($8, ''), NULLIF($9, ''),
			        NULLIF($10, ''), $11, NULLIF($12, ''), NULLIF($13, ''),
			        NULLIF($14, '')::numeric, '{}')`,
			r.id, ts, r.source, r.stage, r.eventType, r.user, r.age, r.gender, r.country, r.city,
			r.followers, r.device, r.campaign, r.amount)
		if err != nil {
			t.Fatalf("insert %s: %v", r.id, err)
		}
	}
	return st
}

func purchase(id, at, amount string) reportRow {
	return reportRow{id: id, at: at, source: "tiktok", stage: "bottom", eventType: "purchase", user: "u-" + id, amount: amount}
}

func checkout(id, at, campaign, amount string) reportRow {
	return reportRow{id: id, at: at, source: "facebook", stage: "bottom", eventType: "checkout.complete",
		user: "u-" + id, age: 30, gender: "female", country: "Chile", city: "Santiago", campaign: campaign, amount: amount}
}

func ttTop(id, at, user, country string, followers int64) reportRow {
	return reportRow{id: id, at: at, source: "tiktok", stage: "top", eventType: "video.view", user: user,
		country: country, device: "iOS", followers: &followers}
}

func TestReportRevenueRoundsTheExactSum(t *testing.T) {
	st := openReportStore(t,
		// 10 + 0.5 + 0.125 + 0.004 = 10.629: rounding each amount first
		// would give 10.63 too, so a third decimal case follows.
		purchase("t1", "2025-06-10T10:00:00Z", "10"),
		purchase("t2", "2025-06-10T10:00:01Z", "0.5"),
		purchase("t3", "2025-06-10T10:00:02Z", "0.125"),
		purchase("t4", "2025-06-10T10:00:03Z", "0.004"),
		// 0.004 + 0.004 = 0.008, "0.01"; rounded one by one it would be 0.00.
		checkout("f1", "2025-06-11T10:00:00Z", "camp-a", "0.004"),
		checkout("f2", "2025-06-11T10:00:01Z", "camp-a", "0.004"),
	)
	rep, err := st.ReportRevenue(context.Background(), store.RevenueQuery{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Total != (store.Revenue{Amount: "10.64", Transactions: 6}) {
		t.Fatalf("got total %+v; want 10.64 over 6", rep.Total)
	}
	wantSources := []store.SourceRevenue{
		{Source: "facebook", Revenue: store.Revenue{Amount: "0.01", Transactions: 2}},
		{Source: "tiktok", Revenue: store.Revenue{Amount: "10.63", Transactions: 4}},
	}
	if !slices.Equal(rep.BySource, wantSources) {
		t.Fatalf("got by source %+v; want %+v", rep.BySource, wantSources)
	}
	if want := []store.CampaignRevenue{{CampaignID: "camp-a", Revenue: store.Revenue{Amount: "0.01", Transactions: 2}}}; !slices.Equal(rep.ByCampaign, want) {
		t.Fatalf("got by campaign %+v; want %+v", rep.ByCampaign, want)
	}
}

func TestReportRevenueEmpty(t *testing.T) {
	st := openReportStore(t, checkout("f1", "2025-06-11T10:00:00Z", "camp-a", "12.30"))
	tests := []struct {
		name        string
		q           store.RevenueQuery
		wantSources []string
	}{
		{"no events in range", store.RevenueQuery{TimeRange: store.TimeRange{From: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}, Limit: 10},
			[]string{"facebook", "tiktok"}},
		{"tiktok only", store.RevenueQuery{Source: "tiktok", Limit: 10}, []string{"tiktok"}},
		{"campaign implies facebook", store.RevenueQuery{CampaignID: "camp-none", Limit: 10}, []string{"facebook"}},
		{"campaign and tiktok", store.RevenueQuery{Source: "tiktok", CampaignID: "camp-a", Limit: 10}, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep, err := st.ReportRevenue(context.Background(), tt.q)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Total != (store.Revenue{Amount: "0.00"}) || rep.ByCampaign == nil || len(rep.ByCampaign) != 0 {
				t.Fatalf("got total %+v, campaigns %#v; want 0.00 over 0 and no campaigns", rep.Total, rep.ByCampaign)
			}
			var got []string
			for _, s := range rep.BySource {
				if s.Revenue != (store.Revenue{Amount: "0.00"}) {
					t.Fatalf("got %+v; want zeros", s)
				}
				got = append(got, s.Source)
			}
			if rep.BySource == nil || !slices.Equal(got, tt.wantSources) {
				t.Fatalf("got sources %v; want %v", got, tt.wantSources)
			}
		})
	}
}

func TestReportEventsSeries(t *testing.T) {
	st := openReportStore(t,
		ttTop("a", "2025-06-10T10:59:59.999Z", "u1", "Chile", 5),
		ttTop("b", "2025-06-10T11:00:00Z", "u1", "Chile", 5),
		ttTop("c", "2025-06-10T11:00:59.999Z", "u2", "Chile", 5),
		ttTop("d", "2025-06-10T23:30:00Z", "u2", "Chile", 5),
		ttTop("e", "2025-06-11T00:00:00Z", "u2", "Chile", 5),
	)
	day := func(d, h, m int) time.Time { return time.Date(2025, 6, d, h, m, 0, 0, time.UTC) }
	tests := []struct {
		interval string
		want     []store.Bucket
	}{
		{"minute", []store.Bucket{{Start: day(10, 10, 59), Count: 1}, {Start: day(10, 11, 0), Count: 2}, {Start: day(10, 23, 30), Count: 1}, {Start: day(11, 0, 0), Count: 1}}},
		{"hour", []store.Bucket{{Start: day(10, 10, 0), Count: 1}, {Start: day(10, 11, 0), Count: 2}, {Start: day(10, 23, 0), Count: 1}, {Start: day(11, 0, 0), Count: 1}}},
		{"day", []store.Bucket{{Start: day(10, 0, 0), Count: 4}, {Start: day(11, 0, 0), Count: 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.interval, func(t *testing.T) {
			rep, err := st.ReportEvents(context.Background(), store.EventsQuery{Interval: tt.interval})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.EqualFunc(rep.Series, tt.want, func(a, b store.Bucket) bool {
				return a.Start.Equal(b.Start) && a.Start.Location() == time.UTC && a.Count == b.Count
			}) {
				t.Fatalf("got %v; want %v", rep.Series, tt.want)
			}
			if rep.Total != 5 || len(rep.Breakdown) != 1 || rep.Breakdown[0] != (store.EventCount{Source: "tiktok", FunnelStage: "top", EventType: "video.view", Count: 5}) {
				t.Fatalf("got total %d, breakdown %+v; want 5 tiktok top video.view", rep.Total, rep.Breakdown)
			}
		})
	}

	rep, err := st.ReportEvents(context.Background(), store.EventsQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Series != nil {
		t.Fatalf("without an interval: got series %v; want nil", rep.Series)
	}
	rep, err = st.ReportEvents(context.Background(), store.EventsQuery{Source: "facebook", Interval: "hour"})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Series == nil || len(rep.Series) != 0 || rep.Breakdown == nil || len(rep.Breakdown) != 0 || rep.Total != 0 {
		t.Fatalf("no match: got %+v; want zero total and empty, non-nil lists", rep)
	}
}

func TestReportDemographicsEmpty(t *testing.T) {
	st := openReportStore(t)
	rep, err := st.ReportDemographics(context.Background(), store.DemographicsQuery{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	fb, tt := rep.Facebook, rep.TikTok
	if fb == nil || tt == nil {
		t.Fatalf("got %+v; want both sections", rep)
	}
	if fb.Users != 0 || fb.Events != 0 || fb.ByGender == nil || fb.ByAgeGroup == nil || fb.TopCountries == nil || fb.TopCities == nil ||
		len(fb.ByGender)+len(fb.ByAgeGroup)+len(fb.TopCountries)+len(fb.TopCities) != 0 {
		t.Fatalf("got facebook %+v; want zeros and empty, non-nil lists", fb)
	}
	if tt.Followers.Min != nil || tt.Followers.Max != nil || tt.Followers.Avg != nil {
		t.Fatalf("got follower stats %+v; want all nil without events", tt.Followers)
	}
	if tt.ByFollowerTier == nil || tt.ByDevice == nil || tt.TopCountries == nil {
		t.Fatalf("got tiktok %+v; want non-nil lists", tt)
	}

	for _, source := range []string{"facebook", "tiktok"} {
		rep, err := st.ReportDemographics(context.Background(), store.DemographicsQuery{Source: source, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		if (rep.Facebook != nil) != (source == "facebook") || (rep.TikTok != nil) != (source == "tiktok") {
			t.Fatalf("source %s: got facebook %v, tiktok %v; want only the %s section", source, rep.Facebook != nil, rep.TikTok != nil, source)
		}
	}
}

// Names order by bytes whatever the database's locale, and the SQL limit
// cuts the list by that same order.
func TestReportDemographicsNameOrder(t *testing.T) {
	var rows []reportRow
	for i, country := range []string{"Österreich", "Åland", "Zambia", "austria"} {
		rows = append(rows, ttTop("e"+strconv.Itoa(i), "2025-06-10T10:00:00Z", "u"+strconv.Itoa(i), country, int64(1000*i)))
	}
	// Two users in Kenya put it first.
	rows = append(rows, ttTop("k1", "2025-06-10T10:00:00Z", "k1", "Kenya", 10), ttTop("k2", "2025-06-10T10:00:00Z", "k2", "Kenya", 20))
	st := openReportStore(t, rows...)

	rep, err := st.ReportDemographics(context.Background(), store.DemographicsQuery{Source: "tiktok", Limit: 4})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range rep.TikTok.TopCountries {
		got = append(got, c.Name)
	}
	if want := []string{"Kenya", "Zambia", "austria", "Åland"}; !slices.Equal(got, want) {
		t.Fatalf("got %q; want %q", got, want)
	}
	f := rep.TikTok.Followers
	if f.Min == nil || *f.Min != 0 || *f.Max != 3000 || *f.Avg != 1005 {
		t.Fatalf("got followers %v/%v/%v; want 0/3000/1005", f.Min, f.Max, f.Avg)
	}
}

func TestReportHonoursTheDeadline(t *testing.T) {
	st := openReportStore(t)
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	if _, err := st.ReportEvents(ctx, store.EventsQuery{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("events: got %v; want context.DeadlineExceeded", err)
	}
	if _, err := st.ReportRevenue(ctx, store.RevenueQuery{Limit: 1}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("revenue: got %v; want context.DeadlineExceeded", err)
	}
	if _, err := st.ReportDemographics(ctx, store.DemographicsQuery{Limit: 1}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("demographics: got %v; want context.DeadlineExceeded", err)
	}
}
