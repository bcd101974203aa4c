package stack_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/eventpipe/eventpipe/pkg/stack"
)

// TestMonitoringQueriesReturnData runs a real Prometheus (Debian's
// package) on the scrape jobs of compose's prometheus.yml, pointed at the
// system started as separate processes, with the alert rules loaded. Under
// load that exercises every path (valid, corrupted and repeated events,
// poison messages at both collectors, every report and invalid report
// requests) it evaluates every query of every dashboard panel and every
// alert rule through Prometheus's HTTP API, and fails on an error, on an
// empty result, or on a result that is NaN throughout (a panel that would
// draw nothing). Of an alert it evaluates the whole expression (it must
// not fail) and its signal: what the thresholds compare, which must have
// data. It also requires every rule to evaluate healthily and the
// dead-letter alert to go active for both collectors.
func TestMonitoringQueriesReturnData(t *testing.T) {
	promBin := lookTool(t, "prometheus")
	var queries []promQuery
	for _, d := range loadDashboards(t) {
		problems, qs := lintDashboard(d)
		if len(problems) > 0 {
			t.Fatalf("%s: %s (see TestDashboardsAreWellFormed)", d.name, strings.Join(problems, "; "))
		}
		queries = append(queries, qs...)
	}
	for _, a := range alertQueries(t) {
		queries = append(queries, a)
		e, err := parseQuery(a.expr)
		if err != nil {
			t.Fatal(err)
		}
		for i, sig := range signals(e) {
			queries = append(queries, promQuery{where: fmt.Sprintf("%s, signal %d", a.where, i+1), expr: sig.String()})
		}
	}
	compose := loadComposePrometheus(t)

	// A one-second duplicate window lets the publisher's repeats reach the
	// collectors, so their duplicate counters see real data too.
	short := []string{"STREAM_DUPLICATE_WINDOW=1s"}
	s := startStack(t, map[string][]string{"gateway": short, "fb-collector": short, "ttk-collector": short})
	prom := startPrometheus(t, promBin, compose, s)

	if _, err := s.StartPublisher("PUBLISH_INTERVAL=200ms", "MIN_BATCH=50", "MAX_BATCH=400",
		"CORRUPT_EVERY=2", "DUPLICATE_RATIO=0.2", "OUT_OF_ORDER=10m", "SEED=11", "LOG_LEVEL=warn"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); requestReports(ctx, s.URL("reporter")) }()
	defer func() { cancel(); wg.Wait() }()
	publishPoison(t, s.NATSURL())

	start := time.Now()
	deadline := start.Add(150 * time.Second)

	// The load has reached every path: these are not just zero series.
	loadChecks := []string{
		`sum(gateway_events_processed_total)`,
		`sum(gateway_events_failed_total{reason="validation"})`,
		`sum(gateway_deadletter_total)`,
		`sum(gateway_events_duplicate_total)`,
		`sum(fb_collector_events_processed_total)`,
		`sum(ttk_collector_events_processed_total)`,
		`sum(fb_collector_events_duplicates_total)`,
		`sum(ttk_collector_events_duplicates_total)`,
		`sum(fb_collector_events_failed_total{reason="decode"})`,
		`sum(ttk_collector_events_failed_total{reason="decode"})`,
		`sum by (report) (reporter_reports_generated_total)`,
		`sum by (report) (reporter_report_errors_total{code="invalid_parameter"})`,
	}
	for _, expr := range loadChecks {
		r := prom.waitFor(t, expr, deadline, func(r queryResult) bool { return r.err == nil && r.series > 0 && r.min > 0 })
		t.Logf("load check %s => %s", expr, r.summary())
	}
	// Then a whole minute of samples, so every [1m] window of the
	// dashboards is full when they are evaluated.
	r := prom.waitFor(t, `min(count_over_time(up[1m]))`, deadline, func(r queryResult) bool { return r.err == nil && r.min >= 55 })
	t.Logf("after %s of load Prometheus holds a full minute of scrapes (%s per target)", time.Since(start).Round(time.Second), fmtValue(r.min))

	var results []queryResult
	for {
		results = results[:0]
		missing := 0
		for _, q := range queries {
			r := prom.query(q.expr)
			r.promQuery = q
			if !r.ok() {
				missing++
			}
			results = append(results, r)
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			for _, r := range results {
				if !r.ok() {
					t.Errorf("%s: %s\n    %s", r.where, r.problem(), r.expr)
				}
			}
			t.Fatalf("%d of %d queries without data after %s of load", missing, len(queries), time.Since(start).Round(time.Second))
		}
		time.Sleep(2 * time.Second)
	}
	t.Logf("each of the %d queries (dashboard panels; %d alert rules, each with its signals) returned data:",
		len(queries), countAlerts(queries))
	for _, r := range results {
		t.Logf("%s\n    %s\n    => %s", r.where, r.expr, r.summary())
	}

	prom.waitRulesHealthy(t, deadline)
	for _, job := range []string{"fb-collector", "ttk-collector"} {
		state := prom.waitAlert(t, "CollectorDeadLetters", job, deadline)
		t.Logf("alert CollectorDeadLetters{job=%q} is %s after the poison messages", job, state)
	}
}

