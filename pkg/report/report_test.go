package report

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eventpipe/eventpipe/pkg/event"
	"github.com/eventpipe/eventpipe/pkg/pgtest"
)

// The expectations below are computed in Go from the very events inserted,
// with no help from the reporter's code: filters, bucketing, ordering and
// money are all redone here.

func inRange(ts time.Time, from, to time.Time) bool {
	return (from.IsZero() || !ts.Before(from)) && (to.IsZero() || ts.Before(to))
}

func bucketStart(ts time.Time, interval string) time.Time {
	ts = ts.UTC()
	switch interval {
	case "minute":
		return time.Date(ts.Year(), ts.Month(), ts.Day(), ts.Hour(), ts.Minute(), 0, 0, time.UTC)
	case "hour":
		return time.Date(ts.Year(), ts.Month(), ts.Day(), ts.Hour(), 0, 0, 0, time.UTC)
	default:
		return time.Date(ts.Year(), ts.Month(), ts.Day(), 0, 0, 0, 0, time.UTC)
	}
}

type eventsCase struct {
	name, query string
	// from and to are the bounds the report must echo, "" for null.
	from, to                                 string
	source, funnelStage, eventType, interval string
}

func wantEvents(events []event.Event, c eventsCase) map[string]any {
	type key struct{ source, stage, eventType string }
	from, to := at(c.from), at(c.to)
	counts := map[key]int64{}
	series := map[time.Time]int64{}
	var total int64
	for i := range events {
		e := &events[i]
		if !inRange(e.Timestamp, from, to) ||
			(c.source != "" && string(e.Source) != c.source) ||
			(c.funnelStage != "" && string(e.FunnelStage) != c.funnelStage) ||
			(c.eventType != "" && e.Type != c.eventType) {
			continue
		}
		counts[key{string(e.Source), string(e.FunnelStage), e.Type}]++
		total++
		if c.interval != "" {
			series[bucketStart(e.Timestamp, c.interval)]++
		}
	}
	// The funnel's order: top, then bottom.
	stageOrder := map[string]int{"top": 0, "bottom": 1}
	breakdown := []any{}
	for _, k := range sortedKeys(counts, func(a, b key) int {
		return cmp.Or(strings.Compare(a.source, b.source), cmp.Compare(stageOrder[a.stage], stageOrder[b.stage]),
			strings.Compare(a.eventType, b.eventType))
	}) {
		breakdown = append(breakdown, map[string]any{
			"source": k.source, "funnelStage": k.stage, "eventType": k.eventType, "count": counts[k],
		})
	}
	body := map[string]any{
		"from": nullable(c.from), "to": nullable(c.to),
		"filters": map[string]any{
			"source": nullable(c.source), "funnelStage": nullable(c.funnelStage), "eventType": nullable(c.eventType),
		},
		"total":     total,
		"breakdown": breakdown,
	}
	if c.interval != "" {
		points := []any{}
		for _, start := range sortedKeys(series, time.Time.Compare) {
			points = append(points, map[string]any{"start": start.Format(time.RFC3339), "count": series[start]})
		}
		body["series"] = points
	}
	return body
}

type revenueCase struct {
	name, query, from, to, source, campaignID string
	limit                                     int
}

// cents reads a decimal amount with at most two decimals as an integer
// number of cents.
func cents(t testing.TB, s string) int64 {
	t.Helper()
	whole, frac, _ := strings.Cut(s, ".")
	if len(frac) > 2 {
		t.Fatalf("amount %q has more than two decimals", s)
	}
	frac += strings.Repeat("0", 2-len(frac))
	w, err1 := strconv.ParseInt(whole, 10, 64)
	f, err2 := strconv.ParseInt(frac, 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("amount %q is not a decimal", s)
	}
	return w*100 + f
}

func formatCents(c int64) string { return fmt.Sprintf("%d.%02d", c/100, c%100) }

type money struct{ cents, transactions int64 }

func (m money) json(key, name string) map[string]any {
	row := map[string]any{"revenue": formatCents(m.cents), "transactions": m.transactions}
	if key != "" {
		row[key] = name
	}
	return row
}

