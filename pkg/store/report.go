package store

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/eventpipe/eventpipe/pkg/event"
)

// The reports read rollups, not the events table: event_counts,
// revenue_sums, audience_counts and audience_users (migrations/000002),
// which the database keeps exact as events are inserted. A range is split
// into whole buckets of the rollups (split) and uneven edges, and only the
// edges are read from events, through its occurred_at indexes; so a report
// costs about the same at 10M or 1B stored events. Each piece is one branch
// of a UNION ALL under the query's aggregation. The WHERE clauses hold only
// the filters a request gives, each value a bind parameter: an absent
// filter costs the planner nothing, and no client value is ever spliced
// into SQL text.
//
// Name ordering is done with COLLATE "C" in SQL and byte order in Go, so
// results come out the same whatever locale the database was created with.

// TimeRange bounds a report on the events' own timestamps: From is
// inclusive, To exclusive. A zero bound is open.
type TimeRange struct {
	From, To time.Time
}

// EventsQuery selects the events report. Empty strings mean "any".
type EventsQuery struct {
	TimeRange
	Source      string
	FunnelStage string
	EventType   string
	// Interval is "", "minute", "hour" or "day"; when set, the report
	// carries a series of UTC buckets of that size.
	Interval string
}

// EventCount is one breakdown row of the events report.
type EventCount struct {
	Source      string
	FunnelStage string
	EventType   string
	Count       int64
}

// Bucket is one non-empty time bucket of a series.
type Bucket struct {
	Start time.Time
	Count int64
}

// EventsReport counts events. Breakdown is ordered by source, funnel stage
// (top before bottom, the funnel's order) and event type; Series ascends
// and is nil unless an interval was asked for.
type EventsReport struct {
	Total     int64
	Breakdown []EventCount
	Series    []Bucket
}

