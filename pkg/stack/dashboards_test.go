package stack_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/prometheus/prometheus/promql/parser"
)

// The monitoring files, relative to the repository root. Compose and the
// Helm chart read them from these paths.
const (
	dashboardsDir      = "charts/eventpipe/dashboards"
	alertsFile         = "charts/eventpipe/files/alerts.yml"
	composePrometheus  = "manifests/compose/prometheus.yml"
	grafanaDatasources = "manifests/compose/grafana/datasources.yml"
	grafanaDashboards  = "manifests/compose/grafana/dashboards.yml"
)

// datasourceUID is the only datasource dashboards may query.
const datasourceUID = "prometheus"

// The services and the default port of each (api.md): the scrape jobs.
var servicePorts = map[string]int{"gateway": 3000, "fb-collector": 3001, "ttk-collector": 3002, "reporter": 3003}

// grafanaVars are the Grafana variables a query may use, with the value
// they get when the query is run outside Grafana.
var grafanaVars = map[string]string{
	"__rate_interval": "1m",
	"__interval":      "1m",
	"__range":         "1m",
}

var varRef = regexp.MustCompile(`\$\{?(\w+)\}?`)

// expandVars substitutes Grafana variables with concrete values; an
// unknown variable is an error.
func expandVars(expr string) (string, error) {
	var unknown []string
	out := varRef.ReplaceAllStringFunc(expr, func(ref string) string {
		name := varRef.FindStringSubmatch(ref)[1]
		v, ok := grafanaVars[name]
		if !ok {
			unknown = append(unknown, ref)
			return ref
		}
		return v
	})
	if len(unknown) > 0 {
		return "", fmt.Errorf("unknown Grafana variable %s", strings.Join(unknown, ", "))
	}
	return out, nil
}

// promQuery is one PromQL expression of a dashboard panel or alert rule.
type promQuery struct {
	where string // dashboard, panel and refId; or the alert
	expr  string // with the Grafana variables expanded
	alert bool
}

func repoPath(t *testing.T, rel string) string {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, filepath.FromSlash(rel))
}

// dashboardFile is one parsed dashboard JSON.
type dashboardFile struct {
	name string
	json map[string]any
}

func loadDashboards(t *testing.T) []dashboardFile {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoPath(t, dashboardsDir), "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no dashboards in %s", dashboardsDir)
	}
	var ds []dashboardFile
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d map[string]any
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", filepath.Base(f), err)
		}
		ds = append(ds, dashboardFile{name: filepath.Base(f), json: d})
	}
	return ds
}

// panels returns a dashboard's panels, those inside rows included.
func panels(list any) []map[string]any {
	var out []map[string]any
	items, _ := list.([]any)
	for _, it := range items {
		p, ok := it.(map[string]any)
		if !ok {
			continue
		}
		out = append(out, p)
		out = append(out, panels(p["panels"])...)
	}
	return out
}

// lintDashboard returns what is wrong with a dashboard: no uid or title,
// a panel without queries, a datasource other than the Prometheus one,
// a query that does not parse, or an unknown Grafana variable.
func lintDashboard(d dashboardFile) (problems []string, queries []promQuery) {
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	title, _ := d.json["title"].(string)
	if uid, _ := d.json["uid"].(string); !strings.HasPrefix(uid, "eventpipe-") {
		bad("uid %q: want a stable uid starting with eventpipe-", uid)
	}
	if title == "" {
		bad("no title")
	}
	walkDatasources(d.json, "", func(path string, ds any) {
		m, ok := ds.(map[string]any)
		if !ok || m["uid"] != datasourceUID || m["type"] != "prometheus" {
			bad("%s: datasource %v; want {\"type\":\"prometheus\",\"uid\":%q}", path, ds, datasourceUID)
		}
	})
	if vars, _ := d.json["templating"].(map[string]any); vars != nil {
		if list, _ := vars["list"].([]any); len(list) > 0 {
			bad("template variables %v: the queries must run in Prometheus as written; use Grafana's built-in variables only", list)
		}
	}
	ids := map[float64]bool{}
	all := panels(d.json["panels"])
	if len(all) == 0 {
		bad("no panels")
	}
	for _, p := range all {
		ptitle, _ := p["title"].(string)
		id, _ := p["id"].(float64)
		if ids[id] {
			bad("panel %q: id %v used twice", ptitle, id)
		}
		ids[id] = true
		if _, ok := p["gridPos"].(map[string]any); !ok {
			bad("panel %q: no gridPos", ptitle)
		}
		if p["type"] == "row" {
			continue
		}
		if p["datasource"] == nil {
			bad("panel %q: no datasource", ptitle)
		}
		targets, _ := p["targets"].([]any)
		if len(targets) == 0 {
			bad("panel %q: no queries", ptitle)
		}
		for _, tg := range targets {
			m, _ := tg.(map[string]any)
			expr, _ := m["expr"].(string)
			ref, _ := m["refId"].(string)
			where := fmt.Sprintf("%s / %s [%s]", title, ptitle, ref)
			if strings.TrimSpace(expr) == "" {
				bad("%s: empty query", where)
				continue
			}
			expanded, err := expandVars(expr)
			if err != nil {
				bad("%s: %v", where, err)
				continue
			}
			if _, err := parseQuery(expanded); err != nil {
				bad("%s: %v", where, err)
				continue
			}
			queries = append(queries, promQuery{where: where, expr: expanded})
		}
	}
	return problems, queries
}

