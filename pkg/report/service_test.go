package report

import (
	"bufio"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eventpipe/eventpipe/pkg/pgtest"
)

// errorBody is the one error shape of api.md.
type errorBody struct {
	Error struct {
		Code      string `json:"code"`
		Parameter string `json:"parameter"`
		Message   string `json:"message"`
	} `json:"error"`
}

func decodeError(t *testing.T, body []byte) errorBody {
	t.Helper()
	var e errorBody
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		t.Fatalf("error body %s: %v", body, err)
	}
	return e
}

// logLines returns the JSON log records whose correlation_id is id.
func logLines(t *testing.T, logs string, id string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(logs))
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("log line is not JSON: %s", sc.Bytes())
		}
		if rec["correlation_id"] == id {
			out = append(out, rec)
		}
	}
	return out
}

func TestInvalidParameters(t *testing.T) {
	r := startReporter(t, pgtest.Migrated(t))
	tests := []struct {
		path, query, param string
	}{
		{"/reports/events", "from=yesterday", "from"},
		{"/reports/events", "to=2025-06-10T18:00", "to"},
		{"/reports/events", "from=2025-06-12&to=2025-06-10", "from"},
		{"/reports/events", "source=instagram", "source"},
		{"/reports/events", "funnelStage=middle", "funnelStage"},
		{"/reports/events", "eventType=ad.vieww", "eventType"},
		{"/reports/events", "interval=week", "interval"},
		{"/reports/events", "sorce=facebook", "sorce"},
		{"/reports/events", "source=facebook&source=tiktok", "source"},
		{"/reports/events", "limit=5", "limit"},
		{"/reports/revenue", "limit=0", "limit"},
		{"/reports/revenue", "limit=1001", "limit"},
		{"/reports/revenue", "campaignId=", "campaignId"},
		{"/reports/revenue", "eventType=purchase", "eventType"},
		{"/reports/demographics", "limit=abc", "limit"},
		{"/reports/demographics", "interval=day", "interval"},
		{"/reports/demographics", "from=2025-06-10&from=2025-06-11", "from"},
	}
	for _, tt := range tests {
		t.Run(tt.path+"?"+tt.query, func(t *testing.T) {
			resp := get(t, r.url+tt.path+"?"+tt.query)
			if resp.status != http.StatusBadRequest {
				t.Fatalf("got status %d; want 400: %s", resp.status, resp.body)
			}
			if resp.header.Get("X-Correlation-ID") == "" {
				t.Fatal("got no X-Correlation-ID on a 400")
			}
			e := decodeError(t, resp.body)
			if e.Error.Code != "invalid_parameter" || e.Error.Parameter != tt.param || e.Error.Message == "" {
				t.Fatalf("got %+v; want code invalid_parameter naming %q with a message", e.Error, tt.param)
			}
		})
	}

	t.Run("unknown route", func(t *testing.T) {
		resp := get(t, r.url+"/reports/nope", "X-Request-ID", "req-1")
		if resp.status != http.StatusNotFound || resp.header.Get("X-Correlation-ID") != "req-1" {
			t.Fatalf("got %d with X-Correlation-ID %q; want 404 echoing req-1", resp.status, resp.header.Get("X-Correlation-ID"))
		}
	})
}