func wantRevenue(t testing.TB, events []event.Event, c revenueCase) map[string]any {
	from, to := at(c.from), at(c.to)
	var total money
	bySource := map[string]money{}
	byCampaign := map[string]money{}
	for i := range events {
		e := &events[i]
		g := e.Engagement
		transactional := (e.Source == event.Facebook && e.Type == "checkout.complete") ||
			(e.Source == event.TikTok && e.Type == "purchase")
		if !transactional || g.PurchaseAmount == nil || !inRange(e.Timestamp, from, to) ||
			(c.source != "" && string(e.Source) != c.source) ||
			(c.campaignID != "" && g.CampaignID != c.campaignID) {
			continue
		}
		amount := cents(t, *g.PurchaseAmount)
		add := func(m money) money { return money{m.cents + amount, m.transactions + 1} }
		total = add(total)
		bySource[string(e.Source)] = add(bySource[string(e.Source)])
		if e.Source == event.Facebook && g.CampaignID != "" {
			byCampaign[g.CampaignID] = add(byCampaign[g.CampaignID])
		}
	}
	sources := []any{}
	for _, s := range []string{"facebook", "tiktok"} {
		if (c.source != "" && s != c.source) || (c.campaignID != "" && s != "facebook") {
			continue
		}
		sources = append(sources, bySource[s].json("source", s))
	}
	campaigns := []any{}
	for _, id := range sortedKeys(byCampaign, func(a, b string) int {
		return cmp.Or(cmp.Compare(byCampaign[b].cents, byCampaign[a].cents), strings.Compare(a, b))
	}) {
		if len(campaigns) == c.limit {
			break
		}
		campaigns = append(campaigns, byCampaign[id].json("campaignId", id))
	}
	return map[string]any{
		"from": nullable(c.from), "to": nullable(c.to),
		"filters":    map[string]any{"source": nullable(c.source), "campaignId": nullable(c.campaignID)},
		"total":      total.json("", ""),
		"bySource":   sources,
		"byCampaign": campaigns,
	}
}

type demographicsCase struct {
	name, query, from, to, source string
	limit                         int
}

// group collects one bucket of a demographics list.
type group struct {
	users  map[string]bool
	events int64
}

func (g *group) add(user string) {
	if g.users == nil {
		g.users = map[string]bool{}
	}
	g.users[user] = true
	g.events++
}

type bucketSet map[string]*group

func (gs bucketSet) add(name, user string) {
	if gs[name] == nil {
		gs[name] = &group{}
	}
	gs[name].add(user)
}

// list renders the buckets in the natural order given, or else by users
// descending then name, capped at limit (0: no cap). name splits a key into
// its JSON fields.
func (gs bucketSet) list(natural []string, limit int, name func(key string) map[string]any) []any {
	order := func(a, b string) int {
		if natural != nil {
			return cmp.Compare(indexOf(natural, a), indexOf(natural, b))
		}
		return cmp.Or(cmp.Compare(len(gs[b].users), len(gs[a].users)), strings.Compare(a, b))
	}
	out := []any{}
	for _, k := range sortedKeys(gs, order) {
		if limit > 0 && len(out) == limit {
			break
		}
		row := name(k)
		row["users"], row["events"] = len(gs[k].users), gs[k].events
		out = append(out, row)
	}
	return out
}

func indexOf(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return len(list)
}

func field(name string) func(string) map[string]any {
	return func(key string) map[string]any { return map[string]any{name: key} }
}

func ageGroupOf(age int) string {
	switch {
	case age < 18:
		return "under-18"
	case age <= 24:
		return "18-24"
	case age <= 34:
		return "25-34"
	case age <= 44:
		return "35-44"
	case age <= 54:
		return "45-54"
	case age <= 64:
		return "55-64"
	default:
		return "65+"
	}
}

func tierOf(followers int64) string {
	switch {
	case followers < 1_000:
		return "<1k"
	case followers < 10_000:
		return "1k-10k"
	case followers < 100_000:
		return "10k-100k"
	case followers < 1_000_000:
		return "100k-1M"
	default:
		return "1M+"
	}
}