func countAlerts(qs []promQuery) int {
	n := 0
	for _, q := range qs {
		if q.alert {
			n++
		}
	}
	return n
}

// signals returns the parts of an alert expression that carry its signal:
// for a comparison with a number, the other side; for and, or and unless,
// the signals of both sides; for absent(x), x; else the expression itself.
// Each must return series while the system runs, or the alert could never
// fire.
func signals(e parser.Expr) []parser.Expr {
	switch n := e.(type) {
	case *parser.ParenExpr:
		return signals(n.Expr)
	case *parser.BinaryExpr:
		switch {
		case n.Op.IsSetOperator():
			return append(signals(n.LHS), signals(n.RHS)...)
		case n.Op.IsComparisonOperator() && isNumber(n.RHS):
			return signals(n.LHS)
		case n.Op.IsComparisonOperator() && isNumber(n.LHS):
			return signals(n.RHS)
		}
	case *parser.Call:
		if (n.Func.Name == "absent" || n.Func.Name == "absent_over_time") && len(n.Args) == 1 {
			return []parser.Expr{n.Args[0]}
		}
	}
	return []parser.Expr{e}
}

func isNumber(e parser.Expr) bool {
	switch n := e.(type) {
	case *parser.NumberLiteral:
		return true
	case *parser.ParenExpr:
		return isNumber(n.Expr)
	case *parser.UnaryExpr:
		return isNumber(n.Expr)
	}
	return false
}

