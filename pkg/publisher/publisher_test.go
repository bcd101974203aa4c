package publisher

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/eventpipe/eventpipe/pkg/event"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitLimit bounds every wait in these tests; it is only reached when the
// code under test is broken, never a speed assumption.
const waitLimit = 10 * time.Second

// gateway stands in for the real gateway: it records each POST and answers
// with answer, by default a 202 accepting everything.
type gateway struct {
	t      *testing.T
	srv    *httptest.Server
	answer func(n int, r *http.Request, events []json.RawMessage) (int, string)

	mu       sync.Mutex
	requests []recorded
	arrived  chan struct{} // one send per POST, never blocks
}

type recorded struct {
	header http.Header
	method string
	path   string
	events []json.RawMessage
}

func newGateway(t *testing.T, answer func(n int, r *http.Request, events []json.RawMessage) (int, string)) *gateway {
	t.Helper()
	g := &gateway{t: t, answer: answer, arrived: make(chan struct{}, 100000)}
	if g.answer == nil {
		g.answer = func(_ int, _ *http.Request, evs []json.RawMessage) (int, string) {
			return http.StatusAccepted, fmt.Sprintf(`{"accepted":%d,"rejected":0,"errors":[]}`, len(evs))
		}
	}
	g.srv = httptest.NewServer(http.HandlerFunc(g.serve))
	t.Cleanup(g.srv.Close)
	return g
}

func (g *gateway) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	var events []json.RawMessage
	if err := json.Unmarshal(body, &events); err != nil {
		g.t.Errorf("body: got %.100s...; want a JSON array: %v", body, err)
	}
	g.mu.Lock()
	n := len(g.requests)
	g.requests = append(g.requests, recorded{header: r.Header.Clone(), method: r.Method, path: r.URL.Path, events: events})
	g.mu.Unlock()
	g.arrived <- struct{}{}
	code, resp := g.answer(n, r, events)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, resp)
}

func (g *gateway) url() string { return g.srv.URL + "/webhook" }

func (g *gateway) recorded() []recorded {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]recorded(nil), g.requests...)
}

// waitArrivals waits until n POSTs have reached the gateway.
func (g *gateway) waitArrivals(t *testing.T, n int) {
	t.Helper()
	timeout := time.After(waitLimit)
	for range n {
		select {
		case <-g.arrived:
		case <-timeout:
			t.Fatalf("got fewer than %d POSTs within %s", n, waitLimit)
		}
	}
}

func testOptions(endpoint string) Options {
	return Options{
		Endpoint: endpoint,
		Interval: time.Millisecond,
		MinBatch: 10,
		MaxBatch: 10,
		Seed:     1,
	}
}

