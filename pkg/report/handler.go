package report

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/eventpipe/eventpipe/pkg/httpserver"
	"github.com/eventpipe/eventpipe/pkg/store"
)

// reports is what the handlers need from the database; *store.Store
// implements it.
type reports interface {
	ReportEvents(ctx context.Context, q store.EventsQuery) (store.EventsReport, error)
	ReportRevenue(ctx context.Context, q store.RevenueQuery) (store.RevenueReport, error)
	ReportDemographics(ctx context.Context, q store.DemographicsQuery) (store.DemographicsReport, error)
}

// Error codes of the reporter's error responses, also the code label of
// reporter_report_errors_total.
const (
	codeInvalidParameter = "invalid_parameter"
	codeTimeout          = "timeout"
	codeUnavailable      = "unavailable"
	codeInternal         = "internal"
	codeCanceled         = "canceled"
)

// statusClientClosed answers a request whose client went away before its
// report was ready (nginx's convention). Nobody reads it; it keeps such
// requests out of the 5xx counts and error logs.
const statusClientClosed = 499

type handler struct {
	reports      reports
	metrics      *metrics
	queryTimeout time.Duration
}

func (h *handler) register(e *gin.Engine) {
	e.GET("/reports/events", serve(h, reportEvents, parseEventsQuery, h.reports.ReportEvents, renderEvents))
	e.GET("/reports/revenue", serve(h, reportRevenue, parseRevenueQuery, h.reports.ReportRevenue, renderRevenue))
	e.GET("/reports/demographics", serve(h, reportDemographics, parseDemographicsQuery, h.reports.ReportDemographics, renderDemographics))
}

// serve builds the handler of one report: parse the query string, run the
// report under the query timeout, render it. render returns the body and
// the number of list rows in it, for the request's log line.
func serve[Q, R any](
	h *handler,
	name string,
	parse func(rawQuery string) (Q, error),
	run func(context.Context, Q) (R, error),
	render func(Q, R) (any, int),
) gin.HandlerFunc {
	return func(c *gin.Context) {
		httpserver.AddLogAttrs(c, "report", name)
		q, err := parse(c.Request.URL.RawQuery)
		if err != nil {
			h.badRequest(c, name, err)
			return
		}
		ctx, cancel := context.WithTimeout(c.Request.Context(), h.queryTimeout)
		defer cancel()
		start := time.Now()
		res, err := run(ctx, q)
		h.metrics.duration.WithLabelValues(name).Observe(time.Since(start).Seconds())
		if err != nil {
			h.fail(ctx, c, name, err)
			return
		}
		body, rows := render(q, res)
		h.metrics.generated.WithLabelValues(name).Inc()
		httpserver.AddLogAttrs(c, "rows", rows)
		c.JSON(http.StatusOK, body)
	}
}

func (h *handler) badRequest(c *gin.Context, name string, err error) {
	detail := httpserver.ErrorDetail{Code: codeInvalidParameter, Message: err.Error()}
	var pe *paramError
	if errors.As(err, &pe) {
		detail.Parameter, detail.Message = pe.param, pe.message
	}
	h.metrics.errors.WithLabelValues(name, codeInvalidParameter).Inc()
	httpserver.AddLogAttrs(c, "parameter", detail.Parameter)
	c.AbortWithStatusJSON(http.StatusBadRequest, httpserver.ErrorBody{Error: detail})
}

// fail answers a report that could not be generated. The cause goes to
// the request's log line (at error level for 5xx, with its correlation
// id), never to the client.
func (h *handler) fail(ctx context.Context, c *gin.Context, name string, err error) {
	var (
		status        int
		code, message string
		connectErr    *pgconn.ConnectError
	)
	switch {
	case c.Request.Context().Err() != nil:
		status, code, message = statusClientClosed, codeCanceled, "request canceled by the client"
	case errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded):
		status, code = http.StatusGatewayTimeout, codeTimeout
		message = fmt.Sprintf("the report took longer than %s; narrow the time range", h.queryTimeout)
	case errors.As(err, &connectErr):
		status, code, message = http.StatusServiceUnavailable, codeUnavailable, "database unavailable; retry later"
		c.Header("Retry-After", "5")
	default:
		status, code, message = http.StatusInternalServerError, codeInternal, "internal error"
	}
	h.metrics.errors.WithLabelValues(name, code).Inc()
	httpserver.AddLogAttrs(c, "error", err.Error())
	httpserver.Error(c, status, code, message)
}