// ReportEvents counts the events matching q: the breakdown in one query
// and, with an interval, the series in another, both sent in one batch.
//
// A series needs buckets no coarser than its interval, so its query leaves
// the coarser rollups out: a minute series over 30 days reads one rollup
// row per minute, source and event type with events (up to 14 per minute,
// 605,000 in all), against one row per event for the events table; the
// breakdown still reads days.
func (s *Store) ReportEvents(ctx context.Context, q EventsQuery) (EventsReport, error) {
	r := q.TimeRange.micro()
	// Each query binds its own parameters.
	matching := func() *filter {
		f := &filter{}
		f.equal("source", q.Source)
		f.equal("funnel_stage", q.FunnelStage)
		f.equal("event_type", q.EventType)
		return f
	}
	f := matching()
	rep := EventsReport{Breakdown: []EventCount{}}
	b := &pgx.Batch{}

	var branches []string
	for _, sp := range split(r, byDay, byHour, byMinute) {
		if sp.gran == rawEvents {
			branches = append(branches, `SELECT source, funnel_stage, event_type, count(*) AS events
				FROM events`+f.where(f.within("occurred_at", sp.TimeRange)...)+`
				GROUP BY source, funnel_stage, event_type`)
			continue
		}
		branches = append(branches, `SELECT source, funnel_stage, event_type, events
			FROM event_counts`+f.where(append(f.rollup(sp), "rolled_up = 0")...))
	}
	b.Queue(`SELECT source, funnel_stage, event_type, sum(events)::bigint
		FROM (`+strings.Join(branches, "\n\tUNION ALL\n\t")+`) c
		GROUP BY source, funnel_stage, event_type`, f.args...).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var c EventCount
			if err := rows.Scan(&c.Source, &c.FunnelStage, &c.EventType, &c.Count); err != nil {
				return err
			}
			rep.Breakdown = append(rep.Breakdown, c)
			rep.Total += c.Count
		}
		return rows.Err()
	})

	if q.Interval != "" {
		rep.Series = []Bucket{}
		unit := granularity(q.Interval)
		grans := []granularity{byDay, byHour, byMinute}
		i := slices.Index(grans, unit)
		if i < 0 {
			return EventsReport{}, fmt.Errorf("events report: unknown interval %q", q.Interval)
		}
		grans = grans[i:]
		// Each branch gives its rows' bucket of the series: a rollup of the
		// interval's granularity has it already; finer rows and raw events
		// are put in theirs by utc_bucket, the migration's own.
		width := "interval '1 " + string(unit) + "'"
		f := matching()
		// The rollup rows to read are those rolled up over every column
		// the query does not filter on; a type implies its stage, and
		// types are not rolled up without their source and stage.
		rolledUp := 0
		if q.EventType == "" {
			rolledUp = 1
			if q.Source == "" {
				rolledUp |= 4
			}
			if q.FunnelStage == "" {
				rolledUp |= 2
			}
		}
		rolled := "rolled_up = " + strconv.Itoa(rolledUp)
		branches = branches[:0]
		for _, sp := range split(r, grans...) {
			switch sp.gran {
			case rawEvents:
				branches = append(branches, `SELECT utc_bucket(`+width+`, occurred_at) AS start, count(*) AS events
					FROM events`+f.where(f.within("occurred_at", sp.TimeRange)...)+`
					GROUP BY 1`)
			case unit:
				branches = append(branches, `SELECT bucket AS start, events
					FROM event_counts`+f.where(append(f.rollup(sp), rolled)...))
			default:
				branches = append(branches, `SELECT utc_bucket(`+width+`, bucket) AS start, events
					FROM event_counts`+f.where(append(f.rollup(sp), rolled)...))
			}
		}
		// The rows come back as they are, mostly one per bucket, and are
		// summed here: a hash aggregation of 43,200 minutes in PostgreSQL
		// took longer than reading them (measured: 25 ms against 11 ms).
		b.Queue(strings.Join(branches, "\n\tUNION ALL\n\t"), f.args...).Query(func(rows pgx.Rows) error {
			sums := map[int64]int64{}
			var (
				start  time.Time
				events int64
			)
			for rows.Next() {
				if err := rows.Scan(&start, &events); err != nil {
					return err
				}
				sums[start.UnixMicro()] += events
			}
			for at, n := range sums {
				rep.Series = append(rep.Series, Bucket{Start: time.UnixMicro(at).UTC(), Count: n})
			}
			return rows.Err()
		})
	}
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return EventsReport{}, fmt.Errorf("events report: %w", err)
	}
	slices.SortFunc(rep.Breakdown, func(a, b EventCount) int {
		return cmp.Or(
			cmp.Compare(sourceRank(a.Source), sourceRank(b.Source)),
			cmp.Compare(stageRank(a.FunnelStage), stageRank(b.FunnelStage)),
			strings.Compare(a.EventType, b.EventType),
		)
	})
	slices.SortFunc(rep.Series, func(a, b Bucket) int { return a.Start.Compare(b.Start) })
	return rep, nil
}

// RevenueQuery selects the revenue report. Empty strings mean "any".
type RevenueQuery struct {
	TimeRange
	Source string
	// CampaignID restricts every figure to one campaign; only facebook
	// events carry campaigns, so it implies source facebook.
	CampaignID string
	// Limit caps ByCampaign.
	Limit int
}

// Revenue is an exact sum of purchase amounts, as a decimal string with two
// decimals ("0.00" when there is none), and the number of transactions in
// it.
type Revenue struct {
	Amount       string
	Transactions int64
}

// SourceRevenue is the revenue of one source.
type SourceRevenue struct {
	Source string
	Revenue
}

// CampaignRevenue is the revenue of one facebook campaign.
type CampaignRevenue struct {
	CampaignID string
	Revenue
}

// RevenueReport sums transactional events. BySource holds one row per source
// the query allows, zeros included, facebook first; ByCampaign is ordered by
// revenue descending, then campaign id, and capped at the query's limit.
type RevenueReport struct {
	Total      Revenue
	BySource   []SourceRevenue
	ByCampaign []CampaignRevenue
}

// transactional matches the events whose purchaseAmount is revenue
// (events.md, "Revenue"). Listing purchase_amount first lets the planner
// use the partial index events_revenue_idx.
const transactional = `purchase_amount IS NOT NULL
	AND ((source = 'facebook' AND event_type = 'checkout.complete')
	  OR (source = 'tiktok' AND event_type = 'purchase'))`