func run(t *testing.T, ctx context.Context, opts Options, g *gateway) Summary {
	t.Helper()
	sum, err := Run(ctx, opts, g.srv.Client(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return sum
}

func TestRunSendsArraysOfValidEvents(t *testing.T) {
	g := newGateway(t, nil)
	opts := testOptions(g.url())
	opts.Total = 500
	opts.MinBatch, opts.MaxBatch = 100, 100
	before := time.Now().Truncate(time.Millisecond)
	sum := run(t, context.Background(), opts, g)
	after := time.Now()

	reqs := g.recorded()
	if len(reqs) != 5 {
		t.Fatalf("POSTs: got %d; want 5", len(reqs))
	}
	allowed := map[string]bool{"Content-Type": true, "Content-Length": true, "User-Agent": true, "Accept-Encoding": true}
	ids := map[string]bool{}
	for i, r := range reqs {
		if r.method != http.MethodPost || r.path != "/webhook" {
			t.Errorf("request %d: got %s %s; want POST /webhook", i, r.method, r.path)
		}
		if got := r.header.Get("Content-Type"); got != "application/json" {
			t.Errorf("request %d Content-Type: got %q; want application/json", i, got)
		}
		for k := range r.header {
			if !allowed[k] {
				t.Errorf("request %d: got header %s; want none but the transport's", i, k)
			}
		}
		for j, raw := range r.events {
			e, err := event.Parse(raw)
			if err != nil {
				t.Fatalf("request %d event %d: %v", i, j, err)
			}
			if ids[e.ID] {
				t.Errorf("eventId %s: got it twice; want no duplicates at ratio 0", e.ID)
			}
			ids[e.ID] = true
			if e.Timestamp.Before(before) || e.Timestamp.After(after) {
				t.Errorf("timestamp: got %s; want within the run %s..%s", e.Timestamp, before, after)
			}
		}
	}
	want := Summary{Seed: 1, Requests: 5, EventsSent: 500, StatusCodes: map[int]int64{202: 5}, Accepted: 500}
	if got := countsOf(sum); !equalCounts(got, want) {
		t.Errorf("summary: got %+v; want %+v", got, want)
	}
	if sum.Duration <= 0 || sum.EventsPerSecond <= 0 {
		t.Errorf("got duration %s, %g events/s; want both positive", sum.Duration, sum.EventsPerSecond)
	}
}

// countsOf keeps the summary fields that do not depend on timing.
func countsOf(s Summary) Summary {
	s.Duration, s.DurationSeconds, s.EventsPerSecond = 0, 0, 0
	return s
}

func equalCounts(a, b Summary) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}

func TestBatchSizesWithinBounds(t *testing.T) {
	g := newGateway(t, nil)
	opts := testOptions(g.url())
	opts.MinBatch, opts.MaxBatch = 20, 60
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan Summary)
	go func() { done <- run(t, ctx, opts, g) }()
	g.waitArrivals(t, 30)
	cancel()
	sum := <-done

	reqs := g.recorded()
	if int64(len(reqs)) != sum.Requests {
		t.Errorf("POSTs: got %d at the gateway; want the %d of the summary", len(reqs), sum.Requests)
	}
	sizes := map[int]bool{}
	for i, r := range reqs {
		if n := len(r.events); n < 20 || n > 60 {
			t.Errorf("request %d: got %d events; want 20..60", i, n)
		}
		sizes[len(r.events)] = true
	}
	if len(sizes) < 2 {
		t.Errorf("got batch sizes %v; want them drawn at random", sizes)
	}
}

func TestTotalIsExact(t *testing.T) {
	tests := []struct {
		total, min, max int
		corruptEvery    int
		dup             float64
	}{
		{total: 1234, min: 100, max: 300, corruptEvery: 3, dup: 0.1},
		{total: 7, min: 10, max: 10, corruptEvery: 1},
		{total: 1, min: 5, max: 5, corruptEvery: 1},
		{total: 60, min: 6, max: 6, corruptEvery: 1},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d/%d..%d/every%d", tt.total, tt.min, tt.max, tt.corruptEvery), func(t *testing.T) {
			g := newGateway(t, nil)
			opts := testOptions(g.url())
			opts.Total = int64(tt.total)
			opts.MinBatch, opts.MaxBatch = tt.min, tt.max
			opts.CorruptEvery = tt.corruptEvery
			opts.DuplicateRatio = tt.dup
			sum := run(t, context.Background(), opts, g)
			got := 0
			for _, r := range g.recorded() {
				got += len(r.events)
			}
			if got != tt.total || sum.EventsSent != int64(tt.total) {
				t.Errorf("events: got %d at the gateway, %d in the summary; want %d", got, sum.EventsSent, tt.total)
			}
		})
	}
}

func TestCorruptedEventComesLast(t *testing.T) {
	g := newGateway(t, nil)
	opts := testOptions(g.url())
	opts.MinBatch, opts.MaxBatch = 5, 5
	opts.CorruptEvery = 1
	opts.Total = 40 * 6
	sum := run(t, context.Background(), opts, g)

	reqs := g.recorded()
	if len(reqs) != 40 || sum.Corrupted != 40 {
		t.Fatalf("got %d POSTs, %d corrupted; want 40 and 40", len(reqs), sum.Corrupted)
	}
	invalidLast := 0
	for i, r := range reqs {
		if len(r.events) != 6 {
			t.Fatalf("request %d: got %d events; want 5 plus a corrupted one", i, len(r.events))
		}
		for j, raw := range r.events[:5] {
			if _, err := event.Parse(raw); err != nil {
				t.Errorf("request %d event %d: got %v; want only the last event corrupted", i, j, err)
			}
		}
		if _, err := event.Parse(r.events[5]); err != nil {
			invalidLast++
		}
	}
	// Some corruptions leave the event valid, as with the real publisher,
	// but most do not.
	if invalidLast < 20 {
		t.Errorf("invalid last events: got %d of 40; want most", invalidLast)
	}
}

