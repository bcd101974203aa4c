package stack_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/eventpipe/eventpipe/pkg/event"
	"github.com/eventpipe/eventpipe/pkg/eventgen"
	"github.com/eventpipe/eventpipe/pkg/pgserver"
	"github.com/eventpipe/eventpipe/pkg/pgtest"
	"github.com/eventpipe/eventpipe/pkg/stack"
)

// binDir holds the binaries built once for the whole package.
var binDir string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "eventpipe-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	root, err := moduleRoot()
	if err == nil {
		cmd := exec.Command("go", "build", "-o", dir+"/", "./cmd/...")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		out, berr := cmd.CombinedOutput()
		if berr != nil {
			err = fmt.Errorf("go build: %v\n%s", berr, out)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", err
	}
	return filepath.Dir(strings.TrimSpace(string(out))), nil
}

func freePort(t *testing.T) int {
	t.Helper()
	p, err := pgtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// startStack runs the system as separate processes on free ports.
func startStack(t *testing.T, serviceEnv map[string][]string) *stack.Stack {
	t.Helper()
	return startStackWith(t, func(o *stack.Options) { o.ServiceEnv = serviceEnv })
}

// startStackWith is startStack with options changed by edit before the
// start.
func startStackWith(t *testing.T, edit func(*stack.Options)) *stack.Stack {
	t.Helper()
	if testing.Short() {
		t.Skip("skipping process-level tests in -short mode")
	}
	if !pgserver.Available() && os.Getenv("CI") == "" {
		t.Skipf("skipping: %v", pgserver.ErrNoBinaries)
	}
	dir, err := os.MkdirTemp("", "eventpipe-stack-")
	if err != nil {
		t.Fatal(err)
	}
	// The private PostgreSQL may run as the postgres user: let it through.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	opts := stack.Options{
		Dir:          dir,
		BinDir:       binDir,
		NATSPort:     freePort(t),
		PostgresPort: freePort(t),
		FastPostgres: true,
		Ports: map[string]int{
			"gateway": freePort(t), "fb-collector": freePort(t),
			"ttk-collector": freePort(t), "reporter": freePort(t),
		},
		Env: []string{"LOG_FORMAT=json", "SHUTDOWN_TIMEOUT=20s"},
	}
	edit(&opts)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s, err := stack.Start(ctx, opts, logger)
	if err != nil {
		dumpLogs(t, dir)
		t.Fatalf("start stack: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := s.Stop(ctx); err != nil {
			t.Errorf("stop stack: %v", err)
		}
		if t.Failed() {
			dumpLogs(t, dir)
		}
		os.RemoveAll(dir)
	})
	return s
}

func dumpLogs(t *testing.T, dir string) {
	files, _ := filepath.Glob(filepath.Join(dir, "logs", "*.log"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if len(b) > 8000 {
			b = b[len(b)-8000:]
		}
		t.Logf("--- %s (tail)\n%s", filepath.Base(f), b)
	}
}

// loader posts batches of generated events to the gateway and remembers
// which events a 2xx acknowledged and which were in requests that failed.
type loader struct {
	gateway string
	gen     *eventgen.Generator
	rnd     *rand.Rand
	base    time.Time

	mu       sync.Mutex
	acked    map[string]event.Event // eventId -> event, from 2xx requests
	maybe    map[string]bool        // eventIds of requests without a 2xx
	requests int
	failures int
	sent     [][]byte // every valid event sent, for duplicates
}

func newLoader(gateway string, seed int64) *loader {
	return &loader{
		gateway: gateway,
		gen:     eventgen.New(seed),
		rnd:     rand.New(rand.NewPCG(uint64(seed), 7)),
		base:    time.Date(2025, 6, 10, 0, 0, 0, 0, time.UTC),
		acked:   map[string]event.Event{},
		maybe:   map[string]bool{},
	}
}

// post sends n new events (timestamps spread over three days, out of
// order), plus repeats of earlier ones at dupRatio, plus one invalid event.
func (l *loader) post(ctx context.Context, n int, dupRatio float64) (int, error) {
	l.mu.Lock()
	var body bytes.Buffer
	body.WriteByte('[')
	evs := make([]event.Event, 0, n)
	for i := 0; i < n; i++ {
		if i > 0 {
			body.WriteByte(',')
		}
		if len(l.sent) > 0 && l.rnd.Float64() < dupRatio {
			raw := l.sent[l.rnd.IntN(len(l.sent))]
			e, _ := event.Parse(raw)
			evs = append(evs, e)
			body.Write(raw)
			continue
		}
		ts := l.base.Add(time.Duration(l.rnd.Int64N(int64(72 * time.Hour))))
		e := l.gen.Next(ts)
		raw := e.AppendJSON(nil)
		l.sent = append(l.sent, raw)
		evs = append(evs, e)
		body.Write(raw)
	}
	body.WriteString(`,{"eventId":"bad-1","source":"facebook"}]`)
	l.mu.Unlock()

	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, l.gateway+"/webhook", &body)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	status := 0
	if err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		status = resp.StatusCode
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.requests++
	for _, e := range evs {
		if status >= 200 && status < 300 {
			l.acked[e.ID] = e
		} else if _, ok := l.acked[e.ID]; !ok {
			l.maybe[e.ID] = true
		}
	}
	if status < 200 || status >= 300 {
		l.failures++
	}
	return status, err
}