// requestReports asks for every report, and sends an invalid request,
// until ctx ends, so every report's latency histogram and the error
// counter move.
func requestReports(ctx context.Context, reporter string) {
	paths := []string{
		"/reports/events?interval=hour",
		"/reports/events?source=tiktok&funnelStage=bottom",
		"/reports/revenue",
		"/reports/revenue?source=facebook&limit=5",
		"/reports/demographics",
		"/reports/demographics?source=tiktok",
		// Each report also gets an invalid request: 400, invalid_parameter.
		"/reports/events?from=yesterday",
		"/reports/revenue?limit=0",
		"/reports/demographics?source=myspace",
	}
	for i := 0; ctx.Err() == nil; i++ {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, reporter+paths[i%len(paths)], nil)
		req.Header.Set("X-Correlation-ID", "monitoring-report-"+strconv.Itoa(i))
		if resp, err := http.DefaultClient.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// publishPoison puts one message that is not an event on each source's
// subjects, as a producer other than the gateway might: each collector
// dead-letters it (reason decode).
func publishPoison(t *testing.T, natsURL string) {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, subject := range []string{"events.facebook.ad.view", "events.tiktok.like"} {
		msg := nats.NewMsg(subject)
		msg.Data = []byte(`{"eventId":"poison-` + subject + `","source":"nowhere"}`)
		msg.Header.Set("X-Correlation-ID", "monitoring-poison")
		if _, err := js.PublishMsg(ctx, msg); err != nil {
			t.Fatalf("publish poison to %s: %v", subject, err)
		}
	}
}

// promServer is a running Prometheus server.
type promServer struct {
	url string
}

// startPrometheus runs Prometheus on a loopback port with compose's scrape
// jobs, each compose service they find replaced by the stack's service on
// 127.0.0.1, a one-second scrape and evaluation interval, and the alert
// rules. It returns once every target has been scraped.
func startPrometheus(t *testing.T, bin string, compose composeConfig, s *stack.Stack) *promServer {
	t.Helper()
	dir := t.TempDir()
	cfg := composeConfig{Global: compose.Global, RuleFiles: []string{repoPath(t, alertsFile)}}
	cfg.Global.ScrapeInterval, cfg.Global.ScrapeTimeout, cfg.Global.EvaluationInterval = "1s", "1s", "1s"
	for _, sc := range compose.ScrapeConfigs {
		job := scrapeConfig{JobName: sc.JobName}
		// Docker's DNS is not here: each looked-up service becomes its one
		// local process.
		for _, dns := range sc.DNSSDConfigs {
			var local staticConfig
			for _, name := range dns.Names {
				if s.Port(name) == 0 {
					t.Fatalf("job %s: %s is not a service", sc.JobName, name)
				}
				local.Targets = append(local.Targets, "127.0.0.1:"+strconv.Itoa(s.Port(name)))
			}
			job.StaticConfigs = append(job.StaticConfigs, local)
		}
		for _, st := range sc.StaticConfigs {
			var local staticConfig
			for _, target := range st.Targets {
				host, _, err := net.SplitHostPort(target)
				if err != nil || s.Port(host) == 0 {
					t.Fatalf("job %s: target %s is not a service", sc.JobName, target)
				}
				local.Targets = append(local.Targets, "127.0.0.1:"+strconv.Itoa(s.Port(host)))
			}
			job.StaticConfigs = append(job.StaticConfigs, local)
		}
		cfg.ScrapeConfigs = append(cfg.ScrapeConfigs, job)
	}
	// JSON is YAML: Prometheus reads it as is.
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "prometheus.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	cmd := exec.Command(bin,
		"--config.file="+cfgPath,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--log.level=warn",
	)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logFile.Close(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			out, _ := os.ReadFile(logPath)
			t.Logf("--- prometheus.log\n%s\n--- generated prometheus.yml\n%s", out, b)
		}
	})
	p := &promServer{url: "http://" + addr}

	deadline := time.Now().Add(time.Minute)
	for {
		r := p.query(`up == 1`)
		if r.err == nil && r.series == len(servicePorts) {
			return p
		}
		select {
		case <-done:
			out, _ := os.ReadFile(logPath)
			t.Fatalf("prometheus exited:\n%s", out)
		case <-time.After(250 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("targets up: got %s; want %d series of 1 (%v)", r.summary(), len(servicePorts), r.err)
		}
	}
}

// queryResult is what Prometheus answered to one query.
type queryResult struct {
	promQuery
	err      error
	series   int
	nonNaN   int
	min, max float64
}

// ok reports whether the query has data: no error, and a series with a
// number. For an alert's whole expression, only the error counts: it is
// empty while the alert is not firing.
func (r queryResult) ok() bool {
	if r.alert {
		return r.err == nil
	}
	return r.err == nil && r.series > 0 && r.nonNaN > 0
}

func (r queryResult) problem() string {
	switch {
	case r.err != nil:
		return r.err.Error()
	case r.series == 0:
		return "no series"
	default:
		return fmt.Sprintf("%d series, all NaN", r.series)
	}
}

func (r queryResult) summary() string {
	switch {
	case r.err != nil:
		return "error: " + r.err.Error()
	case r.series == 0:
		return "0 series"
	case r.nonNaN == 0:
		return fmt.Sprintf("%d series, all NaN", r.series)
	case r.min == r.max:
		return fmt.Sprintf("%d series, value %s", r.series, fmtValue(r.min))
	}
	return fmt.Sprintf("%d series, values %s .. %s", r.series, fmtValue(r.min), fmtValue(r.max))
}

func fmtValue(v float64) string { return strconv.FormatFloat(v, 'g', 4, 64) }