func TestDuplicatesRepeatEarlierEvents(t *testing.T) {
	g := newGateway(t, nil)
	opts := testOptions(g.url())
	opts.MinBatch, opts.MaxBatch = 200, 200
	opts.Total = 4000
	opts.DuplicateRatio = 0.3
	sum := run(t, context.Background(), opts, g)

	byID := map[string]string{}
	posts := map[string]map[int]bool{}
	repeats := 0
	for i, r := range g.recorded() {
		for _, raw := range r.events {
			e, err := event.Parse(raw)
			if err != nil {
				t.Fatal(err)
			}
			if prev, ok := byID[e.ID]; ok {
				repeats++
				if prev != string(raw) {
					t.Fatalf("eventId %s: got %s; want the bytes of its first copy %s", e.ID, raw, prev)
				}
			} else {
				byID[e.ID] = string(raw)
				posts[e.ID] = map[int]bool{}
			}
			posts[e.ID][i] = true
		}
	}
	if int64(repeats) != sum.Duplicates {
		t.Errorf("repeats: got %d at the gateway; want the %d of the summary", repeats, sum.Duplicates)
	}
	if repeats < 1000 || repeats > 1400 {
		t.Errorf("repeats: got %d of 4000; want about 30%%", repeats)
	}
	across := 0
	for _, p := range posts {
		if len(p) > 1 {
			across++
		}
	}
	if across == 0 {
		t.Error("got no event repeated in another POST; want some")
	}
}

func TestOutOfOrderTimestamps(t *testing.T) {
	g := newGateway(t, nil)
	opts := testOptions(g.url())
	opts.MinBatch, opts.MaxBatch = 1000, 1000
	opts.Total = 1000
	opts.OutOfOrder = time.Hour
	before := time.Now()
	run(t, context.Background(), opts, g)
	after := time.Now()

	var first, last time.Time
	for i, raw := range g.recorded()[0].events {
		e, err := event.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		if e.Timestamp.Before(before.Add(-time.Hour-time.Millisecond)) || e.Timestamp.After(after) {
			t.Errorf("event %d: got %s; want within an hour before the run", i, e.Timestamp)
		}
		if i == 0 || e.Timestamp.Before(first) {
			first = e.Timestamp
		}
		if i == 0 || e.Timestamp.After(last) {
			last = e.Timestamp
		}
	}
	if spread := last.Sub(first); spread < 30*time.Minute {
		t.Errorf("timestamps spread: got %s; want most of an hour", spread)
	}
}

// TestPostsOverlap checks that a slow gateway does not slow the publisher
// down: the second POST is sent while the first one still waits.
func TestPostsOverlap(t *testing.T) {
	var inFlight atomic.Int32
	overlapped := make(chan struct{})
	var once sync.Once
	g := newGateway(t, func(_ int, r *http.Request, evs []json.RawMessage) (int, string) {
		defer inFlight.Add(-1)
		if inFlight.Add(1) >= 2 {
			once.Do(func() { close(overlapped) })
		}
		select {
		case <-overlapped:
		case <-time.After(waitLimit):
		}
		return http.StatusAccepted, `{"accepted":1,"rejected":0}`
	})
	opts := testOptions(g.url())
	opts.MinBatch, opts.MaxBatch = 1, 1
	opts.Total = 3
	sum := run(t, context.Background(), opts, g)
	select {
	case <-overlapped:
	default:
		t.Fatal("got POSTs one after another; want the next sent while one is in flight")
	}
	if sum.StatusCodes[202] != 3 {
		t.Errorf("202 answers: got %d; want 3", sum.StatusCodes[202])
	}
}