// walkDatasources calls f with every "datasource" value in v and its path.
func walkDatasources(v any, path string, f func(path string, ds any)) {
	switch x := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if k == "datasource" {
				f(path+"."+k, x[k])
				continue
			}
			walkDatasources(x[k], path+"."+k, f)
		}
	case []any:
		for i, e := range x {
			walkDatasources(e, path+"["+strconv.Itoa(i)+"]", f)
		}
	}
}

func parseQuery(expr string) (parser.Expr, error) {
	return parser.NewParser(parser.Options{}).ParseExpr(expr)
}

// metricNames returns the metric names an expression selects; a selector
// without a literal metric name is an error, since nothing could check it.
func metricNames(expr string) ([]string, error) {
	e, err := parseQuery(expr)
	if err != nil {
		return nil, err
	}
	var names []string
	var errs []error
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		if vs.Name == "" {
			errs = append(errs, fmt.Errorf("selector %s names no metric", vs))
			return nil
		}
		if !slices.Contains(names, vs.Name) {
			names = append(names, vs.Name)
		}
		return nil
	})
	return names, errors.Join(errs...)
}

// ruleFile is a Prometheus rule file, read strictly: a misspelt key fails.
type ruleFile struct {
	Groups []struct {
		Name     string `yaml:"name"`
		Interval string `yaml:"interval"`
		Rules    []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func loadRules(t *testing.T) ruleFile {
	t.Helper()
	b, err := os.ReadFile(repoPath(t, alertsFile))
	if err != nil {
		t.Fatal(err)
	}
	var f ruleFile
	if err := yaml.UnmarshalWithOptions(b, &f, yaml.DisallowUnknownField()); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	return f
}

// alertQueries returns every rule's expression, failing t on a rule that
// lacks what an operator needs: a for, a severity, a summary and a
// description.
func alertQueries(t *testing.T) []promQuery {
	t.Helper()
	var qs []promQuery
	f := loadRules(t)
	if len(f.Groups) == 0 {
		t.Fatalf("%s: no rule groups", alertsFile)
	}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			name := r.Alert
			if name == "" {
				t.Errorf("group %s: a rule without alert (recording rules belong elsewhere): %s", g.Name, r.Expr)
				continue
			}
			if _, err := time.ParseDuration(r.For); err != nil {
				t.Errorf("alert %s: for %q: want a duration", name, r.For)
			}
			if s := r.Labels["severity"]; s != "critical" && s != "warning" {
				t.Errorf("alert %s: severity %q; want critical or warning", name, s)
			}
			for _, a := range []string{"summary", "description"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("alert %s: no %s annotation", name, a)
				}
			}
			if _, err := parseQuery(r.Expr); err != nil {
				t.Errorf("alert %s: %v", name, err)
				continue
			}
			qs = append(qs, promQuery{where: "alert " + name, expr: strings.TrimSpace(r.Expr), alert: true})
		}
	}
	return qs
}