// The response bodies of api.md "Reports". Pointers render as null when
// absent: the contract shows every filter and bound, set or not.

type eventsResponse struct {
	From      *string        `json:"from"`
	To        *string        `json:"to"`
	Filters   eventsFilters  `json:"filters"`
	Total     int64          `json:"total"`
	Breakdown []breakdownRow `json:"breakdown"`
	// Series is absent without an interval and [] with one that matched
	// nothing.
	Series *[]seriesPoint `json:"series,omitempty"`
}

type eventsFilters struct {
	Source      *string `json:"source"`
	FunnelStage *string `json:"funnelStage"`
	EventType   *string `json:"eventType"`
}

type breakdownRow struct {
	Source      string `json:"source"`
	FunnelStage string `json:"funnelStage"`
	EventType   string `json:"eventType"`
	Count       int64  `json:"count"`
}

type seriesPoint struct {
	Start string `json:"start"`
	Count int64  `json:"count"`
}

func renderEvents(q store.EventsQuery, r store.EventsReport) (any, int) {
	from, to := bounds(q.TimeRange)
	resp := eventsResponse{
		From: from,
		To:   to,
		Filters: eventsFilters{
			Source:      optional(q.Source),
			FunnelStage: optional(q.FunnelStage),
			EventType:   optional(q.EventType),
		},
		Total:     r.Total,
		Breakdown: make([]breakdownRow, len(r.Breakdown)),
	}
	for i, b := range r.Breakdown {
		resp.Breakdown[i] = breakdownRow{Source: b.Source, FunnelStage: b.FunnelStage, EventType: b.EventType, Count: b.Count}
	}
	rows := len(resp.Breakdown)
	if q.Interval != "" {
		series := make([]seriesPoint, len(r.Series))
		for i, b := range r.Series {
			series[i] = seriesPoint{Start: formatTime(b.Start), Count: b.Count}
		}
		resp.Series = &series
		rows += len(series)
	}
	return resp, rows
}

type revenueResponse struct {
	From       *string           `json:"from"`
	To         *string           `json:"to"`
	Filters    revenueFilters    `json:"filters"`
	Total      revenueTotal      `json:"total"`
	BySource   []sourceRevenue   `json:"bySource"`
	ByCampaign []campaignRevenue `json:"byCampaign"`
}

type revenueFilters struct {
	Source     *string `json:"source"`
	CampaignID *string `json:"campaignId"`
}

// Revenue amounts are decimal strings computed in SQL: money never passes
// through a float.
type revenueTotal struct {
	Revenue      string `json:"revenue"`
	Transactions int64  `json:"transactions"`
}

type sourceRevenue struct {
	Source       string `json:"source"`
	Revenue      string `json:"revenue"`
	Transactions int64  `json:"transactions"`
}

type campaignRevenue struct {
	CampaignID   string `json:"campaignId"`
	Revenue      string `json:"revenue"`
	Transactions int64  `json:"transactions"`
}

func renderRevenue(q store.RevenueQuery, r store.RevenueReport) (any, int) {
	from, to := bounds(q.TimeRange)
	resp := revenueResponse{
		From:       from,
		To:         to,
		Filters:    revenueFilters{Source: optional(q.Source), CampaignID: optional(q.CampaignID)},
		Total:      revenueTotal{Revenue: r.Total.Amount, Transactions: r.Total.Transactions},
		BySource:   make([]sourceRevenue, len(r.BySource)),
		ByCampaign: make([]campaignRevenue, len(r.ByCampaign)),
	}
	for i, s := range r.BySource {
		resp.BySource[i] = sourceRevenue{Source: s.Source, Revenue: s.Amount, Transactions: s.Transactions}
	}
	for i, c := range r.ByCampaign {
		resp.ByCampaign[i] = campaignRevenue{CampaignID: c.CampaignID, Revenue: c.Amount, Transactions: c.Transactions}
	}
	return resp, len(resp.BySource) + len(resp.ByCampaign)
}

type demographicsResponse struct {
	From    *string             `json:"from"`
	To      *string             `json:"to"`
	Filters demographicsFilters `json:"filters"`
	// A section is absent when the source filter excludes it.
	Facebook *facebookSection `json:"facebook,omitempty"`
	TikTok   *tiktokSection   `json:"tiktok,omitempty"`
}

type demographicsFilters struct {
	Source *string `json:"source"`
}