// ReportRevenue sums the transactional events matching q. The totals (one
// query, GROUPING SETS) and the campaigns go to the server in one batch.
func (s *Store) ReportRevenue(ctx context.Context, q RevenueQuery) (RevenueReport, error) {
	spans := split(q.TimeRange.micro(), byDay, byHour, byMinute)
	// sums returns the revenue rows of spans matching f: rollup rows of
	// whole buckets and raw transactions at the edges, each with its
	// amount and number of transactions.
	sums := func(f *filter) string {
		var branches []string
		for _, sp := range spans {
			if sp.gran == rawEvents {
				branches = append(branches, `SELECT source, campaign_id, purchase_amount AS amount, 1 AS transactions
					FROM events`+f.where(append([]string{transactional}, f.within("occurred_at", sp.TimeRange)...)...))
				continue
			}
			branches = append(branches, `SELECT source, campaign_id, revenue AS amount, transactions
				FROM revenue_sums`+f.where(f.rollup(sp)...))
		}
		return "(" + strings.Join(branches, "\n\tUNION ALL\n\t") + ") r"
	}

	f := &filter{}
	f.equal("source", q.Source)
	f.equal("campaign_id", q.CampaignID)
	totalsSQL := `SELECT GROUPING(source) = 1, source, round(coalesce(sum(amount), 0), 2)::text,
			coalesce(sum(transactions), 0)::bigint
		FROM ` + sums(f) + `
		GROUP BY GROUPING SETS ((), (source))`
	totalsArgs := f.args

	f = &filter{}
	f.equal("source", q.Source)
	f.equal("campaign_id", q.CampaignID)
	f.equal("source", string(event.Facebook))
	f.and("campaign_id IS NOT NULL")
	campaignsSQL := `SELECT campaign_id, round(sum(amount), 2)::text, sum(transactions)::bigint
		FROM ` + sums(f) + `
		GROUP BY campaign_id
		ORDER BY round(sum(amount), 2) DESC, campaign_id COLLATE "C"
		LIMIT ` + f.arg(q.Limit)

	rep := RevenueReport{Total: Revenue{Amount: "0.00"}, BySource: []SourceRevenue{}, ByCampaign: []CampaignRevenue{}}
	perSource := map[string]Revenue{}
	b := &pgx.Batch{}
	b.Queue(totalsSQL, totalsArgs...).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var (
				total  bool
				source *string
				r      Revenue
			)
			if err := rows.Scan(&total, &source, &r.Amount, &r.Transactions); err != nil {
				return err
			}
			if total {
				rep.Total = r
			} else {
				perSource[*source] = r
			}
		}
		return rows.Err()
	})
	b.Queue(campaignsSQL, f.args...).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var c CampaignRevenue
			if err := rows.Scan(&c.CampaignID, &c.Amount, &c.Transactions); err != nil {
				return err
			}
			rep.ByCampaign = append(rep.ByCampaign, c)
		}
		return rows.Err()
	})
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return RevenueReport{}, fmt.Errorf("revenue report: %w", err)
	}
	for _, src := range event.Sources {
		if (q.Source != "" && q.Source != string(src)) || (q.CampaignID != "" && src != event.Facebook) {
			continue
		}
		r, ok := perSource[string(src)]
		if !ok {
			r = Revenue{Amount: "0.00"}
		}
		rep.BySource = append(rep.BySource, SourceRevenue{Source: string(src), Revenue: r})
	}
	return rep, nil
}

// DemographicsQuery selects the demographics report. An empty Source means
// both sections.
type DemographicsQuery struct {
	TimeRange
	Source string
	// Limit caps the top lists (countries, cities).
	Limit int
}

// Group is one bucket of a demographics list: the distinct users and the
// events in it. A user is counted once in every bucket it appears in.
type Group struct {
	Name   string
	Users  int64
	Events int64
}

// CityGroup is a Group keyed by country and city.
type CityGroup struct {
	Country string
	City    string
	Users   int64
	Events  int64
}

// FacebookDemographics describes the facebook audience. ByAgeGroup follows
// AgeGroups' order; the other lists are ordered by users descending, then
// name (country, then city, for cities).
type FacebookDemographics struct {
	Users, Events int64
	ByGender      []Group
	ByAgeGroup    []Group
	TopCountries  []Group
	TopCities     []CityGroup
}

