package report

import (
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/eventpipe/eventpipe/pkg/event"
	"github.com/eventpipe/eventpipe/pkg/store"
)

// The query parameters each report accepts. Anything else is refused, so a
// typo such as "sorce" fails loudly instead of silently widening the report.
var (
	eventsParams       = []string{"from", "to", "source", "funnelStage", "eventType", "interval"}
	revenueParams      = []string{"from", "to", "source", "campaignId", "limit"}
	demographicsParams = []string{"from", "to", "source", "limit"}
)

const (
	defaultLimit  = 10
	maxLimit      = 1000
	maxCampaignID = 256
)

// paramError is a query parameter the client got wrong; it becomes a 400
// naming the parameter.
type paramError struct {
	param   string
	message string
}

func (e *paramError) Error() string { return e.param + ": " + e.message }

func invalid(param, format string, args ...any) error {
	return &paramError{param: param, message: fmt.Sprintf(format, args...)}
}

// parseQuery splits a raw query string into parameters. Unlike
// url.ParseQuery it names the parameter whose escaping is broken, and it
// refuses a parameter given twice, since which of two values wins would
// be a guess.
func parseQuery(raw string, allowed []string) (url.Values, error) {
	v := url.Values{}
	for pair := range strings.SplitSeq(raw, "&") {
		if pair == "" {
			continue
		}
		rawKey, rawValue, _ := strings.Cut(pair, "=")
		key, err := url.QueryUnescape(rawKey)
		if err != nil {
			return nil, invalid(rawKey, "malformed escape in parameter name")
		}
		if key == "" {
			return nil, invalid(pair, "parameter without a name")
		}
		value, err := url.QueryUnescape(rawValue)
		if err != nil {
			return nil, invalid(key, "malformed escape in value")
		}
		v[key] = append(v[key], value)
	}
	// Sorted, so the parameter named in the error does not depend on map
	// order.
	for _, key := range slices.Sorted(maps.Keys(v)) {
		if !slices.Contains(allowed, key) {
			return nil, invalid(key, "unknown parameter; this report accepts %s", strings.Join(allowed, ", "))
		}
		if len(v[key]) > 1 {
			return nil, invalid(key, "given more than once")
		}
	}
	return v, nil
}

// parseEventsQuery reads the parameters of /reports/events.
func parseEventsQuery(raw string) (store.EventsQuery, error) {
	v, err := parseQuery(raw, eventsParams)
	if err != nil {
		return store.EventsQuery{}, err
	}
	var q store.EventsQuery
	if q.TimeRange, err = parseRange(v); err != nil {
		return store.EventsQuery{}, err
	}
	if q.Source, err = parseSource(v); err != nil {
		return store.EventsQuery{}, err
	}
	if s, ok := lookup(v, "funnelStage"); ok {
		if !event.ValidStage(s) {
			return store.EventsQuery{}, invalid("funnelStage", "must be top or bottom, got %q", s)
		}
		q.FunnelStage = s
	}
	if s, ok := lookup(v, "eventType"); ok {
		if !event.KnownType(s) {
			return store.EventsQuery{}, invalid("eventType", "must be a known event type of facebook or tiktok, got %q", s)
		}
		q.EventType = s
	}
	if s, ok := lookup(v, "interval"); ok {
		if s != "minute" && s != "hour" && s != "day" {
			return store.EventsQuery{}, invalid("interval", "must be minute, hour or day, got %q", s)
		}
		q.Interval = s
	}
	return q, nil
}

// parseRevenueQuery reads the parameters of /reports/revenue.
func parseRevenueQuery(raw string) (store.RevenueQuery, error) {
	v, err := parseQuery(raw, revenueParams)
	if err != nil {
		return store.RevenueQuery{}, err
	}
	var q store.RevenueQuery
	if q.TimeRange, err = parseRange(v); err != nil {
		return store.RevenueQuery{}, err
	}
	if q.Source, err = parseSource(v); err != nil {
		return store.RevenueQuery{}, err
	}
	if s, ok := lookup(v, "campaignId"); ok {
		if err := checkCampaignID(s); err != nil {
			return store.RevenueQuery{}, err
		}
		q.CampaignID = s
	}
	if q.Limit, err = parseLimit(v); err != nil {
		return store.RevenueQuery{}, err
	}
	return q, nil
}