// query runs an instant query at the current time.
func (p *promServer) query(expr string) queryResult {
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := p.get("/api/v1/query?query="+url.QueryEscape(expr), &body); err != nil {
		return queryResult{err: err}
	}
	if body.Status != "success" {
		return queryResult{err: fmt.Errorf("%s: %s", body.Status, body.Error)}
	}
	var values []string
	switch body.Data.ResultType {
	case "vector":
		var vec []struct {
			Value [2]any `json:"value"`
		}
		if err := json.Unmarshal(body.Data.Result, &vec); err != nil {
			return queryResult{err: err}
		}
		for _, s := range vec {
			v, _ := s.Value[1].(string)
			values = append(values, v)
		}
	case "scalar":
		var sc [2]any
		if err := json.Unmarshal(body.Data.Result, &sc); err != nil {
			return queryResult{err: err}
		}
		v, _ := sc[1].(string)
		values = append(values, v)
	default:
		return queryResult{err: fmt.Errorf("result type %s; want a vector", body.Data.ResultType)}
	}
	r := queryResult{series: len(values), min: math.Inf(1), max: math.Inf(-1)}
	for _, s := range values {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return queryResult{err: fmt.Errorf("value %q: %v", s, err)}
		}
		if math.IsNaN(v) {
			continue
		}
		r.nonNaN++
		r.min, r.max = min(r.min, v), max(r.max, v)
	}
	return r
}

func (p *promServer) get(path string, into any) error {
	resp, err := http.Get(p.url + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, into); err != nil {
		return fmt.Errorf("GET %s: %s: %v: %s", path, resp.Status, err, b)
	}
	return nil
}

// waitFor runs expr until done accepts its result, failing t at deadline.
func (p *promServer) waitFor(t *testing.T, expr string, deadline time.Time, done func(queryResult) bool) queryResult {
	t.Helper()
	for {
		r := p.query(expr)
		if done(r) {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: got %s", expr, r.summary())
		}
		time.Sleep(time.Second)
	}
}

// waitRulesHealthy waits until every rule has been evaluated, and fails
// on any that did not evaluate cleanly.
func (p *promServer) waitRulesHealthy(t *testing.T, deadline time.Time) {
	t.Helper()
	for {
		var body struct {
			Data struct {
				Groups []struct {
					Name  string `json:"name"`
					Rules []struct {
						Name      string `json:"name"`
						Health    string `json:"health"`
						LastError string `json:"lastError"`
					} `json:"rules"`
				} `json:"groups"`
			} `json:"data"`
		}
		if err := p.get("/api/v1/rules", &body); err != nil {
			t.Fatal(err)
		}
		var unhealthy, unknown []string
		rules := 0
		for _, g := range body.Data.Groups {
			for _, r := range g.Rules {
				rules++
				switch r.Health {
				case "ok":
				case "unknown":
					unknown = append(unknown, r.Name)
				default:
					unhealthy = append(unhealthy, fmt.Sprintf("%s: %s %s", r.Name, r.Health, r.LastError))
				}
			}
		}
		if len(unhealthy) > 0 {
			t.Fatalf("rules not evaluating cleanly:\n%s", strings.Join(unhealthy, "\n"))
		}
		if rules > 0 && len(unknown) == 0 {
			t.Logf("all %d rules loaded by Prometheus evaluate with health ok", rules)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("rules never evaluated (%d loaded): %v", rules, unknown)
		}
		time.Sleep(time.Second)
	}
}

// waitAlert waits until alert is pending or firing for job and returns
// its state.
func (p *promServer) waitAlert(t *testing.T, alert, job string, deadline time.Time) string {
	t.Helper()
	for {
		var body struct {
			Data struct {
				Alerts []struct {
					Labels map[string]string `json:"labels"`
					State  string            `json:"state"`
				} `json:"alerts"`
			} `json:"data"`
		}
		if err := p.get("/api/v1/alerts", &body); err != nil {
			t.Fatal(err)
		}
		var active []string
		for _, a := range body.Data.Alerts {
			if a.Labels["alertname"] == alert && a.Labels["job"] == job {
				return a.State
			}
			active = append(active, a.Labels["alertname"]+"{job="+a.Labels["job"]+"}")
		}
		if time.Now().After(deadline) {
			sort.Strings(active)
			t.Fatalf("alert %s for job %s never went active; active: %v", alert, job, active)
		}
		time.Sleep(time.Second)
	}
}