// FollowerStats are taken over events (not users); all nil when there are
// no events.
type FollowerStats struct {
	Min, Max *int64
	// Avg is rounded to two decimals.
	Avg *float64
}

// TikTokDemographics describes the tiktok audience. ByFollowerTier follows
// FollowerTiers' order; ByDevice and TopCountries come from top-funnel
// events only (only those carry device and country) and are ordered by users
// descending, then name.
type TikTokDemographics struct {
	Users, Events  int64
	Followers      FollowerStats
	ByFollowerTier []Group
	ByDevice       []Group
	TopCountries   []Group
}

// DemographicsReport holds the section of each source the query allows; the
// other is nil.
type DemographicsReport struct {
	Facebook *FacebookDemographics
	TikTok   *TikTokDemographics
}

// AgeGroups returns the age group names in their natural order.
func AgeGroups() []string {
	return []string{"under-18", "18-24", "25-34", "35-44", "45-54", "55-64", "65+"}
}

// FollowerTiers returns the follower tier names in their natural order.
func FollowerTiers() []string {
	return []string{"<1k", "1k-10k", "10k-100k", "100k-1M", "1M+"}
}

// Distinct users do not add up across time buckets, so each section
// counts them from audience_users: for the whole hours of the range, the
// rows of the months the range touches whose hour bits meet it, one per
// user and attribute combination per month; for the uneven edges, under an
// hour on each side, the raw events. A full-range report over 30 days
// thus reads about two rows per user (two months), not one per event: the
// cost is bounded by the users active in the range and the events of two
// partial hours, not by the events stored. Event counts, which do add up,
// come from audience_counts (days, then hours) and the same raw edges.
//
// Each section is one statement: r holds the raw edge events, u the users
// with their attributes (repeated across months and edges), n the events
// per list value. Each list counts distinct users as a two-step hash
// aggregation, (value, user) then value, which avoids the per-group sort
// of count(DISTINCT), and takes its events from n. The lists are glued with
// UNION ALL, each with its own order and limit, and each row says which
// list it belongs to.
const (
	facebookSQL = `WITH r AS MATERIALIZED (
		SELECT user_id, gender, age_group(age) AS age_group, country, city
		FROM events WHERE source = 'facebook' AND (%[1]s)
	), u AS MATERIALIZED (
		%[2]s
		UNION ALL
		SELECT user_id, gender, age_group, country, city FROM r
	), n AS MATERIALIZED (
		SELECT dimension, value, detail, sum(events)::bigint AS events
		FROM (%[3]s
		      UNION ALL
		      SELECT d.dimension, d.value, d.detail, 1
		      FROM r CROSS JOIN LATERAL (VALUES
		          ('total', NULL, NULL), ('gender', r.gender, NULL),
		          ('age_group', r.age_group, NULL), ('place', r.country, r.city)
		      ) AS d (dimension, value, detail)
		      WHERE d.dimension = 'total' OR d.value IS NOT NULL) c
		GROUP BY dimension, value, detail
	)
	(SELECT 'total', NULL::text, NULL::text, (SELECT count(*) FROM (SELECT DISTINCT user_id FROM u) x),
	        coalesce((SELECT sum(events) FROM n WHERE dimension = 'total'), 0)::bigint)
	UNION ALL
	(SELECT 'gender', g.gender, NULL, g.users, n.events
	 FROM (SELECT gender, count(*) AS users
	       FROM (SELECT DISTINCT gender, user_id FROM u WHERE gender IS NOT NULL) x
	       GROUP BY gender) g
	 JOIN n ON n.dimension = 'gender' AND n.value = g.gender)
	UNION ALL
	(SELECT 'age', g.age_group, NULL, g.users, n.events
	 FROM (SELECT age_group, count(*) AS users
	       FROM (SELECT DISTINCT age_group, user_id FROM u WHERE age_group IS NOT NULL) x
	       GROUP BY age_group) g
	 JOIN n ON n.dimension = 'age_group' AND n.value = g.age_group)
	UNION ALL
	(SELECT 'country', g.country, NULL, g.users, p.events
	 FROM (SELECT country, count(*) AS users
	       FROM (SELECT DISTINCT country, user_id FROM u WHERE country IS NOT NULL) x
	       GROUP BY country) g
	 JOIN (SELECT value, sum(events)::bigint AS events FROM n WHERE dimension = 'place'
	       GROUP BY value) p ON p.value = g.country
	 ORDER BY g.users DESC, g.country COLLATE "C" LIMIT %[4]s)
	UNION ALL
	(SELECT 'city', g.country, g.city, g.users, n.events
	 FROM (SELECT country, city, count(*) AS users
	       FROM (SELECT DISTINCT country, city, user_id FROM u
	             WHERE country IS NOT NULL AND city IS NOT NULL) x
	       GROUP BY country, city) g
	 JOIN n ON n.dimension = 'place' AND n.value = g.country AND n.detail = g.city
	 ORDER BY g.users DESC, g.country COLLATE "C", g.city COLLATE "C" LIMIT %[4]s)`

	// The follower statistics are over events: audience_counts keeps their
	// minimum, maximum, sum and count, read from its 'total' rows. Device
	// and country are those of top-funnel events.
	tiktokSQL = `WITH r AS MATERIALIZED (
		SELECT user_id, followers, follower_tier(followers) AS follower_tier,
		       CASE WHEN funnel_stage = 'top' THEN device END AS device,
		       CASE WHEN funnel_stage = 'top' THEN country END AS country
		FROM events WHERE source = 'tiktok' AND (%[1]s)
	), u AS MATERIALIZED (
		%[2]s
		UNION ALL
		SELECT user_id, follower_tier, device, country FROM r
	), n AS MATERIALIZED (
		SELECT dimension, value, sum(events)::bigint AS events,
		       min(followers_min) AS followers_min, max(followers_max) AS followers_max,
		       sum(followers_sum) AS followers_sum, sum(followers_events) AS followers_events
		FROM (%[3]s
		      UNION ALL
		      SELECT d.dimension, d.value, 1, r.followers, r.followers, r.followers,
		             (r.followers IS NOT NULL)::integer
		      FROM r CROSS JOIN LATERAL (VALUES
		          ('total', NULL), ('follower_tier', r.follower_tier),
		          ('device', r.device), ('country', r.country)
		      ) AS d (dimension, value)
		      WHERE d.dimension = 'total' OR d.value IS NOT NULL) c
		GROUP BY dimension, value
	)
	(SELECT 'total', NULL::text, (SELECT count(*) FROM (SELECT DISTINCT user_id FROM u) x),
	        coalesce(t.events, 0)::bigint, t.followers_min, t.followers_max,
	        round(t.followers_sum / nullif(t.followers_events, 0), 2)::float8
	 FROM (SELECT sum(events) AS events, min(followers_min) AS followers_min,
	              max(followers_max) AS followers_max, sum(followers_sum) AS followers_sum,
	              sum(followers_events) AS followers_events
	       FROM n WHERE dimension = 'total') t)
	UNION ALL
	(SELECT 'tier', g.follower_tier, g.users, n.events, NULL, NULL, NULL
	 FROM (SELECT follower_tier, count(*) AS users
	       FROM (SELECT DISTINCT follower_tier, user_id FROM u WHERE follower_tier IS NOT NULL) x
	       GROUP BY follower_tier) g
	 JOIN n ON n.dimension = 'follower_tier' AND n.value = g.follower_tier)
	UNION ALL
	(SELECT 'device', g.device, g.users, n.events, NULL, NULL, NULL
	 FROM (SELECT device, count(*) AS users
	       FROM (SELECT DISTINCT device, user_id FROM u WHERE device IS NOT NULL) x
	       GROUP BY device) g
	 JOIN n ON n.dimension = 'device' AND n.value = g.device)
	UNION ALL
	(SELECT 'country', g.country, g.users, n.events, NULL, NULL, NULL
	 FROM (SELECT country, count(*) AS users
	       FROM (SELECT DISTINCT country, user_id FROM u WHERE country IS NOT NULL) x
	       GROUP BY country) g
	 JOIN n ON n.dimension = 'country' AND n.value = g.country
	 ORDER BY g.users DESC, g.country COLLATE "C" LIMIT %[4]s)`
)