func TestMaxInFlight(t *testing.T) {
	var inFlight, most atomic.Int32
	g := newGateway(t, func(int, *http.Request, []json.RawMessage) (int, string) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		// Long enough for several ticks to pass while this POST is held.
		time.Sleep(20 * time.Millisecond)
		return http.StatusAccepted, `{"accepted":1,"rejected":0}`
	})
	opts := testOptions(g.url())
	opts.MinBatch, opts.MaxBatch = 1, 1
	opts.Total = 5
	opts.MaxInFlight = 1
	sum := run(t, context.Background(), opts, g)
	if got := most.Load(); got != 1 {
		t.Errorf("POSTs in flight at once: got %d; want at most 1", got)
	}
	if sum.Requests != 5 {
		t.Errorf("requests: got %d; want 5", sum.Requests)
	}
}

func TestStatusCodesCountedWithoutRetry(t *testing.T) {
	g := newGateway(t, func(n int, _ *http.Request, evs []json.RawMessage) (int, string) {
		switch n % 4 {
		case 0:
			return http.StatusAccepted, `{"accepted":1,"rejected":0,"errors":[]}`
		case 1:
			return http.StatusBadRequest, `{"accepted":0,"rejected":1,"errors":[{"index":0,"error":"x"}]}`
		case 2:
			// Not the gateway's answer shape: counted by status only.
			return http.StatusInternalServerError, `{"accepted":99,"rejected":99}`
		default:
			return http.StatusServiceUnavailable, `{"error":"busy"}`
		}
	})
	opts := testOptions(g.url())
	opts.MinBatch, opts.MaxBatch = 1, 1
	opts.Total = 8
	sum := run(t, context.Background(), opts, g)

	if got := len(g.recorded()); got != 8 {
		t.Errorf("POSTs at the gateway: got %d; want 8, no retries", got)
	}
	want := Summary{
		Seed: 1, Requests: 8, EventsSent: 8,
		StatusCodes: map[int]int64{202: 2, 400: 2, 500: 2, 503: 2},
		Accepted:    2, Rejected: 2,
	}
	if got := countsOf(sum); !equalCounts(got, want) {
		t.Errorf("summary: got %+v; want %+v", got, want)
	}
}

func TestNetworkErrorsCounted(t *testing.T) {
	g := newGateway(t, nil)
	endpoint := g.url()
	g.srv.Close()
	opts := testOptions(endpoint)
	opts.MinBatch, opts.MaxBatch = 1, 1
	opts.Total = 3
	sum := run(t, context.Background(), opts, g)
	want := Summary{Seed: 1, Requests: 3, EventsSent: 3, StatusCodes: map[int]int64{}, NetworkErrors: 3}
	if got := countsOf(sum); !equalCounts(got, want) {
		t.Errorf("summary: got %+v; want %+v", got, want)
	}
}

func TestTimeout(t *testing.T) {
	g := newGateway(t, func(_ int, r *http.Request, _ []json.RawMessage) (int, string) {
		select {
		case <-r.Context().Done():
		case <-time.After(waitLimit):
		}
		return http.StatusAccepted, `{}`
	})
	opts := testOptions(g.url())
	opts.Total = 10
	opts.Timeout = 20 * time.Millisecond
	sum := run(t, context.Background(), opts, g)
	if sum.NetworkErrors != 1 || len(sum.StatusCodes) != 0 {
		t.Errorf("got %d network errors, statuses %v; want 1 timed out POST", sum.NetworkErrors, sum.StatusCodes)
	}
}

func TestCancelWaitsForPostsInFlight(t *testing.T) {
	release := make(chan struct{})
	g := newGateway(t, func(int, *http.Request, []json.RawMessage) (int, string) {
		select {
		case <-release:
		case <-time.After(waitLimit):
		}
		return http.StatusAccepted, `{"accepted":10,"rejected":0}`
	})
	opts := testOptions(g.url())
	opts.ShutdownGrace = waitLimit
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan Summary)
	go func() { done <- run(t, ctx, opts, g) }()
	g.waitArrivals(t, 3)
	cancel()
	select {
	case sum := <-done:
		t.Fatalf("Run returned %+v while POSTs were in flight; want it to wait", sum)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	sum := <-done
	if sum.NetworkErrors != 0 || sum.StatusCodes[202] != sum.Requests || sum.Requests < 3 {
		t.Errorf("got %d requests, statuses %v, %d network errors; want every POST answered 202",
			sum.Requests, sum.StatusCodes, sum.NetworkErrors)
	}
	if sum.Accepted != 10*sum.Requests {
		t.Errorf("accepted: got %d; want %d", sum.Accepted, 10*sum.Requests)
	}
}

