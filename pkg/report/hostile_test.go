package report

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/eventpipe/eventpipe/pkg/pgtest"
)

// hostileCampaign is a stored campaignId made of SQL and LIKE
// metacharacters: only an exact match may find it.
const hostileCampaign = `50%_off\'"; DROP TABLE events; --`

// eventsRows returns how many rows the events table holds; it fails the
// test if the table is gone.
func eventsRows(t *testing.T, databaseURL string) int64 {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, databaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int64
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM events").Scan(&n); err != nil {
		t.Fatalf("count events: %v", err)
	}
	return n
}

func TestHostileParameters(t *testing.T) {
	dbURL := pgtest.Migrated(t)
	hostile := withAmount(facebookEvent("fb-hostile-1", day0().Add(90*time.Minute), "checkout.complete",
		fbUser("u-hostile-1", 30, "female", "Ukraine", "Kyiv")), "10.00", hostileCampaign)
	insertEvents(t, dbURL, append(dataset(), hostile))
	rows := eventsRows(t, dbURL)
	r := startReporter(t, dbURL)

	const (
		drop     = `'; DROP TABLE events; --`
		tooLarge = "(431)"
	)
	q := url.QueryEscape
	tests := []struct {
		name, path, query string
		// param is the parameter a 400 names; "" means 200, tooLarge 431.
		param string
		// transactions is the revenue total expected of a 200 from
		// /reports/revenue.
		transactions int
	}{
		{"campaignId with a statement", "/reports/revenue", "campaignId=" + q(drop), "", 0},
		{"campaignId percent", "/reports/revenue", "campaignId=" + q("%"), "", 0},
		{"campaignId underscore", "/reports/revenue", "campaignId=" + q("_"), "", 0},
		{"campaignId prefix and percent", "/reports/revenue", "campaignId=" + q("50%"), "", 0},
		{"campaignId LIKE pattern of the stored one", "/reports/revenue", "campaignId=" + q(`50_\_off%`), "", 0},
		{"campaignId backslash", "/reports/revenue", "campaignId=" + q(`\`), "", 0},
		{"campaignId quotes", "/reports/revenue", "campaignId=" + q(`'"`+"`"), "", 0},
		{"campaignId unicode", "/reports/revenue", "campaignId=" + q("кампанія-😀-ﬁ"), "", 0},
		{"campaignId metacharacters, exact", "/reports/revenue", "campaignId=" + q(hostileCampaign), "", 1},
		{"campaignId NUL", "/reports/revenue", "campaignId=a%00b", "campaignId", 0},
		{"campaignId invalid UTF-8", "/reports/revenue", "campaignId=%ff%fe", "campaignId", 0},
		{"campaignId broken escape", "/reports/revenue", "campaignId=%zz", "campaignId", 0},
		{"campaignId 257 characters", "/reports/revenue", "campaignId=" + strings.Repeat("é", 257), "campaignId", 0},
		{"campaignId 60,000 bytes", "/reports/revenue", "campaignId=" + strings.Repeat("x", 60000), "campaignId", 0},
		// Past the server's 64 KiB header limit net/http answers before
		// the handler sees the request.
		{"campaignId 100,000 bytes", "/reports/revenue", "campaignId=" + strings.Repeat("x", 100000), tooLarge, 0},
		{"eventType with a statement", "/reports/events", "eventType=" + q(drop), "eventType", 0},
		{"eventType percent", "/reports/events", "eventType=" + q("%"), "eventType", 0},
		{"eventType unicode", "/reports/events", "eventType=" + q("ad.vіew"), "eventType", 0},
		{"source with a statement", "/reports/demographics", "source=" + q(drop), "source", 0},
		{"source underscore", "/reports/events", "source=" + q("_"), "source", 0},
		{"source backslash", "/reports/revenue", "source=" + q(`facebook\`), "source", 0},
		{"funnelStage with a statement", "/reports/events", "funnelStage=" + q("top'--"), "funnelStage", 0},
		{"from with a statement", "/reports/events", "from=" + q("2025-06-10"+drop), "from", 0},
		{"to with a statement", "/reports/revenue", "to=" + q("2025-06-10T00:00:00Z'; --"), "to", 0},
		{"from unicode digits", "/reports/events", "from=" + q("２０２５-06-10"), "from", 0},
		{"to year 99999", "/reports/demographics", "to=99999-01-01", "to", 0},
		{"limit with a statement", "/reports/revenue", "limit=" + q("1; DROP TABLE events"), "limit", 0},
		{"limit quote", "/reports/demographics", "limit=" + q("'"), "limit", 0},
		{"limit huge", "/reports/revenue", "limit=99999999999999999999999999", "limit", 0},
		{"limit negative", "/reports/revenue", "limit=-1", "limit", 0},
		{"limit unicode digit", "/reports/revenue", "limit=" + q("１"), "limit", 0},
		{"interval with a statement", "/reports/events", "interval=" + q("day'); DROP TABLE events; --"), "interval", 0},
		{"interval percent", "/reports/events", "interval=" + q("%"), "interval", 0},
		{"parameter name with a statement", "/reports/events", q(drop) + "=1", drop, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := get(t, r.url+tt.path+"?"+tt.query)
			switch tt.param {
			case tooLarge:
				if resp.status != http.StatusRequestHeaderFieldsTooLarge {
					t.Fatalf("got %d %s; want 431", resp.status, truncate(resp.body))
				}
			default:
				if resp.status != http.StatusBadRequest {
					t.Fatalf("got %d %s; want 400", resp.status, truncate(resp.body))
				}
				e := decodeError(t, resp.body)
				if e.Error.Code != "invalid_parameter" || e.Error.Parameter != tt.param {
					t.Errorf("got %+v; want invalid_parameter naming %q", e.Error, tt.param)
				}
			case "":
				if resp.status != http.StatusOK {
					t.Fatalf("got %d %s; want 200", resp.status, truncate(resp.body))
				}
				var rev struct {
					Filters struct {
						CampaignID *string `json:"campaignId"`
					} `json:"filters"`
					Total struct {
						Transactions int `json:"transactions"`
					} `json:"total"`
				}
				if err := json.Unmarshal(resp.body, &rev); err != nil {
					t.Fatalf("decode %s: %v", truncate(resp.body), err)
				}
				if rev.Total.Transactions != tt.transactions {
					t.Errorf("transactions got %d; want %d", rev.Total.Transactions, tt.transactions)
				}
				// The filter is echoed as given, not as the database saw it.
				want, _ := url.ParseQuery(tt.query)
				if rev.Filters.CampaignID == nil || *rev.Filters.CampaignID != want.Get("campaignId") {
					t.Errorf("filters.campaignId got %v; want %q", rev.Filters.CampaignID, want.Get("campaignId"))
				}
			}
			if n := eventsRows(t, dbURL); n != rows {
				t.Fatalf("events table holds %d rows; want %d", n, rows)
			}
			if resp := get(t, r.url+"/reports/events?source=facebook"); resp.status != http.StatusOK {
				t.Fatalf("normal request afterwards: got %d %s; want 200", resp.status, truncate(resp.body))
			}
		})
	}
}