// The columns of audience_users and audience_counts each section reads.
const (
	facebookUserColumns  = `user_id, gender, age_group, country, city`
	facebookCountColumns = `dimension, value, detail, events`
	tiktokUserColumns    = `user_id, follower_tier, device, country`
	tiktokCountColumns   = `dimension, value, events, followers_min, followers_max, followers_sum, followers_events`
)

// ReportDemographics describes the audience of the events matching q: one
// statement per section, both sent in one batch.
func (s *Store) ReportDemographics(ctx context.Context, q DemographicsQuery) (DemographicsReport, error) {
	var rep DemographicsReport
	b := &pgx.Batch{}
	r := q.TimeRange.micro()
	if q.Source == "" || q.Source == string(event.Facebook) {
		fb := &FacebookDemographics{ByGender: []Group{}, ByAgeGroup: []Group{}, TopCountries: []Group{}, TopCities: []CityGroup{}}
		rep.Facebook = fb
		sql, args := demographicsSQL(facebookSQL, event.Facebook, facebookUserColumns, facebookCountColumns, r, q.Limit)
		b.Queue(sql, args...).Query(func(rows pgx.Rows) error {
			return scanFacebook(rows, fb)
		})
	}
	if q.Source == "" || q.Source == string(event.TikTok) {
		tt := &TikTokDemographics{ByFollowerTier: []Group{}, ByDevice: []Group{}, TopCountries: []Group{}}
		rep.TikTok = tt
		sql, args := demographicsSQL(tiktokSQL, event.TikTok, tiktokUserColumns, tiktokCountColumns, r, q.Limit)
		b.Queue(sql, args...).Query(func(rows pgx.Rows) error {
			return scanTikTok(rows, tt)
		})
	}
	if b.Len() == 0 {
		return rep, nil
	}
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return DemographicsReport{}, fmt.Errorf("demographics report: %w", err)
	}
	return rep, nil
}