func TestMetricsAndLogs(t *testing.T) {
	dbURL := pgtest.Migrated(t)
	insertEvents(t, dbURL, edgeCases())
	r := startReporter(t, dbURL)

	before := get(t, r.url+"/metrics")
	for _, report := range []string{"events", "revenue", "demographics"} {
		series := `reporter_reports_generated_total{report="` + report + `"}`
		if v, ok := metricValue(string(before.body), series); !ok || v != "0" {
			t.Fatalf("before any request: got %s = %q (present %v); want 0", series, v, ok)
		}
	}

	get(t, r.url+"/reports/events?interval=day", "X-Correlation-ID", "metrics-events-1")
	get(t, r.url+"/reports/events")
	get(t, r.url+"/reports/events?sorce=facebook")
	get(t, r.url+"/reports/revenue")
	get(t, r.url+"/reports/demographics?source=tiktok")

	body := string(get(t, r.url+"/metrics").body)
	want := map[string]string{
		`reporter_reports_generated_total{report="events"}`:                             "2",
		`reporter_reports_generated_total{report="revenue"}`:                            "1",
		`reporter_reports_generated_total{report="demographics"}`:                       "1",
		`reporter_report_generation_duration_seconds_count{report="events"}`:            "2",
		`reporter_report_generation_duration_seconds_count{report="revenue"}`:           "1",
		`reporter_report_generation_duration_seconds_count{report="demographics"}`:      "1",
		`reporter_report_errors_total{code="invalid_parameter",report="events"}`:        "1",
		`reporter_report_generation_duration_seconds_bucket{report="events",le="+Inf"}`: "2",
	}
	for series, w := range want {
		if got, ok := metricValue(body, series); !ok || got != w {
			t.Errorf("got %s = %q (present %v); want %s", series, got, ok, w)
		}
	}

	// One log line for the request, carrying its correlation id, the
	// report and the row count.
	var lines []map[string]any
	waitFor(t, "the request's log line", func() bool {
		lines = logLines(t, r.logs.String(), "metrics-events-1")
		return len(lines) > 0
	})
	if len(lines) != 1 {
		t.Fatalf("got %d log lines for the request; want 1: %v", len(lines), lines)
	}
	l := lines[0]
	// The edge cases hold 6 types of each source, over 3 days.
	if l["msg"] != "request" || l["report"] != "events" || l["status"] != float64(200) || l["rows"] != float64(12+3) {
		t.Fatalf("got log line %v; want msg request, report events, status 200, rows 15", l)
	}
}

// lockReportTables holds an exclusive lock on the events table and its
// rollups until the returned release is called, so reports block in the
// database whichever of them they read.
func lockReportTables(t *testing.T, dbURL string) (release func()) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE events, event_counts, revenue_sums, audience_counts, audience_users IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	released := false
	release = func() {
		if !released {
			released = true
			_ = tx.Rollback(ctx)
			_ = conn.Close(ctx)
		}
	}
	t.Cleanup(release)
	return release
}