type facebookSection struct {
	Users        int64         `json:"users"`
	Events       int64         `json:"events"`
	ByGender     []genderGroup `json:"byGender"`
	ByAgeGroup   []ageGroup    `json:"byAgeGroup"`
	TopCountries []countryRow  `json:"topCountries"`
	TopCities    []cityRow     `json:"topCities"`
}

type tiktokSection struct {
	Users          int64         `json:"users"`
	Events         int64         `json:"events"`
	Followers      followerStats `json:"followers"`
	ByFollowerTier []tierGroup   `json:"byFollowerTier"`
	ByDevice       []deviceGroup `json:"byDevice"`
	TopCountries   []countryRow  `json:"topCountries"`
}

// followerStats are null, each of them, when there are no tiktok events:
// no minimum exists, and 0 would claim one.
type followerStats struct {
	Min *int64   `json:"min"`
	Max *int64   `json:"max"`
	Avg *float64 `json:"avg"`
}

type genderGroup struct {
	Gender string `json:"gender"`
	Users  int64  `json:"users"`
	Events int64  `json:"events"`
}

type ageGroup struct {
	AgeGroup string `json:"ageGroup"`
	Users    int64  `json:"users"`
	Events   int64  `json:"events"`
}

type countryRow struct {
	Country string `json:"country"`
	Users   int64  `json:"users"`
	Events  int64  `json:"events"`
}

type cityRow struct {
	Country string `json:"country"`
	City    string `json:"city"`
	Users   int64  `json:"users"`
	Events  int64  `json:"events"`
}

type tierGroup struct {
	Tier   string `json:"tier"`
	Users  int64  `json:"users"`
	Events int64  `json:"events"`
}

type deviceGroup struct {
	Device string `json:"device"`
	Users  int64  `json:"users"`
	Events int64  `json:"events"`
}

func renderDemographics(q store.DemographicsQuery, r store.DemographicsReport) (any, int) {
	from, to := bounds(q.TimeRange)
	resp := demographicsResponse{From: from, To: to, Filters: demographicsFilters{Source: optional(q.Source)}}
	rows := 0
	if fb := r.Facebook; fb != nil {
		s := &facebookSection{
			Users:        fb.Users,
			Events:       fb.Events,
			ByGender:     groups(fb.ByGender, func(g store.Group) genderGroup { return genderGroup{g.Name, g.Users, g.Events} }),
			ByAgeGroup:   groups(fb.ByAgeGroup, func(g store.Group) ageGroup { return ageGroup{g.Name, g.Users, g.Events} }),
			TopCountries: groups(fb.TopCountries, func(g store.Group) countryRow { return countryRow{g.Name, g.Users, g.Events} }),
			TopCities: groups(fb.TopCities, func(g store.CityGroup) cityRow {
				return cityRow{g.Country, g.City, g.Users, g.Events}
			}),
		}
		rows += len(s.ByGender) + len(s.ByAgeGroup) + len(s.TopCountries) + len(s.TopCities)
		resp.Facebook = s
	}
	if tt := r.TikTok; tt != nil {
		s := &tiktokSection{
			Users:          tt.Users,
			Events:         tt.Events,
			Followers:      followerStats{Min: tt.Followers.Min, Max: tt.Followers.Max, Avg: tt.Followers.Avg},
			ByFollowerTier: groups(tt.ByFollowerTier, func(g store.Group) tierGroup { return tierGroup{g.Name, g.Users, g.Events} }),
			ByDevice:       groups(tt.ByDevice, func(g store.Group) deviceGroup { return deviceGroup{g.Name, g.Users, g.Events} }),
			TopCountries:   groups(tt.TopCountries, func(g store.Group) countryRow { return countryRow{g.Name, g.Users, g.Events} }),
		}
		rows += len(s.ByFollowerTier) + len(s.ByDevice) + len(s.TopCountries)
		resp.TikTok = s
	}
	return resp, rows
}

// groups converts a list, never returning nil: an empty list renders as
// [], not null.
func groups[G, T any](in []G, conv func(G) T) []T {
	out := make([]T, len(in))
	for i, g := range in {
		out[i] = conv(g)
	}
	return out
}

// bounds echoes a range's effective bounds, nil (null) when open.
func bounds(r store.TimeRange) (from, to *string) {
	if !r.From.IsZero() {
		from = optional(formatTime(r.From))
	}
	if !r.To.IsZero() {
		to = optional(formatTime(r.To))
	}
	return from, to
}

// optional returns nil for "" (rendered null) and &s otherwise.
func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