// demographicsSQL fills a section's statement in for the range r: the
// condition of the raw edges, the audience_users rows of its whole hours
// and the audience_counts rows of its whole buckets.
func demographicsSQL(tmpl string, source event.Source, userColumns, countColumns string, r TimeRange, limit int) (string, []any) {
	// The source is this package's constant, not a client's value.
	f := &filter{}
	f.and("source = '" + string(source) + "'")
	edges := []string{"false"}
	counts := []string{`SELECT ` + countColumns + ` FROM audience_counts WHERE false`}
	for _, sp := range split(r, byDay, byHour) {
		if sp.gran == rawEvents {
			edges = append(edges, "("+strings.Join(f.within("occurred_at", sp.TimeRange), " AND ")+")")
		} else {
			counts = append(counts, `SELECT `+countColumns+` FROM audience_counts`+f.where(f.rollup(sp)...))
		}
	}
	// The rollup spans above are the whole hours of r; the users active
	// in them come from the hour bits of their months.
	users := []string{`SELECT ` + userColumns + ` FROM audience_users WHERE false`}
	hours := r
	if !r.From.IsZero() {
		hours.From = byHour.ceil(r.From)
	}
	if !r.To.IsZero() {
		hours.To = byHour.floor(r.To)
	}
	if !hours.empty() {
		whole, partial := activeMonths(hours)
		if whole != nil {
			users = append(users, `SELECT `+userColumns+` FROM audience_users`+f.where(f.within("month", *whole)...))
		}
		for _, p := range partial {
			users = append(users, `SELECT `+userColumns+` FROM audience_users`+
				f.where("month = "+f.arg(p.month), "bit_count(hours & "+f.arg(p.mask)+"::text::bit(744)) > 0"))
		}
	}
	sql := fmt.Sprintf(tmpl, strings.Join(edges, " OR "),
		strings.Join(users, "\n\t\tUNION ALL\n\t\t"),
		strings.Join(counts, "\n\t\t      UNION ALL\n\t\t      "),
		f.arg(limit))
	return sql, f.args
}