// run posts until ctx ends.
func (l *loader) run(ctx context.Context) {
	for ctx.Err() == nil {
		_, _ = l.post(ctx, 200, 0.1)
		time.Sleep(20 * time.Millisecond)
	}
}

// storedIDs returns every stored eventId with how often it is stored.
func storedIDs(t *testing.T, dbURL string) map[string]int {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT event_id, count(*) FROM events GROUP BY event_id`)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]int{}
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			t.Fatal(err)
		}
		ids[id] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return ids
}

// assertExactlyOnce waits until every acknowledged event is stored and then
// checks: each acknowledged event exactly once, nothing that was never sent,
// events of failed requests at most once.
func assertExactlyOnce(t *testing.T, s *stack.Stack, l *loader) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var stored map[string]int
	deadline := time.Now().Add(2 * time.Minute)
	for {
		stored = storedIDs(t, s.DatabaseURL())
		missing := 0
		for id := range l.acked {
			if stored[id] == 0 {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d acknowledged events never stored", missing, len(l.acked))
		}
		time.Sleep(250 * time.Millisecond)
	}
	for id, n := range stored {
		_, acked := l.acked[id]
		switch {
		case n != 1:
			t.Errorf("event %s stored %d times; want 1", id, n)
		case !acked && !l.maybe[id]:
			t.Errorf("event %s stored but never sent", id)
		}
	}
	if len(l.acked) == 0 {
		t.Fatal("no request was acknowledged; the test proved nothing")
	}
	t.Logf("requests %d (failed %d), acknowledged events %d, stored %d", l.requests, l.failures, len(l.acked), len(stored))
}

func getJSON(t *testing.T, url string, into any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: got %d %s; want 200", url, resp.StatusCode, b)
	}
	if resp.Header.Get("X-Correlation-ID") == "" {
		t.Errorf("GET %s: no X-Correlation-ID header", url)
	}
	if err := json.Unmarshal(b, into); err != nil {
		t.Fatalf("GET %s: %v: %s", url, err, b)
	}
}

// TestPipelineStoresEachEventOnceAndReportsMatch posts batches with
// duplicates (inside and across requests), out-of-order timestamps and an
// invalid event each, then checks storage and the reports against totals
// computed here from the events themselves.
func TestPipelineStoresEachEventOnceAndReportsMatch(t *testing.T) {
	s := startStack(t, nil)
	l := newLoader(s.URL("gateway"), 42)
	ctx := context.Background()
	for i := 0; i < 10; i++ {
		status, err := l.post(ctx, 500, 0.15)
		if err != nil || status != http.StatusAccepted {
			t.Fatalf("post %d: got %d %v; want 202", i, status, err)
		}
	}
	assertExactlyOnce(t, s, l)

	// Totals computed from the acknowledged events, not from SQL.
	type key struct{ source, stage, typ string }
	counts := map[key]int{}
	dayCounts := map[key]int{}
	day := time.Date(2025, 6, 11, 0, 0, 0, 0, time.UTC)
	var cents [2]int64
	var tx [2]int
	for _, e := range l.acked {
		k := key{string(e.Source), string(e.FunnelStage), e.Type}
		counts[k]++
		if !e.Timestamp.Before(day) && e.Timestamp.Before(day.Add(24*time.Hour)) {
			dayCounts[k]++
		}
		if amt, ok := e.Revenue(); ok {
			i := 0
			if e.Source == event.TikTok {
				i = 1
			}
			cents[i] += toCents(t, amt)
			tx[i]++
		}
	}

	type row struct {
		Source      string `json:"source"`
		FunnelStage string `json:"funnelStage"`
		EventType   string `json:"eventType"`
		Count       int    `json:"count"`
	}
	var all struct {
		Total     int   `json:"total"`
		Breakdown []row `json:"breakdown"`
	}
	getJSON(t, s.URL("reporter")+"/reports/events", &all)
	if all.Total != len(l.acked) {
		t.Errorf("events total: got %d; want %d", all.Total, len(l.acked))
	}
	for _, r := range all.Breakdown {
		if want := counts[key{r.Source, r.FunnelStage, r.EventType}]; r.Count != want {
			t.Errorf("events %s/%s/%s: got %d; want %d", r.Source, r.FunnelStage, r.EventType, r.Count, want)
		}
	}
	if len(all.Breakdown) != len(counts) {
		t.Errorf("breakdown rows: got %d; want %d", len(all.Breakdown), len(counts))
	}

	// A date-only range covering one whole day: out-of-order events must
	// land in it by their own timestamp.
	var oneDay struct {
		Total     int   `json:"total"`
		Breakdown []row `json:"breakdown"`
	}
	getJSON(t, s.URL("reporter")+"/reports/events?from=2025-06-11&to=2025-06-11", &oneDay)
	wantDay := 0
	for _, n := range dayCounts {
		wantDay += n
	}
	if oneDay.Total != wantDay {
		t.Errorf("one-day total: got %d; want %d", oneDay.Total, wantDay)
	}

	var rev struct {
		Total struct {
			Revenue      string `json:"revenue"`
			Transactions int    `json:"transactions"`
		} `json:"total"`
	}
	getJSON(t, s.URL("reporter")+"/reports/revenue", &rev)
	if got, want := rev.Total.Revenue, formatCents(cents[0]+cents[1]); got != want {
		t.Errorf("revenue: got %s; want %s", got, want)
	}
	if got, want := rev.Total.Transactions, tx[0]+tx[1]; got != want {
		t.Errorf("transactions: got %d; want %d", got, want)
	}
}

func toCents(t *testing.T, amount string) int64 {
	whole, frac, _ := strings.Cut(amount, ".")
	frac = (frac + "00")[:2]
	n, err := strconv.ParseInt(whole+frac, 10, 64)
	if err != nil {
		t.Fatalf("amount %q: %v", amount, err)
	}
	return n
}

func formatCents(c int64) string { return fmt.Sprintf("%d.%02d", c/100, c%100) }

// TestSIGTERMLosesNothing stops each service with SIGTERM while load runs:
// each must exit 0 on its own, and after restarts every acknowledged event
// is stored exactly once.
func TestSIGTERMLosesNothing(t *testing.T) {
	s := startStack(t, nil)
	l := newLoader(s.URL("gateway"), 7)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); l.run(ctx) }()

	for _, name := range []string{"fb-collector", "ttk-collector", "reporter", "gateway"} {
		time.Sleep(time.Second)
		p := s.Proc(name)
		if err := p.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case <-p.Done():
		case <-time.After(90 * time.Second):
			t.Fatalf("%s did not exit within 90s of SIGTERM", name)
		}
		if code := p.Wait(); code != 0 {
			t.Errorf("%s exited with %d after SIGTERM; want 0", name, code)
		}
		if err := s.Restart(context.Background(), name); err != nil {
			t.Fatalf("restart %s: %v", name, err)
		}
	}
	time.Sleep(time.Second)
	cancel()
	wg.Wait()
	assertExactlyOnce(t, s, l)
}

// TestCollectorKilledMidBatch SIGKILLs a collector while it stores: the
// messages it held are redelivered to its restart and stored once.
func TestCollectorKilledMidBatch(t *testing.T) {
	short := []string{"ACK_WAIT=2s"}
	s := startStack(t, map[string][]string{"fb-collector": short, "ttk-collector": short})
	l := newLoader(s.URL("gateway"), 99)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); l.run(ctx) }()

	for _, name := range []string{"fb-collector", "ttk-collector"} {
		time.Sleep(1500 * time.Millisecond)
		p := s.Proc(name)
		if err := p.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if code := p.Wait(); code == 0 {
			t.Errorf("%s: exit code 0 after SIGKILL; the kill did not land", name)
		}
		time.Sleep(500 * time.Millisecond)
		if err := s.Restart(context.Background(), name); err != nil {
			t.Fatalf("restart %s: %v", name, err)
		}
	}
	time.Sleep(time.Second)
	cancel()
	wg.Wait()
	assertExactlyOnce(t, s, l)

	// The kills must have left messages unacknowledged, or this test proved
	// nothing: the restarted collectors saw them again.
	redelivered := 0.0
	for _, name := range []string{"fb-collector", "ttk-collector"} {
		prefix := strings.ReplaceAll(name, "-", "_")
		redelivered += metricValue(t, s.URL(name)+"/metrics", prefix+"_redeliveries_total")
	}
	if redelivered == 0 {
		t.Error("no message was redelivered after the kills; want the killed batches redelivered")
	}
	t.Logf("redelivered after the kills: %.0f", redelivered)
}

// metricValue returns the sum of a metric's samples on a /metrics page.
func metricValue(t *testing.T, url, name string) float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	sum, found := 0.0, false
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, name+" ") && !strings.HasPrefix(line, name+"{") {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		sum, found = sum+v, true
	}
	if !found {
		t.Fatalf("metric %s not exposed at %s", name, url)
	}
	return sum
}

// TestPublisherAgainstStack runs the publisher binary as a user would and
// checks its requests were all accepted and what it sent is stored.
func TestPublisherAgainstStack(t *testing.T) {
	s := startStack(t, nil)
	var out bytes.Buffer
	cmd := exec.Command(filepath.Join(binDir, "publisher"))
	cmd.Env = append(os.Environ(),
		"EVENT_ENDPOINT="+s.URL("gateway")+"/webhook",
		"TOTAL_EVENTS=6000", "MIN_BATCH=500", "MAX_BATCH=1500",
		"PUBLISH_INTERVAL=200ms", "CORRUPT_EVERY=2", "SEED=5", "LOG_LEVEL=warn")
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("publisher: %v\n%s", err, out.String())
	}
	summary := out.String()
	accepted := summaryField(t, summary, "accepted")
	// TOTAL_EVENTS counts the corrupted events too; some of those stay
	// valid (a corruption that does not apply to the event's source).
	if corrupted := summaryField(t, summary, "corrupted sent"); accepted < 6000-corrupted || accepted > 6000 {
		t.Errorf("accepted: got %d; want 6000 less at most the %d corrupted\n%s", accepted, corrupted, summary)
	}
	if n := summaryField(t, summary, "status 202"); n != summaryField(t, summary, "requests") {
		t.Errorf("requests answered 202: got %d; want all\n%s", n, summary)
	}
	want := accepted - summaryField(t, summary, "duplicates sent")
	deadline := time.Now().Add(time.Minute)
	for {
		got := len(storedIDs(t, s.DatabaseURL()))
		if got == int(want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stored events: got %d; want %d\n%s", got, want, summary)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func summaryField(t *testing.T, summary, name string) int64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `\s+(\d+)`).FindStringSubmatch(summary)
	if m == nil {
		t.Fatalf("no %q line in the publisher's summary:\n%s", name, summary)
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	return n
}
