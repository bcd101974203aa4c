package report

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/eventpipe/eventpipe/pkg/store"
)

// utc reads a literal timestamp of the tables below; a typo yields the zero
// time, which no case expects.
func utc(s string) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, s)
	return t.UTC()
}

// wantParam checks that err is a paramError naming param.
func wantParam(t *testing.T, err error, param string) {
	t.Helper()
	var pe *paramError
	if !errors.As(err, &pe) {
		t.Fatalf("got error %v; want a paramError naming %q", err, param)
	}
	if pe.param != param {
		t.Fatalf("got parameter %q (%s); want %q", pe.param, pe.message, param)
	}
	if pe.message == "" {
		t.Fatalf("got an empty message for %q", param)
	}
}

func TestParseTime(t *testing.T) {
	tests := []struct {
		in   string
		end  bool
		want time.Time
	}{
		{"2025-06-10", false, utc("2025-06-10T00:00:00Z")},
		{"2025-06-10", true, utc("2025-06-11T00:00:00Z")},
		{"2025-12-31", true, utc("2026-01-01T00:00:00Z")},
		{"2024-02-28", true, utc("2024-02-29T00:00:00Z")},
		{"2025-06-10T18:01:44Z", false, utc("2025-06-10T18:01:44Z")},
		{"2025-06-10T18:01:44Z", true, utc("2025-06-10T18:01:44Z")},
		{"2025-06-10T18:01:44.759Z", false, utc("2025-06-10T18:01:44.759Z")},
		{"2025-06-10T20:00:00+02:00", false, utc("2025-06-10T18:00:00Z")},
		{"2025-06-10T13:30:00-04:30", false, utc("2025-06-10T18:00:00Z")},
		// An unescaped '+' arrives as a space.
		{"2025-06-10T20:00:00 02:00", false, utc("2025-06-10T18:00:00Z")},
		// Rounded up to PostgreSQL's microseconds.
		{"2025-06-10T18:00:00.0000001Z", false, utc("2025-06-10T18:00:00.000001Z")},
		{"2025-06-10T18:00:00.000001Z", false, utc("2025-06-10T18:00:00.000001Z")},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseTime(tt.in, tt.end)
			if err != nil {
				t.Fatalf("got error %v; want %s", err, tt.want)
			}
			if !got.Equal(tt.want) || got.Location() != time.UTC {
				t.Fatalf("got %s; want %s in UTC", got, tt.want)
			}
		})
	}

	for _, bad := range []string{"", "yesterday", "2025-6-10", "2025-06-31", "2025-06-10T18:00:00",
		"2025-06-10 18:00:00Z", "1749578400", "2025-06-10T25:00:00Z", "2025-06-10T18:00:00Zjunk"} {
		t.Run("bad "+bad, func(t *testing.T) {
			if got, err := parseTime(bad, false); err == nil {
				t.Fatalf("got %s; want an error", got)
			}
		})
	}
}