// TestDashboardsAreWellFormed lints every dashboard JSON: a stable uid, a
// title, panels that all carry queries, only the Prometheus datasource,
// queries that parse as PromQL once Grafana's variables are substituted.
func TestDashboardsAreWellFormed(t *testing.T) {
	uids := map[string]string{}
	for _, d := range loadDashboards(t) {
		t.Run(d.name, func(t *testing.T) {
			problems, queries := lintDashboard(d)
			for _, p := range problems {
				t.Error(p)
			}
			if len(queries) == 0 {
				t.Error("no queries")
			}
		})
		uid, _ := d.json["uid"].(string)
		if other, ok := uids[uid]; ok {
			t.Errorf("%s and %s share the uid %q", other, d.name, uid)
		}
		uids[uid] = d.name
	}
	// The uids others link to (compose, the chart's README, bookmarks).
	for _, uid := range []string{"eventpipe-overview", "eventpipe-gateway", "eventpipe-collectors", "eventpipe-reporter"} {
		if _, ok := uids[uid]; !ok {
			t.Errorf("no dashboard with uid %s", uid)
		}
	}
}

// TestLintCatchesBrokenDashboards feeds the linter the mistakes it exists
// to catch, so a lint that passes means something.
func TestLintCatchesBrokenDashboards(t *testing.T) {
	panel := func(fields string) dashboardFile {
		var d map[string]any
		js := `{"uid":"eventpipe-x","title":"x","panels":[{"id":1,"type":"timeseries","title":"p","gridPos":{},` + fields + `}]}`
		if err := json.Unmarshal([]byte(js), &d); err != nil {
			t.Fatal(err)
		}
		return dashboardFile{name: "x.json", json: d}
	}
	ds := `"datasource":{"type":"prometheus","uid":"prometheus"}`
	tests := []struct {
		name, fields, want string
	}{
		{"no queries", ds, "no queries"},
		{"empty query", ds + `,"targets":[{"refId":"A","expr":""}]`, "empty query"},
		{"unknown datasource", `"datasource":{"type":"prometheus","uid":"P1809F7CD0C75ACF3"},"targets":[{"refId":"A","expr":"up"}]`, "datasource"},
		{"datasource by name", `"datasource":"Prometheus","targets":[{"refId":"A","expr":"up"}]`, "datasource"},
		{"unknown target datasource", ds + `,"targets":[{"refId":"A","expr":"up","datasource":{"type":"loki","uid":"loki"}}]`, "datasource"},
		{"bad PromQL", ds + `,"targets":[{"refId":"A","expr":"sum(rate(x[1m])"}]`, "unclosed"},
		{"unknown variable", ds + `,"targets":[{"refId":"A","expr":"rate(x[$window])"}]`, "unknown Grafana variable $window"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			problems, _ := lintDashboard(panel(tt.fields))
			if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, tt.want) }) {
				t.Errorf("got problems %q; want one mentioning %q", problems, tt.want)
			}
		})
	}
	if _, err := metricNames(`sum(rate({__name__=~"gateway_.*"}[1m]))`); err == nil {
		t.Error("metricNames accepted a selector without a metric name; want an error")
	}
}

// TestAlertRulesAreWellFormed checks the rule file with promtool and
// requires of every alert a for, a severity, a summary and a description.
func TestAlertRulesAreWellFormed(t *testing.T) {
	if len(alertQueries(t)) == 0 {
		t.Fatal("no alerts")
	}
	promtool := lookTool(t, "promtool")
	out, err := exec.Command(promtool, "check", "rules", repoPath(t, alertsFile)).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	t.Logf("promtool check rules %s:\n%s", alertsFile, out)
}

// lookTool finds a Prometheus tool; without it the test skips, except in
// CI, which installs Debian's prometheus package (.ci/run).
func lookTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not installed; CI must install Debian's prometheus package", name)
		}
		t.Skipf("skipping: %s not installed (Debian: apt-get install prometheus)", name)
	}
	return p
}

