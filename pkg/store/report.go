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

// The report queries below read only the typed columns of the events table
// and filter on occurred_at, the event's own timestamp, so the occurred_at
// indexes serve every time range. The WHERE clause holds only the filters a
// request gives, each value a bind parameter: an absent filter costs the
// planner nothing, and no client value is ever spliced into SQL text.
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

// ReportEvents counts the events matching q in one query: with an interval,
// GROUPING SETS give the breakdown and the series from a single scan.
func (s *Store) ReportEvents(ctx context.Context, q EventsQuery) (EventsReport, error) {
	f := rangeFilter(q.TimeRange)
	f.equal("source", q.Source)
	f.equal("funnel_stage", q.FunnelStage)
	f.equal("event_type", q.EventType)

	var sql string
	if q.Interval == "" {
		sql = `SELECT false, source, funnel_stage, event_type, NULL::timestamptz, count(*)
			FROM events` + f.where() + `
			GROUP BY source, funnel_stage, event_type`
	} else {
		unit := f.arg(q.Interval)
		sql = `SELECT GROUPING(bucket) = 0, source, funnel_stage, event_type, bucket, count(*)
			FROM (SELECT source, funnel_stage, event_type,
			             date_trunc(` + unit + `, occurred_at, 'UTC') AS bucket
			      FROM events` + f.where() + `) e
			GROUP BY GROUPING SETS ((source, funnel_stage, event_type), (bucket))`
	}
	rows, err := s.pool.Query(ctx, sql, f.args...)
	if err != nil {
		return EventsReport{}, fmt.Errorf("events report: %w", err)
	}
	rep := EventsReport{Breakdown: []EventCount{}}
	if q.Interval != "" {
		rep.Series = []Bucket{}
	}
	for rows.Next() {
		var (
			isBucket                 bool
			source, stage, eventType *string
			start                    *time.Time
			count                    int64
		)
		if err := rows.Scan(&isBucket, &source, &stage, &eventType, &start, &count); err != nil {
			rows.Close()
			return EventsReport{}, fmt.Errorf("events report: %w", err)
		}
		if isBucket {
			rep.Series = append(rep.Series, Bucket{Start: start.UTC(), Count: count})
			continue
		}
		rep.Breakdown = append(rep.Breakdown, EventCount{Source: *source, FunnelStage: *stage, EventType: *eventType, Count: count})
		rep.Total += count
	}
	if err := rows.Err(); err != nil {
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

// amount renders an exact numeric sum as text with two decimals; round on
// numeric keeps the scale, so an empty sum reads "0.00".
const amount = `round(coalesce(sum(purchase_amount), 0), 2)::text`

// ReportRevenue sums the transactional events matching q. The totals (one
// query, GROUPING SETS) and the campaigns go to the server in one batch.
func (s *Store) ReportRevenue(ctx context.Context, q RevenueQuery) (RevenueReport, error) {
	f := rangeFilter(q.TimeRange)
	f.and(transactional)
	f.equal("source", q.Source)
	f.equal("campaign_id", q.CampaignID)
	totalsSQL := `SELECT GROUPING(source) = 1, source, ` + amount + `, count(*)
		FROM events` + f.where() + `
		GROUP BY GROUPING SETS ((), (source))`
	totalsArgs := slices.Clone(f.args)

	f.equal("source", string(event.Facebook))
	f.and("campaign_id IS NOT NULL")
	limit := f.arg(q.Limit)
	campaignsSQL := `SELECT campaign_id, ` + amount + `, count(*)
		FROM events` + f.where() + `
		GROUP BY campaign_id
		ORDER BY round(sum(purchase_amount), 2) DESC, campaign_id COLLATE "C"
		LIMIT ` + limit

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

// The bucket expressions of AgeGroups and FollowerTiers. Without an ELSE, a
// row lacking the value lands in no bucket.
const (
	ageGroupSQL = `CASE
		WHEN age < 18 THEN 'under-18'
		WHEN age < 25 THEN '18-24'
		WHEN age < 35 THEN '25-34'
		WHEN age < 45 THEN '35-44'
		WHEN age < 55 THEN '45-54'
		WHEN age < 65 THEN '55-64'
		WHEN age >= 65 THEN '65+'
	END`
	followerTierSQL = `CASE
		WHEN followers < 1000 THEN '<1k'
		WHEN followers < 10000 THEN '1k-10k'
		WHEN followers < 100000 THEN '10k-100k'
		WHEN followers < 1000000 THEN '100k-1M'
		WHEN followers >= 1000000 THEN '1M+'
	END`
)

// Each section is one statement. The source's events in the range are
// read once and folded into a materialized CTE of one row per user and
// attribute combination, with its event count: typically one or two rows
// per user instead of one per event. Each list is then a two-step hash
// aggregation over it, (bucket, user) then bucket, which counts distinct
// users without the per-group sort count(DISTINCT) needs; measured at half
// the time of count(DISTINCT) over the events on 100,000 events
// (BenchmarkReports). The lists are glued with UNION ALL, each with its own
// order and limit, and each row says which list it belongs to.
const (
	facebookSQL = `WITH e AS MATERIALIZED (
		SELECT user_id, gender, country, city, ` + ageGroupSQL + ` AS age_group, count(*) AS events
		FROM events %s
		GROUP BY user_id, gender, country, city, age_group
	)
	(SELECT 'total', NULL::text, NULL::text, count(DISTINCT user_id), coalesce(sum(events), 0)::bigint FROM e)
	UNION ALL
	(SELECT 'gender', gender, NULL, count(*), sum(events)::bigint
	 FROM (SELECT gender, user_id, sum(events) AS events FROM e
	       WHERE gender IS NOT NULL GROUP BY gender, user_id) u
	 GROUP BY gender)
	UNION ALL
	(SELECT 'age', age_group, NULL, count(*), sum(events)::bigint
	 FROM (SELECT age_group, user_id, sum(events) AS events FROM e
	       WHERE age_group IS NOT NULL GROUP BY age_group, user_id) u
	 GROUP BY age_group)
	UNION ALL
	(SELECT 'country', country, NULL, count(*) AS users, sum(events)::bigint
	 FROM (SELECT country, user_id, sum(events) AS events FROM e
	       WHERE country IS NOT NULL GROUP BY country, user_id) u
	 GROUP BY country
	 ORDER BY users DESC, country COLLATE "C" LIMIT %[2]s)
	UNION ALL
	(SELECT 'city', country, city, count(*) AS users, sum(events)::bigint
	 FROM (SELECT country, city, user_id, sum(events) AS events FROM e
	       WHERE country IS NOT NULL AND city IS NOT NULL GROUP BY country, city, user_id) u
	 GROUP BY country, city
	 ORDER BY users DESC, country COLLATE "C", city COLLATE "C" LIMIT %[2]s)`

	// The follower average is over events: each folded row weighs its
	// followers by its event count.
	tiktokSQL = `WITH e AS MATERIALIZED (
		SELECT user_id, followers, funnel_stage = 'top' AS top, device, country, count(*) AS events
		FROM events %s
		GROUP BY user_id, followers, top, device, country
	)
	(SELECT 'total', NULL::text, count(DISTINCT user_id), coalesce(sum(events), 0)::bigint,
	        min(followers), max(followers),
	        round(sum(followers * events) / sum(events) FILTER (WHERE followers IS NOT NULL), 2)::float8
	 FROM e)
	UNION ALL
	(SELECT 'tier', tier, count(*), sum(events)::bigint, NULL, NULL, NULL
	 FROM (SELECT ` + followerTierSQL + ` AS tier, user_id, sum(events) AS events FROM e
	       GROUP BY tier, user_id) u
	 WHERE tier IS NOT NULL GROUP BY tier)
	UNION ALL
	(SELECT 'device', device, count(*), sum(events)::bigint, NULL, NULL, NULL
	 FROM (SELECT device, user_id, sum(events) AS events FROM e
	       WHERE top AND device IS NOT NULL GROUP BY device, user_id) u
	 GROUP BY device)
	UNION ALL
	(SELECT 'country', country, count(*) AS users, sum(events)::bigint, NULL, NULL, NULL
	 FROM (SELECT country, user_id, sum(events) AS events FROM e
	       WHERE top AND country IS NOT NULL GROUP BY country, user_id) u
	 GROUP BY country
	 ORDER BY users DESC, country COLLATE "C" LIMIT %[2]s)`
)

// ReportDemographics describes the audience of the events matching q: one
// statement per section, both sent in one batch.
func (s *Store) ReportDemographics(ctx context.Context, q DemographicsQuery) (DemographicsReport, error) {
	var rep DemographicsReport
	b := &pgx.Batch{}
	if q.Source == "" || q.Source == string(event.Facebook) {
		fb := &FacebookDemographics{ByGender: []Group{}, ByAgeGroup: []Group{}, TopCountries: []Group{}, TopCities: []CityGroup{}}
		rep.Facebook = fb
		f := rangeFilter(q.TimeRange)
		f.equal("source", string(event.Facebook))
		where := f.where()
		sql := fmt.Sprintf(facebookSQL, where, f.arg(q.Limit))
		b.Queue(sql, f.args...).Query(func(rows pgx.Rows) error {
			return scanFacebook(rows, fb)
		})
	}
	if q.Source == "" || q.Source == string(event.TikTok) {
		tt := &TikTokDemographics{ByFollowerTier: []Group{}, ByDevice: []Group{}, TopCountries: []Group{}}
		rep.TikTok = tt
		f := rangeFilter(q.TimeRange)
		f.equal("source", string(event.TikTok))
		where := f.where()
		sql := fmt.Sprintf(tiktokSQL, where, f.arg(q.Limit))
		b.Queue(sql, f.args...).Query(func(rows pgx.Rows) error {
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

// filter builds a WHERE clause from fixed SQL conditions and bind
// parameters.
type filter struct {
	conds []string
	args  []any
}

// rangeFilter starts a filter on occurred_at, the column the indexes lead
// with or end on.
func rangeFilter(r TimeRange) *filter {
	f := &filter{}
	if !r.From.IsZero() {
		f.and("occurred_at >= " + f.arg(r.From))
	}
	if !r.To.IsZero() {
		f.and("occurred_at < " + f.arg(r.To))
	}
	return f
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

// where returns the clause with a leading space, or "" without conditions.
func (f *filter) where() string {
	if len(f.conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(f.conds, " AND ")
}