// waitingOnLock reports how many queries of the database wait on a lock.
func waitingOnLock(t *testing.T, dbURL string) int {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	err = conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestQueryTimeout(t *testing.T) {
	dbURL := pgtest.Migrated(t)
	r := startReporter(t, dbURL, func(o *Options) { o.QueryTimeout = 300 * time.Millisecond })
	release := lockReportTables(t, dbURL)

	resp := get(t, r.url+"/reports/demographics", "X-Correlation-ID", "slow-1")
	if resp.status != http.StatusGatewayTimeout {
		t.Fatalf("got status %d; want 504: %s", resp.status, resp.body)
	}
	if e := decodeError(t, resp.body); e.Error.Code != "timeout" || e.Error.Message == "" {
		t.Fatalf("got %+v; want code timeout with a message", e.Error)
	}
	if resp.header.Get("X-Correlation-ID") != "slow-1" {
		t.Fatalf("got X-Correlation-ID %q; want slow-1", resp.header.Get("X-Correlation-ID"))
	}
	// The database cancelled the query rather than leaving it queued.
	waitFor(t, "the cancelled query to leave the lock queue", func() bool { return waitingOnLock(t, dbURL) == 0 })
	release()

	if resp := get(t, r.url+"/reports/demographics"); resp.status != http.StatusOK {
		t.Fatalf("after the lock: got status %d; want 200: %s", resp.status, resp.body)
	}
	body := string(get(t, r.url+"/metrics").body)
	if v, _ := metricValue(body, `reporter_report_errors_total{code="timeout",report="demographics"}`); v != "1" {
		t.Fatalf("got timeout errors %q; want 1", v)
	}
}

func TestDatabaseError(t *testing.T) {
	dbURL := pgtest.Migrated(t)
	r := startReporter(t, dbURL)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	// The revenue report reads revenue_sums, and events for the edges of
	// a range.
	for _, sql := range []string{"ALTER TABLE events RENAME TO events_gone", "ALTER TABLE revenue_sums RENAME TO revenue_gone"} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	conn.Close(ctx)

	resp := get(t, r.url+"/reports/revenue", "X-Correlation-ID", "broken-1")
	if resp.status != http.StatusInternalServerError {
		t.Fatalf("got status %d; want 500: %s", resp.status, resp.body)
	}
	e := decodeError(t, resp.body)
	if e.Error.Code != "internal" || strings.Contains(string(resp.body), "events") || strings.Contains(string(resp.body), "SQLSTATE") {
		t.Fatalf("got %s; want code internal and no database detail", resp.body)
	}
	var lines []map[string]any
	waitFor(t, "the request's log line", func() bool {
		lines = logLines(t, r.logs.String(), "broken-1")
		return len(lines) > 0
	})
	if l := lines[0]; l["level"] != "ERROR" || !strings.Contains(l["error"].(string), "does not exist") {
		t.Fatalf("got log line %v; want level ERROR with the database error", l)
	}
}

func TestDatabaseUnavailable(t *testing.T) {
	port, err := pgtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	r := startReporter(t, "postgres://nobody@127.0.0.1:"+strconv.Itoa(port)+"/none?sslmode=disable&connect_timeout=5")

	if resp := get(t, r.url+"/healthz"); resp.status != http.StatusOK {
		t.Fatalf("healthz: got %d; want 200", resp.status)
	}
	ready := get(t, r.url+"/readyz")
	if ready.status != http.StatusServiceUnavailable || !strings.Contains(string(ready.body), `"check":"postgres"`) {
		t.Fatalf("readyz: got %d %s; want 503 naming postgres", ready.status, ready.body)
	}
	resp := get(t, r.url+"/reports/revenue")
	if resp.status != http.StatusServiceUnavailable || resp.header.Get("Retry-After") == "" {
		t.Fatalf("got %d with Retry-After %q; want 503 with Retry-After: %s", resp.status, resp.header.Get("Retry-After"), resp.body)
	}
	if e := decodeError(t, resp.body); e.Error.Code != "unavailable" {
		t.Fatalf("got %+v; want code unavailable", e.Error)
	}
}

func TestReadiness(t *testing.T) {
	t.Run("migrated", func(t *testing.T) {
		r := startReporter(t, pgtest.Migrated(t))
		if resp := get(t, r.url+"/readyz"); resp.status != http.StatusOK {
			t.Fatalf("got %d %s; want 200", resp.status, resp.body)
		}
	})
	t.Run("not migrated", func(t *testing.T) {
		r := startReporter(t, pgtest.NewDatabase(t))
		resp := get(t, r.url+"/readyz")
		if resp.status != http.StatusServiceUnavailable || !strings.Contains(string(resp.body), "schema not migrated") {
			t.Fatalf("got %d %s; want 503 saying the schema is not migrated", resp.status, resp.body)
		}
	})
}

// Cancelling Run lets a report already running finish and answer, then
// returns nil; new connections are refused meanwhile.
func TestShutdownFinishesInFlightReports(t *testing.T) {
	dbURL := pgtest.Migrated(t)
	insertEvents(t, dbURL, edgeCases())
	r := startReporter(t, dbURL)
	release := lockReportTables(t, dbURL)

	inFlight := make(chan response, 1)
	go func() {
		// get's t.Fatalf must not run off the test goroutine.
		resp, err := http.Get(r.url + "/reports/events")
		if err != nil {
			inFlight <- response{status: -1, body: []byte(err.Error())}
			return
		}
		defer resp.Body.Close()
		var body struct{ Total int64 }
		_ = json.NewDecoder(resp.Body).Decode(&body)
		inFlight <- response{status: resp.StatusCode, body: []byte(strconv.FormatInt(body.Total, 10))}
	}()
	waitFor(t, "the report to wait on the lock", func() bool { return waitingOnLock(t, dbURL) == 1 })

	stopped := make(chan error, 1)
	go func() { stopped <- r.stop() }()
	addr := strings.TrimPrefix(r.url, "http://")
	waitFor(t, "the listener to close", func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
	select {
	case err := <-stopped:
		t.Fatalf("Run returned %v while a report was in flight", err)
	default:
	}

	release()
	resp := <-inFlight
	if resp.status != http.StatusOK || string(resp.body) != strconv.Itoa(len(edgeCases())) {
		t.Fatalf("in-flight report: got %d, total %s; want 200, total %d", resp.status, resp.body, len(edgeCases()))
	}
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("Run: got %v; want nil", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Run did not return after the in-flight report finished")
	}
}

func TestRunRefusesARegistryInUse(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := newMetrics(reg); err != nil {
		t.Fatal(err)
	}
	opts := Options{Addr: "127.0.0.1:0", DatabaseURL: "postgres://127.0.0.1:1/x", QueryTimeout: time.Second, ShutdownTimeout: time.Second}
	err := Run(context.Background(), opts, slog.New(slog.DiscardHandler), reg)
	if err == nil || !strings.Contains(err.Error(), "register metrics") {
		t.Fatalf("got %v; want a metrics registration error", err)
	}
}
