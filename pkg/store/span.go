package store

import (
	"strings"
	"time"
)

// granularity is the bucket size of rollup rows, named as date_trunc
// names it; the empty granularity stands for the events table itself.
type granularity string

const (
	rawEvents granularity = ""
	byMinute  granularity = "minute"
	byHour    granularity = "hour"
	byDay     granularity = "day"
	byMonth   granularity = "month"
)

// floor returns the start of t's UTC bucket. Minutes, hours and days are
// whole multiples of their length since the zero time, which is a UTC
// midnight, so Truncate finds their UTC boundaries.
func (g granularity) floor(t time.Time) time.Time {
	t = t.UTC()
	switch g {
	case byMinute:
		return t.Truncate(time.Minute)
	case byHour:
		return t.Truncate(time.Hour)
	case byDay:
		return t.Truncate(24 * time.Hour)
	default:
		return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
	}
}

// ceil returns t when it starts a bucket, else the start of the next one.
func (g granularity) ceil(t time.Time) time.Time {
	f := g.floor(t)
	if f.Equal(t) {
		return f
	}
	if g == byMonth {
		return f.AddDate(0, 1, 0)
	}
	return g.floor(f.Add(g.size()))
}

func (g granularity) size() time.Duration {
	switch g {
	case byMinute:
		return time.Minute
	case byHour:
		return time.Hour
	default:
		return 24 * time.Hour
	}
}

// span is a piece of a report's range read from one place: whole buckets
// of a rollup, or rows of the events table when gran is rawEvents.
type span struct {
	gran granularity
	TimeRange
}

// split covers r with the fewest rollup rows: the whole buckets of the
// first (coarsest) granularity inside r, then, on each uneven edge left
// over, whole buckets of the next one, and so on; what no bucket covers is
// read raw. With minute, hour and day a range costs at most the days
// inside it, 23 hours and 59 minutes of rollup rows on each side, and the
// events of under a minute on each side, whatever the number of events
// stored. An open bound stays open. An empty r gives one empty raw span.
func split(r TimeRange, grans ...granularity) []span {
	if len(grans) == 0 || r.empty() {
		return []span{{gran: rawEvents, TimeRange: r}}
	}
	g := grans[0]
	inner := r
	if !r.From.IsZero() {
		inner.From = g.ceil(r.From)
	}
	if !r.To.IsZero() {
		inner.To = g.floor(r.To)
	}
	if inner.empty() {
		return split(r, grans[1:]...)
	}
	spans := []span{{gran: g, TimeRange: inner}}
	if r.From.Before(inner.From) {
		spans = append(spans, split(TimeRange{From: r.From, To: inner.From}, grans[1:]...)...)
	}
	if inner.To.Before(r.To) {
		spans = append(spans, split(TimeRange{From: inner.To, To: r.To}, grans[1:]...)...)
	}
	return spans
}

// empty reports whether r holds no instant: both bounds set and From not
// before To.
func (r TimeRange) empty() bool {
	return !r.From.IsZero() && !r.To.IsZero() && !r.From.Before(r.To)
}

// micro rounds the bounds down to microseconds, PostgreSQL's precision, as
// pgx does when it sends them: the split then agrees with the database on
// which bucket a bound falls in.
func (r TimeRange) micro() TimeRange {
	return TimeRange{From: r.From.Truncate(time.Microsecond), To: r.To.Truncate(time.Microsecond)}
}

// hoursPerMonth is the length of the hour bitmaps of audience_users: 31
// days of 24 hours.
const hoursPerMonth = 31 * 24

// monthHours selects the hours of one UTC month: the bitmap of
// audience_users.hours with a bit set for each hour of r.
type monthHours struct {
	month time.Time
	mask  string
}

// activeMonths covers r, a range of whole UTC hours, with the months wholly
// inside it (a range of months, possibly open; nil when there is none) and
// at most two partial months, each with the mask of its hours inside r.
func activeMonths(r TimeRange) (whole *TimeRange, partial []monthHours) {
	for _, s := range split(r, byMonth) {
		if s.gran == byMonth {
			whole = &s.TimeRange
			continue
		}
		// An edge is shorter than a month, but without a whole month
		// inside r it may still cross one boundary.
		for from := s.From; from.Before(s.To); {
			m := byMonth.floor(from)
			to := m.AddDate(0, 1, 0)
			if s.To.Before(to) {
				to = s.To
			}
			partial = append(partial, monthHours{month: m, mask: hourMask(m, from, to)})
			from = to
		}
	}
	return whole, partial
}

// hourMask returns the bits of the hours [from, to) of month, as the text
// of a bit(744).
func hourMask(month, from, to time.Time) string {
	var b strings.Builder
	b.Grow(hoursPerMonth)
	lo, hi := int(from.Sub(month)/time.Hour), int(to.Sub(month)/time.Hour)
	for i := range hoursPerMonth {
		if i >= lo && i < hi {
			b.WriteByte('1')
		} else {
			b.WriteByte('0')
		}
	}
	return b.String()
}