// TestDashboardsAndAlertsUseExposedMetrics fails on a metric name in a
// dashboard or an alert that no service exposes. The services run as
// their real binaries, idle and cut off from NATS and PostgreSQL: every
// metric must be exposed from the start (at zero), or a fresh install's
// panels would say "No data" and its alerts could not evaluate.
func TestDashboardsAndAlertsUseExposedMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping process-level tests in -short mode")
	}
	exposed := exposedMetrics(t)
	var queries []promQuery
	for _, d := range loadDashboards(t) {
		_, qs := lintDashboard(d)
		queries = append(queries, qs...)
	}
	queries = append(queries, alertQueries(t)...)
	used := map[string]bool{}
	for _, q := range queries {
		names, err := metricNames(q.expr)
		if err != nil {
			t.Errorf("%s: %v", q.where, err)
		}
		for _, n := range names {
			used[n] = true
			if _, ok := exposed[n]; !ok && n != "up" {
				t.Errorf("%s: metric %s is exposed by no service", q.where, n)
			}
		}
	}
	byServices := map[string][]string{}
	for n := range used {
		svcs := strings.Join(exposed[n], ", ")
		if n == "up" {
			svcs = "Prometheus, per target"
		}
		byServices[svcs] = append(byServices[svcs], n)
	}
	keys := make([]string, 0, len(byServices))
	for svcs := range byServices {
		keys = append(keys, svcs)
	}
	sort.Strings(keys)
	for _, svcs := range keys {
		names := byServices[svcs]
		sort.Strings(names)
		t.Logf("used from %s: %s", svcs, strings.Join(names, " "))
	}
}

// exposedMetrics starts every service binary with NATS and PostgreSQL
// unreachable and returns the metric names served on /metrics (the sample
// names, so a histogram's _bucket, _sum and _count), each with the
// services serving it.
func exposedMetrics(t *testing.T) map[string][]string {
	t.Helper()
	dead := freePort(t) // nothing listens there
	exposed := map[string][]string{}
	services := make([]string, 0, len(servicePorts))
	for name := range servicePorts {
		services = append(services, name)
	}
	sort.Strings(services)
	for _, name := range services {
		port := freePort(t)
		cmd := exec.Command(filepath.Join(binDir, name))
		cmd.Env = append(os.Environ(),
			"PORT="+strconv.Itoa(port),
			"NATS_URL=nats://127.0.0.1:"+strconv.Itoa(dead),
			"DATABASE_URL=postgres://eventpipe@127.0.0.1:"+strconv.Itoa(dead)+"/eventpipe?connect_timeout=1",
			"LOG_LEVEL=error",
		)
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		names, err := scrapeNames(fmt.Sprintf("http://127.0.0.1:%d/metrics", port), done)
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, out.String())
		}
		for _, n := range names {
			exposed[n] = append(exposed[n], name)
		}
	}
	return exposed
}

// scrapeNames polls url until it answers, then returns the sample names
// on it; it gives up when exited is closed or after a minute.
func scrapeNames(url string, exited <-chan struct{}) ([]string, error) {
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := http.Get(url)
		if err == nil {
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
			}
			return sampleNames(resp.Body)
		}
		select {
		case <-exited:
			return nil, errors.New("exited before serving /metrics")
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("GET %s: %v", url, err)
		}
	}
}

// sampleNames returns the distinct metric names of a text exposition.
func sampleNames(r io.Reader) ([]string, error) {
	seen := map[string]bool{}
	var names []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name := line[:strings.IndexAny(line+" ", "{ ")]
		if !seen[name] {
			seen[name] = true
			names = append(names, name)
		}
	}
	return names, sc.Err()
}

// composeConfig is the part of a Prometheus configuration the tests use.
type composeConfig struct {
	Global struct {
		ScrapeInterval     string `yaml:"scrape_interval" json:"scrape_interval"`
		ScrapeTimeout      string `yaml:"scrape_timeout" json:"scrape_timeout,omitempty"`
		EvaluationInterval string `yaml:"evaluation_interval" json:"evaluation_interval"`
	} `yaml:"global" json:"global"`
	RuleFiles     []string       `yaml:"rule_files" json:"rule_files"`
	ScrapeConfigs []scrapeConfig `yaml:"scrape_configs" json:"scrape_configs"`
}