func TestParseEventsQuery(t *testing.T) {
	tests := []struct {
		query string
		want  store.EventsQuery
	}{
		{"", store.EventsQuery{}},
		{"from=2025-06-10&to=2025-06-10", store.EventsQuery{TimeRange: store.TimeRange{
			From: utc("2025-06-10T00:00:00Z"), To: utc("2025-06-11T00:00:00Z")}}},
		{"from=2025-06-10T18:00:00Z", store.EventsQuery{TimeRange: store.TimeRange{From: utc("2025-06-10T18:00:00Z")}}},
		{"to=2025-06-10T18:00:00Z", store.EventsQuery{TimeRange: store.TimeRange{To: utc("2025-06-10T18:00:00Z")}}},
		// from == to is an empty range, not an error.
		{"from=2025-06-10T18:00:00Z&to=2025-06-10T18:00:00Z", store.EventsQuery{TimeRange: store.TimeRange{
			From: utc("2025-06-10T18:00:00Z"), To: utc("2025-06-10T18:00:00Z")}}},
		// The day after a date-only to starts where that to ends: empty.
		{"from=2025-06-11&to=2025-06-10", store.EventsQuery{TimeRange: store.TimeRange{
			From: utc("2025-06-11T00:00:00Z"), To: utc("2025-06-11T00:00:00Z")}}},
		{"from=2025-06-10T20%3A00%3A00%2B02%3A00", store.EventsQuery{TimeRange: store.TimeRange{From: utc("2025-06-10T18:00:00Z")}}},
		{"source=facebook", store.EventsQuery{Source: "facebook"}},
		{"source=tiktok", store.EventsQuery{Source: "tiktok"}},
		{"funnelStage=top", store.EventsQuery{FunnelStage: "top"}},
		{"funnelStage=bottom", store.EventsQuery{FunnelStage: "bottom"}},
		{"eventType=checkout.complete", store.EventsQuery{EventType: "checkout.complete"}},
		{"eventType=purchase", store.EventsQuery{EventType: "purchase"}},
		// A type of another source is valid: the combination just matches
		// nothing.
		{"source=tiktok&eventType=ad.view", store.EventsQuery{Source: "tiktok", EventType: "ad.view"}},
		{"interval=minute", store.EventsQuery{Interval: "minute"}},
		{"interval=hour", store.EventsQuery{Interval: "hour"}},
		{"interval=day", store.EventsQuery{Interval: "day"}},
		{"source=facebook&&interval=day&", store.EventsQuery{Source: "facebook", Interval: "day"}},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			got, err := parseEventsQuery(tt.query)
			if err != nil {
				t.Fatalf("got error %v; want %+v", err, tt.want)
			}
			if !got.From.Equal(tt.want.From) || !got.To.Equal(tt.want.To) ||
				got.Source != tt.want.Source || got.FunnelStage != tt.want.FunnelStage ||
				got.EventType != tt.want.EventType || got.Interval != tt.want.Interval {
				t.Fatalf("got %+v; want %+v", got, tt.want)
			}
		})
	}
}

func TestParseEventsQueryRejects(t *testing.T) {
	tests := []struct {
		query, param string
	}{
		{"from=yesterday", "from"},
		{"from=", "from"},
		{"to=2025-13-01", "to"},
		{"to=2025-06-10T18:00:00", "to"},
		{"from=2025-06-12&to=2025-06-10", "from"},
		{"from=2025-06-10T18:00:00.001Z&to=2025-06-10T18:00:00Z", "from"},
		{"source=instagram", "source"},
		{"source=Facebook", "source"},
		{"source=", "source"},
		{"source", "source"},
		{"funnelStage=middle", "funnelStage"},
		{"eventType=ad.vieww", "eventType"},
		{"eventType=", "eventType"},
		{"interval=week", "interval"},
		{"interval=Hour", "interval"},
		{"source=facebook&source=facebook", "source"},
		{"from=2025-06-10&from=2025-06-11", "from"},
		{"sorce=facebook", "sorce"},
		{"limit=5", "limit"},
		{"campaignId=camp-1", "campaignId"},
		{"funnelstage=top", "funnelstage"},
		{"source=%zz", "source"},
		{"a%zz=1", "a%zz"},
		{"=facebook", "=facebook"},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			_, err := parseEventsQuery(tt.query)
			wantParam(t, err, tt.param)
		})
	}
}

func TestParseRevenueQuery(t *testing.T) {
	long := strings.Repeat("é", maxCampaignID)
	tests := []struct {
		query string
		want  store.RevenueQuery
	}{
		{"", store.RevenueQuery{Limit: 10}},
		{"source=tiktok", store.RevenueQuery{Source: "tiktok", Limit: 10}},
		{"campaignId=camp-Mn15k", store.RevenueQuery{CampaignID: "camp-Mn15k", Limit: 10}},
		{"campaignId=camp%20with%20spaces", store.RevenueQuery{CampaignID: "camp with spaces", Limit: 10}},
		{"campaignId=" + long, store.RevenueQuery{CampaignID: long, Limit: 10}},
		{"limit=1", store.RevenueQuery{Limit: 1}},
		{"limit=1000", store.RevenueQuery{Limit: 1000}},
		{"limit=0042", store.RevenueQuery{Limit: 42}},
		{"from=2025-06-10&to=2025-06-12&source=facebook&campaignId=c&limit=3", store.RevenueQuery{
			TimeRange: store.TimeRange{From: utc("2025-06-10T00:00:00Z"), To: utc("2025-06-13T00:00:00Z")},
			Source:    "facebook", CampaignID: "c", Limit: 3}},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			got, err := parseRevenueQuery(tt.query)
			if err != nil {
				t.Fatalf("got error %v; want %+v", err, tt.want)
			}
			if !got.From.Equal(tt.want.From) || !got.To.Equal(tt.want.To) || got.Source != tt.want.Source ||
				got.CampaignID != tt.want.CampaignID || got.Limit != tt.want.Limit {
				t.Fatalf("got %+v; want %+v", got, tt.want)
			}
		})
	}
}