func scanFacebook(rows pgx.Rows, fb *FacebookDemographics) error {
	for rows.Next() {
		var (
			list          string
			name, city    *string
			users, events int64
		)
		if err := rows.Scan(&list, &name, &city, &users, &events); err != nil {
			return err
		}
		switch list {
		case "total":
			fb.Users, fb.Events = users, events
		case "gender":
			fb.ByGender = append(fb.ByGender, Group{Name: *name, Users: users, Events: events})
		case "age":
			fb.ByAgeGroup = append(fb.ByAgeGroup, Group{Name: *name, Users: users, Events: events})
		case "country":
			fb.TopCountries = append(fb.TopCountries, Group{Name: *name, Users: users, Events: events})
		case "city":
			fb.TopCities = append(fb.TopCities, CityGroup{Country: *name, City: *city, Users: users, Events: events})
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	// UNION ALL does not promise to keep each branch's order, so the lists
	// are put in order here; the limited ones were cut by the same order in
	// SQL.
	sortGroups(fb.ByGender)
	sortNatural(fb.ByAgeGroup, AgeGroups())
	sortGroups(fb.TopCountries)
	slices.SortFunc(fb.TopCities, func(a, b CityGroup) int {
		return cmp.Or(cmp.Compare(b.Users, a.Users), strings.Compare(a.Country, b.Country), strings.Compare(a.City, b.City))
	})
	return nil
}

func scanTikTok(rows pgx.Rows, tt *TikTokDemographics) error {
	for rows.Next() {
		var (
			list          string
			name          *string
			users, events int64
			lo, hi        *int64
			avg           *float64
		)
		if err := rows.Scan(&list, &name, &users, &events, &lo, &hi, &avg); err != nil {
			return err
		}
		switch list {
		case "total":
			tt.Users, tt.Events = users, events
			tt.Followers = FollowerStats{Min: lo, Max: hi, Avg: avg}
		case "tier":
			tt.ByFollowerTier = append(tt.ByFollowerTier, Group{Name: *name, Users: users, Events: events})
		case "device":
			tt.ByDevice = append(tt.ByDevice, Group{Name: *name, Users: users, Events: events})
		case "country":
			tt.TopCountries = append(tt.TopCountries, Group{Name: *name, Users: users, Events: events})
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	sortNatural(tt.ByFollowerTier, FollowerTiers())
	sortGroups(tt.ByDevice)
	sortGroups(tt.TopCountries)
	return nil
}

// sortGroups orders by users descending, then name.
func sortGroups(g []Group) {
	slices.SortFunc(g, func(a, b Group) int {
		return cmp.Or(cmp.Compare(b.Users, a.Users), strings.Compare(a.Name, b.Name))
	})
}

// sortNatural orders groups by the position of their name in order.
func sortNatural(g []Group, order []string) {
	slices.SortFunc(g, func(a, b Group) int {
		return cmp.Compare(slices.Index(order, a.Name), slices.Index(order, b.Name))
	})
}

func sourceRank(s string) int { return slices.Index(event.Sources, event.Source(s)) }

func stageRank(s string) int { return slices.Index(event.Stages, event.Stage(s)) }

// filter builds WHERE clauses from fixed SQL conditions and bind
// parameters. Its conditions are the filters a report shares among the
// branches of its UNION ALL; each branch adds its own time range.
type filter struct {
	conds []string
	args  []any
}

// arg binds v and returns its placeholder.
func (f *filter) arg(v any) string {
	f.args = append(f.args, v)
	return "$" + strconv.Itoa(len(f.args))
}

// and adds a condition written by this package, never by a client.
func (f *filter) and(cond string) { f.conds = append(f.conds, cond) }

// equal adds column = value when value is set.
func (f *filter) equal(column, value string) {
	if value != "" {
		f.and(column + " = " + f.arg(value))
	}
}

// within returns the conditions bounding column to r, for one branch.
func (f *filter) within(column string, r TimeRange) []string {
	var conds []string
	if !r.From.IsZero() {
		conds = append(conds, column+" >= "+f.arg(r.From))
	}
	if !r.To.IsZero() {
		conds = append(conds, column+" < "+f.arg(r.To))
	}
	return conds
}

// rollup returns the conditions selecting the rollup rows of sp, for one
// branch.
func (f *filter) rollup(sp span) []string {
	return append([]string{"granularity = '" + string(sp.gran) + "'"}, f.within("bucket", sp.TimeRange)...)
}

// where returns the clause of the filter's conditions and extra, with a
// leading space, or "" without conditions.
func (f *filter) where(extra ...string) string {
	conds := append(slices.Clone(f.conds), extra...)
	if len(conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(conds, " AND ")
}