type scrapeConfig struct {
	JobName       string         `yaml:"job_name" json:"job_name"`
	StaticConfigs []staticConfig `yaml:"static_configs,omitempty" json:"static_configs,omitempty"`
	DNSSDConfigs  []dnsSDConfig  `yaml:"dns_sd_configs,omitempty" json:"dns_sd_configs,omitempty"`
}

// dnsSDConfig finds a compose service's replicas through Docker's DNS.
type dnsSDConfig struct {
	Names           []string `yaml:"names" json:"names"`
	Type            string   `yaml:"type" json:"type"`
	Port            int      `yaml:"port" json:"port"`
	RefreshInterval string   `yaml:"refresh_interval" json:"refresh_interval,omitempty"`
}

type staticConfig struct {
	Targets []string `yaml:"targets" json:"targets"`
}

func loadComposePrometheus(t *testing.T) composeConfig {
	t.Helper()
	b, err := os.ReadFile(repoPath(t, composePrometheus))
	if err != nil {
		t.Fatal(err)
	}
	var c composeConfig
	if err := yaml.UnmarshalWithOptions(b, &c, yaml.DisallowUnknownField()); err != nil {
		t.Fatalf("%s: %v", composePrometheus, err)
	}
	return c
}

// TestComposeMonitoringConfig checks what compose's Prometheus and Grafana
// are given: every replica of every service scraped, found by its compose
// name and port under its own job, every 5 to 10 seconds, the alert rules loaded from where compose
// mounts them; Grafana's datasource under the dashboards' uid and its
// dashboards read from where compose mounts them.
func TestComposeMonitoringConfig(t *testing.T) {
	c := loadComposePrometheus(t)
	if d, err := time.ParseDuration(c.Global.ScrapeInterval); err != nil || d < 5*time.Second || d > 10*time.Second {
		t.Errorf("scrape_interval %q; want 5s to 10s", c.Global.ScrapeInterval)
	}
	if !slices.Equal(c.RuleFiles, []string{"/etc/prometheus/alerts.yml"}) {
		t.Errorf("rule_files %q; want [/etc/prometheus/alerts.yml]", c.RuleFiles)
	}
	jobs := map[string]bool{}
	for _, sc := range c.ScrapeConfigs {
		jobs[sc.JobName] = true
		// Every replica of a scaled service is scraped: its targets come
		// from Docker's DNS name for the service, on the service's port.
		port, ok := servicePorts[sc.JobName]
		if !ok || len(sc.StaticConfigs) != 0 || len(sc.DNSSDConfigs) != 1 ||
			!slices.Equal(sc.DNSSDConfigs[0].Names, []string{sc.JobName}) ||
			sc.DNSSDConfigs[0].Type != "A" || sc.DNSSDConfigs[0].Port != port {
			t.Errorf("job %s: static %v, dns %v; want one A-record lookup of the service's name on port %d",
				sc.JobName, sc.StaticConfigs, sc.DNSSDConfigs, port)
		}
	}
	for svc := range servicePorts {
		if !jobs[svc] {
			t.Errorf("%s is not scraped", svc)
		}
	}

	var ds struct {
		Datasources []struct {
			UID  string `yaml:"uid"`
			Type string `yaml:"type"`
			URL  string `yaml:"url"`
		} `yaml:"datasources"`
	}
	readYAML(t, grafanaDatasources, &ds)
	if len(ds.Datasources) != 1 || ds.Datasources[0].UID != datasourceUID || ds.Datasources[0].Type != "prometheus" ||
		ds.Datasources[0].URL != "http://prometheus:9090" {
		t.Errorf("%s: %+v; want one prometheus datasource, uid %s, url http://prometheus:9090", grafanaDatasources, ds.Datasources, datasourceUID)
	}

	var dash struct {
		Providers []struct {
			Type    string `yaml:"type"`
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	readYAML(t, grafanaDashboards, &dash)
	if len(dash.Providers) != 1 || dash.Providers[0].Type != "file" || dash.Providers[0].Options.Path != "/var/lib/grafana/dashboards" {
		t.Errorf("%s: %+v; want one file provider reading /var/lib/grafana/dashboards", grafanaDashboards, dash.Providers)
	}
}

func readYAML(t *testing.T, rel string, into any) {
	t.Helper()
	b, err := os.ReadFile(repoPath(t, rel))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, into); err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
}