func TestParseRevenueQueryRejects(t *testing.T) {
	tests := []struct {
		query, param string
	}{
		{"limit=0", "limit"},
		{"limit=1001", "limit"},
		{"limit=-1", "limit"},
		{"limit=+5", "limit"},
		{"limit=ten", "limit"},
		{"limit=2.5", "limit"},
		{"limit=", "limit"},
		{"limit=99999999999999999999999", "limit"},
		{"limit=5&limit=6", "limit"},
		{"campaignId=", "campaignId"},
		{"campaignId=" + strings.Repeat("x", maxCampaignID+1), "campaignId"},
		{"campaignId=a%00b", "campaignId"},
		{"campaignId=%ff%fe", "campaignId"},
		{"campaignId=a&campaignId=b", "campaignId"},
		{"source=youtube", "source"},
		{"eventType=purchase", "eventType"},
		{"interval=day", "interval"},
		{"from=2025-06-12&to=2025-06-10", "from"},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			_, err := parseRevenueQuery(tt.query)
			wantParam(t, err, tt.param)
		})
	}
}

func TestParseDemographicsQuery(t *testing.T) {
	tests := []struct {
		query string
		want  store.DemographicsQuery
	}{
		{"", store.DemographicsQuery{Limit: 10}},
		{"source=facebook&limit=1000", store.DemographicsQuery{Source: "facebook", Limit: 1000}},
		{"to=2025-06-10", store.DemographicsQuery{TimeRange: store.TimeRange{To: utc("2025-06-11T00:00:00Z")}, Limit: 10}},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			got, err := parseDemographicsQuery(tt.query)
			if err != nil {
				t.Fatalf("got error %v; want %+v", err, tt.want)
			}
			if !got.From.Equal(tt.want.From) || !got.To.Equal(tt.want.To) || got.Source != tt.want.Source || got.Limit != tt.want.Limit {
				t.Fatalf("got %+v; want %+v", got, tt.want)
			}
		})
	}

	rejects := []struct {
		query, param string
	}{
		{"limit=0", "limit"},
		{"limit=1001", "limit"},
		{"source=tiktok&source=facebook", "source"},
		{"campaignId=x", "campaignId"},
		{"funnelStage=top", "funnelStage"},
		{"from=nope", "from"},
	}
	for _, tt := range rejects {
		t.Run("reject "+tt.query, func(t *testing.T) {
			_, err := parseDemographicsQuery(tt.query)
			wantParam(t, err, tt.param)
		})
	}
}

// Several problems at once are reported in a stable order, whatever the
// order of the parameters in the URL.
func TestParseQueryErrorIsDeterministic(t *testing.T) {
	for range 20 {
		_, err := parseEventsQuery("zeta=1&alpha=2&source=x")
		wantParam(t, err, "alpha")
	}
}

func TestFormatTime(t *testing.T) {
	tests := []struct {
		in   time.Time
		want string
	}{
		{utc("2025-06-10T00:00:00Z"), "2025-06-10T00:00:00Z"},
		{utc("2025-06-10T18:01:44.759Z"), "2025-06-10T18:01:44.759Z"},
		{time.Date(2025, 6, 10, 20, 0, 0, 0, time.FixedZone("x", 2*3600)), "2025-06-10T18:00:00Z"},
	}
	for _, tt := range tests {
		if got := formatTime(tt.in); got != tt.want {
			t.Errorf("formatTime(%v): got %q; want %q", tt.in, got, tt.want)
		}
	}
}