func wantDemographics(events []event.Event, c demographicsCase) map[string]any {
	from, to := at(c.from), at(c.to)
	fbAll, ttAll := &group{}, &group{}
	gender, age, fbCountry, city := bucketSet{}, bucketSet{}, bucketSet{}, bucketSet{}
	tier, device, ttCountry := bucketSet{}, bucketSet{}, bucketSet{}
	var fMin, fMax, fSum int64
	for i := range events {
		e := &events[i]
		if !inRange(e.Timestamp, from, to) {
			continue
		}
		u := e.User
		switch e.Source {
		case event.Facebook:
			fbAll.add(u.ID)
			gender.add(u.Gender, u.ID)
			age.add(ageGroupOf(u.Age), u.ID)
			fbCountry.add(u.Country, u.ID)
			// A NUL byte cannot occur in these names, so it splits the key.
			city.add(u.Country+"\x00"+u.City, u.ID)
		case event.TikTok:
			if ttAll.events == 0 || u.Followers < fMin {
				fMin = u.Followers
			}
			if ttAll.events == 0 || u.Followers > fMax {
				fMax = u.Followers
			}
			fSum += u.Followers
			ttAll.add(u.ID)
			tier.add(tierOf(u.Followers), u.ID)
			if e.FunnelStage == event.Top {
				device.add(e.Engagement.Device, u.ID)
				ttCountry.add(e.Engagement.Country, u.ID)
			}
		}
	}
	body := map[string]any{
		"from": nullable(c.from), "to": nullable(c.to),
		"filters": map[string]any{"source": nullable(c.source)},
	}
	if c.source == "" || c.source == "facebook" {
		body["facebook"] = map[string]any{
			"users": len(fbAll.users), "events": fbAll.events,
			"byGender":     gender.list(nil, 0, field("gender")),
			"byAgeGroup":   age.list([]string{"under-18", "18-24", "25-34", "35-44", "45-54", "55-64", "65+"}, 0, field("ageGroup")),
			"topCountries": fbCountry.list(nil, c.limit, field("country")),
			"topCities": city.list(nil, c.limit, func(key string) map[string]any {
				country, name, _ := strings.Cut(key, "\x00")
				return map[string]any{"country": country, "city": name}
			}),
		}
	}
	if c.source == "" || c.source == "tiktok" {
		followers := map[string]any{"min": nil, "max": nil, "avg": nil}
		if n := ttAll.events; n > 0 {
			// The average rounded half up to two decimals, in integers.
			q, r := fSum*100/n, fSum*100%n
			if 2*r >= n {
				q++
			}
			followers = map[string]any{"min": fMin, "max": fMax, "avg": float64(q) / 100}
		}
		body["tiktok"] = map[string]any{
			"users": len(ttAll.users), "events": ttAll.events,
			"followers":      followers,
			"byFollowerTier": tier.list([]string{"<1k", "1k-10k", "10k-100k", "100k-1M", "1M+"}, 0, field("tier")),
			"byDevice":       device.list(nil, 0, field("device")),
			"topCountries":   ttCountry.list(nil, c.limit, field("country")),
		}
	}
	return body
}

// getReport fetches a report with a correlation id and checks the parts of
// the answer every report shares.
func getReport(t *testing.T, r *reporter, path, query string) []byte {
	t.Helper()
	id := "corr-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	resp := get(t, r.url+path+"?"+query, "X-Correlation-ID", id)
	if resp.status != http.StatusOK {
		t.Fatalf("GET %s?%s: got status %d; want 200: %s", path, query, resp.status, resp.body)
	}
	if got := resp.header.Get("X-Correlation-ID"); got != id {
		t.Fatalf("got X-Correlation-ID %q; want %q", got, id)
	}
	if ct := resp.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("got Content-Type %q; want application/json", ct)
	}
	return resp.body
}

