package report

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/eventpipe/eventpipe/pkg/event"
	"github.com/eventpipe/eventpipe/pkg/store"
)

// The fuzz targets feed raw query strings to the parameter parsers; their
// seeds are in testdata/fuzz/<target>. Each checks that a parser never
// panics, that every error is a parameter error naming a parameter of the
// query, and that what it accepts holds the invariants the SQL relies on.

func FuzzParseEventsQuery(f *testing.F) {
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := parseEventsQuery(raw)
		if err != nil {
			checkParamError(t, raw, err)
			return
		}
		checkRange(t, q.TimeRange)
		checkIn(t, "source", q.Source, "", "facebook", "tiktok")
		checkIn(t, "funnelStage", q.FunnelStage, "", "top", "bottom")
		checkIn(t, "interval", q.Interval, "", "minute", "hour", "day")
		if q.EventType != "" && !event.KnownType(q.EventType) {
			t.Errorf("eventType %q accepted; want a known type", q.EventType)
		}
	})
}

func FuzzParseRevenueQuery(f *testing.F) {
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := parseRevenueQuery(raw)
		if err != nil {
			checkParamError(t, raw, err)
			return
		}
		checkRange(t, q.TimeRange)
		checkIn(t, "source", q.Source, "", "facebook", "tiktok")
		checkLimit(t, q.Limit)
		if c := q.CampaignID; c != "" {
			if n := utf8.RuneCountInString(c); n > maxCampaignID || !utf8.ValidString(c) || strings.IndexFunc(c, unicode.IsControl) >= 0 {
				t.Errorf("campaignId %q (%d characters) accepted; want 1 to %d printable characters", c, n, maxCampaignID)
			}
		}
	})
}

func FuzzParseDemographicsQuery(f *testing.F) {
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := parseDemographicsQuery(raw)
		if err != nil {
			checkParamError(t, raw, err)
			return
		}
		checkRange(t, q.TimeRange)
		checkIn(t, "source", q.Source, "", "facebook", "tiktok")
		checkLimit(t, q.Limit)
	})
}

// checkParamError checks that err becomes a 400 naming a parameter that
// raw holds: a name as sent or unescaped, or for a nameless one the pair.
func checkParamError(t *testing.T, raw string, err error) {
	t.Helper()
	pe, ok := errors.AsType[*paramError](err)
	if !ok {
		t.Fatalf("query %q: got %T %v; want a *paramError", raw, err, err)
	}
	if pe.message == "" {
		t.Errorf("query %q: error naming %q has no message", raw, pe.param)
	}
	for pair := range strings.SplitSeq(raw, "&") {
		rawKey, _, _ := strings.Cut(pair, "=")
		key, _ := url.QueryUnescape(rawKey)
		if pe.param == rawKey || pe.param == key || pe.param == pair {
			return
		}
	}
	t.Errorf("query %q: error names %q, which is not a parameter of the query", raw, pe.param)
}

// checkRange checks the bounds are UTC, at PostgreSQL's microsecond
// precision, and in order.
func checkRange(t *testing.T, r store.TimeRange) {
	t.Helper()
	for _, b := range []time.Time{r.From, r.To} {
		if b.IsZero() {
			continue
		}
		if b.Location() != time.UTC || !b.Truncate(time.Microsecond).Equal(b) {
			t.Errorf("bound %v: want UTC at microsecond precision", b)
		}
	}
	if !r.From.IsZero() && !r.To.IsZero() && r.From.After(r.To) {
		t.Errorf("from %v after to %v accepted", r.From, r.To)
	}
}

func checkIn(t *testing.T, name, got string, allowed ...string) {
	t.Helper()
	for _, a := range allowed {
		if got == a {
			return
		}
	}
	t.Errorf("%s %q accepted; want one of %q", name, got, allowed)
}

func checkLimit(t *testing.T, n int) {
	t.Helper()
	if n < 1 || n > maxLimit {
		t.Errorf("limit %d accepted; want 1 to %d", n, maxLimit)
	}
}