// parseDemographicsQuery reads the parameters of /reports/demographics.
func parseDemographicsQuery(raw string) (store.DemographicsQuery, error) {
	v, err := parseQuery(raw, demographicsParams)
	if err != nil {
		return store.DemographicsQuery{}, err
	}
	var q store.DemographicsQuery
	if q.TimeRange, err = parseRange(v); err != nil {
		return store.DemographicsQuery{}, err
	}
	if q.Source, err = parseSource(v); err != nil {
		return store.DemographicsQuery{}, err
	}
	if q.Limit, err = parseLimit(v); err != nil {
		return store.DemographicsQuery{}, err
	}
	return q, nil
}

func lookup(v url.Values, name string) (string, bool) {
	values, ok := v[name]
	if !ok {
		return "", false
	}
	return values[0], true
}

func parseSource(v url.Values) (string, error) {
	s, ok := lookup(v, "source")
	if !ok {
		return "", nil
	}
	if !event.ValidSource(s) {
		return "", invalid("source", "must be facebook or tiktok, got %q", s)
	}
	return s, nil
}

// parseRange reads from and to. From equal to to is an empty range, which
// is a valid question with a zero answer; from after to is a mistake.
func parseRange(v url.Values) (store.TimeRange, error) {
	var r store.TimeRange
	if s, ok := lookup(v, "from"); ok {
		t, err := parseTime(s, false)
		if err != nil {
			return r, invalid("from", "%v", err)
		}
		r.From = t
	}
	if s, ok := lookup(v, "to"); ok {
		t, err := parseTime(s, true)
		if err != nil {
			return r, invalid("to", "%v", err)
		}
		r.To = t
	}
	if !r.From.IsZero() && !r.To.IsZero() && r.From.After(r.To) {
		return r, invalid("from", "must not be after to (%s > %s)", formatTime(r.From), formatTime(r.To))
	}
	return r, nil
}

// parseTime reads an RFC 3339 timestamp or a YYYY-MM-DD date (UTC) and
// returns it in UTC. A date stands for its whole day, so as the exclusive
// end of a range (end) it means the start of the next day.
func parseTime(s string, end bool) (time.Time, error) {
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		if end {
			t = t.AddDate(0, 0, 1)
		}
		return t, nil
	}
	// A client that does not escape the '+' of an offset sends a space
	// (form encoding); an RFC 3339 timestamp never holds one otherwise.
	t, err := time.Parse(time.RFC3339Nano, strings.Replace(s, " ", "+", 1))
	if err != nil {
		return time.Time{}, fmt.Errorf("must be an RFC 3339 timestamp (2025-06-10T18:00:00Z) or a date (2025-06-10), got %q", s)
	}
	return ceilMicrosecond(t.UTC()), nil
}

// ceilMicrosecond rounds t up to PostgreSQL's microsecond precision. Both
// bounds compare as "occurred_at >= bound" or "occurred_at < bound", so
// rounding up keeps exactly the stored instants the exact bound would.
func ceilMicrosecond(t time.Time) time.Time {
	if d := t.Truncate(time.Microsecond); d.Before(t) {
		return d.Add(time.Microsecond)
	}
	return t
}

func checkCampaignID(s string) error {
	n := utf8.RuneCountInString(s)
	if n == 0 || n > maxCampaignID {
		return invalid("campaignId", "must be 1 to %d characters, got %d", maxCampaignID, n)
	}
	// PostgreSQL text cannot hold invalid UTF-8 or NUL: such a value would
	// fail the query as a server error instead of matching nothing.
	if !utf8.ValidString(s) || strings.IndexFunc(s, unicode.IsControl) >= 0 {
		return invalid("campaignId", "must be printable UTF-8 text")
	}
	return nil
}

func parseLimit(v url.Values) (int, error) {
	s, ok := lookup(v, "limit")
	if !ok {
		return defaultLimit, nil
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' || n > maxLimit {
			return 0, invalid("limit", "must be an integer from 1 to %d, got %q", maxLimit, s)
		}
		n = n*10 + int(s[i]-'0')
	}
	if n < 1 || n > maxLimit {
		return 0, invalid("limit", "must be an integer from 1 to %d, got %q", maxLimit, s)
	}
	return n, nil
}

// formatTime writes a bound the way reports echo it: RFC 3339 in UTC,
// with fractional seconds only when there are some.
func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