// TestReports checks every report, with and without each filter, against
// totals computed in Go from the same events.
func TestReports(t *testing.T) {
	dbURL := pgtest.Migrated(t)
	events := dataset()
	insertEvents(t, dbURL, events)
	r := startReporter(t, dbURL)

	t.Run("events", func(t *testing.T) {
		cases := []eventsCase{
			{name: "all"},
			{name: "facebook", query: "source=facebook", source: "facebook"},
			{name: "tiktok", query: "source=tiktok", source: "tiktok"},
			{name: "top", query: "funnelStage=top", funnelStage: "top"},
			{name: "bottom", query: "funnelStage=bottom", funnelStage: "bottom"},
			{name: "comment of both sources", query: "eventType=comment", eventType: "comment"},
			{name: "ad.view", query: "eventType=ad.view", eventType: "ad.view"},
			{name: "all filters", query: "source=tiktok&funnelStage=bottom&eventType=purchase",
				source: "tiktok", funnelStage: "bottom", eventType: "purchase"},
			{name: "type of another source", query: "source=tiktok&eventType=ad.view", source: "tiktok", eventType: "ad.view"},
			{name: "type of another stage", query: "funnelStage=top&eventType=purchase", funnelStage: "top", eventType: "purchase"},
			{name: "one day by date", query: "from=2025-06-11&to=2025-06-11",
				from: "2025-06-11T00:00:00Z", to: "2025-06-12T00:00:00Z"},
			{name: "until a date", query: "to=2025-06-10", to: "2025-06-11T00:00:00Z"},
			{name: "from midnight", query: "from=2025-06-11T00:00:00Z", from: "2025-06-11T00:00:00Z"},
			{name: "offset and milliseconds", query: "from=2025-06-10T14:00:00%2B02:00&to=2025-06-10T18:01:44.759Z",
				from: "2025-06-10T12:00:00Z", to: "2025-06-10T18:01:44.759Z"},
			{name: "empty range", query: "from=2025-06-11T00:00:00Z&to=2025-06-11T00:00:00Z&interval=hour",
				from: "2025-06-11T00:00:00Z", to: "2025-06-11T00:00:00Z", interval: "hour"},
			{name: "future", query: "from=2030-01-01&interval=day", from: "2030-01-01T00:00:00Z", interval: "day"},
			{name: "hourly", query: "interval=hour", interval: "hour"},
			{name: "daily", query: "interval=day", interval: "day"},
			{name: "daily facebook bottom", query: "source=facebook&funnelStage=bottom&interval=day",
				source: "facebook", funnelStage: "bottom", interval: "day"},
			{name: "by minute over one day", query: "from=2025-06-11&to=2025-06-11&interval=minute",
				from: "2025-06-11T00:00:00Z", to: "2025-06-12T00:00:00Z", interval: "minute"},
			{name: "hourly tiktok one day", query: "from=2025-06-12&to=2025-06-12&source=tiktok&interval=hour",
				from: "2025-06-12T00:00:00Z", to: "2025-06-13T00:00:00Z", source: "tiktok", interval: "hour"},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				assertJSON(t, getReport(t, r, "/reports/events", c.query), wantEvents(events, c))
			})
		}
	})

	t.Run("events are all counted", func(t *testing.T) {
		// Guards the comparisons above against agreeing on nothing.
		var body struct {
			Total     int64
			Breakdown []json.RawMessage
			Series    []json.RawMessage
		}
		if err := json.Unmarshal(getReport(t, r, "/reports/events", "interval=day"), &body); err != nil {
			t.Fatal(err)
		}
		if body.Total != int64(len(events)) || len(body.Breakdown) != 14 || len(body.Series) != 3 {
			t.Fatalf("got total %d, %d breakdown rows, %d days; want %d, 14, 3",
				body.Total, len(body.Breakdown), len(body.Series), len(events))
		}
	})

	// A campaign of the generated traffic, to filter on.
	var generatedCampaign string
	for _, e := range events {
		if e.Type == "checkout.complete" && strings.HasPrefix(e.ID, "fb-") && !strings.HasPrefix(e.ID, "fb-edge") {
			generatedCampaign = e.Engagement.CampaignID
			break
		}
	}

	t.Run("revenue", func(t *testing.T) {
		cases := []revenueCase{
			{name: "all", limit: 10},
			{name: "facebook", query: "source=facebook", source: "facebook", limit: 10},
			{name: "tiktok", query: "source=tiktok", source: "tiktok", limit: 10},
			{name: "sample campaign", query: "campaignId=camp-Mn15k", campaignID: "camp-Mn15k", limit: 10},
			{name: "generated campaign", query: "campaignId=" + generatedCampaign, campaignID: generatedCampaign, limit: 10},
			{name: "unknown campaign", query: "campaignId=camp-none", campaignID: "camp-none", limit: 10},
			{name: "campaign with tiktok", query: "source=tiktok&campaignId=camp-Mn15k", source: "tiktok", campaignID: "camp-Mn15k", limit: 10},
			{name: "limit 1", query: "limit=1", limit: 1},
			{name: "limit 1000", query: "limit=1000", limit: 1000},
			{name: "one day", query: "from=2025-06-10&to=2025-06-10", from: "2025-06-10T00:00:00Z", to: "2025-06-11T00:00:00Z", limit: 10},
			{name: "range, source and limit", query: "from=2025-06-11T00:00:00Z&to=2025-06-12T12:00:00Z&source=facebook&limit=5",
				from: "2025-06-11T00:00:00Z", to: "2025-06-12T12:00:00Z", source: "facebook", limit: 5},
			{name: "future", query: "from=2030-01-01", from: "2030-01-01T00:00:00Z", limit: 10},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				assertJSON(t, getReport(t, r, "/reports/revenue", c.query), wantRevenue(t, events, c))
			})
		}
	})

	t.Run("revenue edge cases", func(t *testing.T) {
		// Literal figures, so the Go computation is checked too.
		assertJSON(t, getReport(t, r, "/reports/revenue", "campaignId=camp-Mn15k"), map[string]any{
			"from": nil, "to": nil,
			"filters":    map[string]any{"source": nil, "campaignId": "camp-Mn15k"},
			"total":      map[string]any{"revenue": "414.29", "transactions": 1},
			"bySource":   []any{map[string]any{"source": "facebook", "revenue": "414.29", "transactions": 1}},
			"byCampaign": []any{map[string]any{"campaignId": "camp-Mn15k", "revenue": "414.29", "transactions": 1}},
		})
		assertJSON(t, getReport(t, r, "/reports/revenue", "limit=2&source=facebook&from=2025-06-11&to=2025-06-11"), map[string]any{
			"from": "2025-06-11T00:00:00Z", "to": "2025-06-12T00:00:00Z",
			"filters":  map[string]any{"source": "facebook", "campaignId": nil},
			"total":    wantRevenue(t, events, revenueCase{from: "2025-06-11T00:00:00Z", to: "2025-06-12T00:00:00Z", source: "facebook"})["total"],
			"bySource": wantRevenue(t, events, revenueCase{from: "2025-06-11T00:00:00Z", to: "2025-06-12T00:00:00Z", source: "facebook"})["bySource"],
			"byCampaign": []any{
				map[string]any{"campaignId": "camp-tie-a", "revenue": "50000.00", "transactions": 1},
				map[string]any{"campaignId": "camp-tie-b", "revenue": "50000.00", "transactions": 1},
			},
		})
	})

	t.Run("demographics", func(t *testing.T) {
		cases := []demographicsCase{
			{name: "all", limit: 10},
			{name: "facebook", query: "source=facebook", source: "facebook", limit: 10},
			{name: "tiktok", query: "source=tiktok", source: "tiktok", limit: 10},
			{name: "limit 3", query: "limit=3", limit: 3},
			{name: "limit 1000", query: "limit=1000", limit: 1000},
			{name: "one day", query: "from=2025-06-12&to=2025-06-12", from: "2025-06-12T00:00:00Z", to: "2025-06-13T00:00:00Z", limit: 10},
			{name: "future", query: "from=2030-01-01", from: "2030-01-01T00:00:00Z", limit: 10},
			{name: "future tiktok", query: "from=2030-01-01&source=tiktok", from: "2030-01-01T00:00:00Z", source: "tiktok", limit: 10},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				assertJSON(t, getReport(t, r, "/reports/demographics", c.query), wantDemographics(events, c))
			})
		}
	})

	t.Run("demographics edge cases", func(t *testing.T) {
		var body struct {
			Facebook struct {
				Users      int64
				ByAgeGroup []struct {
					AgeGroup      string
					Users, Events int64
				}
				TopCountries []struct {
					Country       string
					Users, Events int64
				}
			}
			TikTok struct {
				ByFollowerTier []struct {
					Tier          string
					Users, Events int64
				}
			}
		}
		if err := json.Unmarshal(getReport(t, r, "/reports/demographics", "limit=1000"), &body); err != nil {
			t.Fatal(err)
		}
		if a := body.Facebook.ByAgeGroup; len(a) != 7 || a[0].AgeGroup != "under-18" || a[0].Users != 1 || a[6].AgeGroup != "65+" {
			t.Fatalf("got age groups %+v; want 7 of them, under-18 first with the one 17-year-old, 65+ last", a)
		}
		if tiers := body.TikTok.ByFollowerTier; len(tiers) != 5 || tiers[4].Tier != "1M+" || tiers[4].Users < 1 {
			t.Fatalf("got tiers %+v; want all 5, 1M+ holding the user with exactly 1,000,000 followers", tiers)
		}
		// Users counted in every country they appear in add up to more
		// than the distinct users.
		var countryUsers int64
		for _, c := range body.Facebook.TopCountries {
			countryUsers += c.Users
		}
		if countryUsers != body.Facebook.Users+1 {
			t.Fatalf("got %d users over countries and %d in all; want one more over countries (the nomad)",
				countryUsers, body.Facebook.Users)
		}
	})
}