func TestCancelAbortsAfterGrace(t *testing.T) {
	g := newGateway(t, func(_ int, r *http.Request, _ []json.RawMessage) (int, string) {
		select {
		case <-r.Context().Done():
		case <-time.After(waitLimit):
		}
		return http.StatusAccepted, `{}`
	})
	opts := testOptions(g.url())
	opts.ShutdownGrace = 20 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan Summary)
	go func() { done <- run(t, ctx, opts, g) }()
	g.waitArrivals(t, 2)
	cancel()
	var sum Summary
	select {
	case sum = <-done:
	case <-time.After(waitLimit):
		t.Fatal("Run still waiting long after the grace period")
	}
	if sum.NetworkErrors != sum.Requests || sum.Requests < 2 {
		t.Errorf("got %d requests, %d network errors; want every POST aborted", sum.Requests, sum.NetworkErrors)
	}
}

func TestInvalidOptions(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Options)
		want   string
	}{
		{"endpoint", func(o *Options) { o.Endpoint = "localhost:3000" }, "endpoint"},
		{"min above max", func(o *Options) { o.MinBatch, o.MaxBatch = 10, 5 }, "min batch"},
		{"ratio", func(o *Options) { o.DuplicateRatio = 1.5 }, "duplicate ratio"},
		{"total", func(o *Options) { o.Total = -1 }, "total"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := testOptions("http://127.0.0.1:1/webhook")
			tt.change(&opts)
			_, err := Run(context.Background(), opts, nil, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v; want an error about %s", err, tt.want)
			}
		})
	}
}

func TestBuilderIsDeterministic(t *testing.T) {
	opts := testOptions("http://x")
	opts.DuplicateRatio = 0.2
	opts.CorruptEvery = 2
	opts.OutOfOrder = time.Minute
	now := time.Date(2025, 6, 10, 18, 0, 0, 0, time.UTC)
	bodies := func(seed int64) []byte {
		opts.Seed = seed
		b := newBuilder(opts)
		var all []byte
		for range 20 {
			size, corrupt := b.plan(0)
			all = append(b.build(all, size, corrupt, now).body, '\n')
		}
		return all
	}
	if a, b := bodies(3), bodies(3); !bytes.Equal(a, b) {
		t.Error("seed 3 twice: got different bodies; want the same")
	}
	if a, b := bodies(3), bodies(4); bytes.Equal(a, b) {
		t.Error("seeds 3 and 4: got the same bodies; want different")
	}
}

func TestWriteText(t *testing.T) {
	s := Summary{
		Seed: 9, Requests: 3, EventsSent: 3000, Corrupted: 1, Duplicates: 2,
		StatusCodes: map[int]int64{503: 1, 202: 2}, NetworkErrors: 4,
		Accepted: 1999, Rejected: 1, Duration: 1500 * time.Millisecond, EventsPerSecond: 2000,
	}
	var b strings.Builder
	s.WriteText(&b)
	out := b.String()
	for _, want := range []string{
		`seed +9\n`, `duration +1\.5s\n`, `requests +3\n`, `events sent +3000 \(2000\.0/s\)\n`,
		`duplicates sent +2\n`, `corrupted sent +1\n`, `accepted +1999\n`, `rejected +1\n`,
		`network errors +4\n`, `status 202 +2\n`, `status 503 +1\n`,
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("got\n%s\nwant a line matching %s", out, want)
		}
	}
	if strings.Index(out, "status 202") > strings.Index(out, "status 503") {
		t.Errorf("got\n%s\nwant status codes in order", out)
	}
}

// BenchmarkBuildBody measures what bounds the publisher's rate: generating
// and encoding a full-size 50,000-event body.
func BenchmarkBuildBody(b *testing.B) {
	opts := DefaultOptions()
	opts.Seed = 1
	bld := newBuilder(opts)
	now := time.Now()
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = bld.build(buf[:0], 50000, false, now).body
	}
	b.SetBytes(int64(len(buf)))
	b.ReportMetric(float64(b.N)*50000/b.Elapsed().Seconds(), "events/s")
}
