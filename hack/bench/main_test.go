package main

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eventpipe/eventpipe/pkg/config"
)

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name      string
		args      []string
		env       map[string]string
		wantSize  string
		wantParts []string
		wantErr   string
		check     func(t *testing.T, s Sizes)
	}{
		{name: "defaults to ci and every part", wantSize: "ci", wantParts: allParts,
			check: func(t *testing.T, s Sizes) {
				if s.Backlog != 100_000 || s.RateDuration != 10*time.Second {
					t.Errorf("got backlog %d, rate duration %s; want the ci preset", s.Backlog, s.RateDuration)
				}
			}},
		{name: "size from the environment", env: map[string]string{"BENCH_SIZE": "full"}, wantSize: "full", wantParts: allParts,
			check: func(t *testing.T, s Sizes) {
				if s.Backlog != 1_000_000 || !slices.Equal(s.Rates, []int{5000, 10000, 20000, 25000}) {
					t.Errorf("got backlog %d, rates %v; want the full preset", s.Backlog, s.Rates)
				}
			}},
		{name: "flag wins over environment", args: []string{"-size", "ci"}, env: map[string]string{"BENCH_SIZE": "full"}, wantSize: "ci", wantParts: allParts},
		{name: "parts run in suite order, once", args: []string{"-parts", "reports, gateway,reports"}, wantSize: "ci", wantParts: []string{"gateway", "reports"}},
		{name: "overrides", args: []string{"-size", "full", "-report-events", "1_000_000", "-rates", "5000,30000", "-backlog", "200000"},
			wantSize: "full", wantParts: allParts,
			check: func(t *testing.T, s Sizes) {
				if !slices.Equal(s.ReportEvents, []int{1_000_000}) || !slices.Equal(s.Rates, []int{5000, 30000}) || s.Backlog != 200000 {
					t.Errorf("got report events %v, rates %v, backlog %d; want the overrides", s.ReportEvents, s.Rates, s.Backlog)
				}
			}},
		{name: "unknown size", args: []string{"-size", "huge"}, wantErr: "-size"},
		{name: "unknown part", args: []string{"-parts", "gateway,chart"}, wantErr: `unknown part "chart"`},
		{name: "no part", args: []string{"-parts", ","}, wantErr: "no part"},
		{name: "bad list", args: []string{"-rates", "5k"}, wantErr: "-rates"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var usage bytes.Buffer
			c, err := parseFlags(tt.args, config.MapLookup(tt.env), &usage)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v; want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Size != tt.wantSize || !slices.Equal(c.Parts, tt.wantParts) {
				t.Errorf("got size %s, parts %v; want %s, %v", c.Size, c.Parts, tt.wantSize, tt.wantParts)
			}
			if tt.check != nil {
				tt.check(t, c.Sizes)
			}
		})
	}
}

func TestParseSummary(t *testing.T) {
	text := `seed             7
duration         10.012s
requests         10
events sent      200001 (19975.9/s)
duplicates sent  0
corrupted sent   1
accepted         199990
rejected         1
network errors   2
status 202       8
status 503       1
`
	got, err := parseSummary(text)
	if err != nil {
		t.Fatal(err)
	}
	want := publisherSummary{requests: 10, eventsSent: 200001, accepted: 199990, networkErrors: 2, non2xx: 1}
	if got != want {
		t.Errorf("got %+v; want %+v", got, want)
	}
	if _, err := parseSummary("publisher: EVENT_ENDPOINT: bad\n"); err == nil {
		t.Error("got no error for output without a summary; want one")
	}
}

// sawtooth returns lag samples every half second over seconds: each second
// a POST of rate events lands just after it is due and is drained within
// drainIn, on top of a backlog growing by grow events per second.
func sawtooth(rate int, seconds float64, drainIn, grow float64) []lagSample {
	var out []lagSample
	for t := 0.0; t <= seconds; t += 0.5 {
		phase := t - float64(int(t))
		lag := 0.0
		if phase > 0 && phase < drainIn {
			lag = float64(rate) * (1 - phase/drainIn)
		}
		out = append(out, lagSample{T: t, Lag: int64(lag + grow*t), Due: phase == 0})
	}
	return out
}

func TestJudge(t *testing.T) {
	tests := []struct {
		name        string
		run         E2ERun
		wantBounded bool
		wantWhy     string
	}{
		{name: "keeps up", wantBounded: true, run: E2ERun{Rate: 20000, Seconds: 60, PublisherSeconds: 59.6, EndSeconds: 60,
			LagEnd: 0, Lag: sawtooth(20000, 60, 0.6, 0)}},
		{name: "non-2xx answers", wantWhy: "non-2xx", run: E2ERun{Rate: 20000, Seconds: 60, PublisherSeconds: 59.6, EndSeconds: 60,
			Non2xx: 1, Lag: sawtooth(20000, 60, 0.6, 0)}},
		{name: "gateway fell behind", wantWhy: "gateway fell behind", run: E2ERun{Rate: 20000, Seconds: 60, PublisherSeconds: 64, EndSeconds: 64,
			Lag: sawtooth(20000, 64, 0.6, 0)}},
		{name: "lag at the end", wantWhy: "lag at the end", run: E2ERun{Rate: 20000, Seconds: 60, PublisherSeconds: 59.6, EndSeconds: 60,
			LagEnd: 25000, Lag: sawtooth(20000, 60, 0.6, 0)}},
		{name: "growing lag", wantWhy: "lag growing", run: E2ERun{Rate: 20000, Seconds: 60, PublisherSeconds: 59.6, EndSeconds: 60,
			LagEnd: 15000, Lag: sawtooth(20000, 60, 0.6, 500)}},
		{name: "too short to tell", wantWhy: "too few", run: E2ERun{Rate: 5000, Seconds: 60, PublisherSeconds: 59.6, EndSeconds: 60}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.run
			judge(&r)
			if r.Bounded != tt.wantBounded || !strings.Contains(r.Why, tt.wantWhy) {
				t.Errorf("got bounded %v (%s); want %v with a reason containing %q", r.Bounded, r.Why, tt.wantBounded, tt.wantWhy)
			}
		})
	}
}

func TestHighestBoundedRate(t *testing.T) {
	tests := []struct {
		name string
		runs []E2ERun
		want int
	}{
		{"a lower rate failed", []E2ERun{{Rate: 25000}, {Rate: 5000, Bounded: true}, {Rate: 20000, Bounded: true}, {Rate: 10000}}, 5000},
		{"all held", []E2ERun{{Rate: 10000, Bounded: true}, {Rate: 5000, Bounded: true}}, 10000},
		{"none held", []E2ERun{{Rate: 5000}}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := highestBounded(tt.runs); got != tt.want {
				t.Errorf("got %d; want %d", got, tt.want)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	var d []time.Duration
	for i := 100; i >= 1; i-- {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	got := summarize(d)
	want := Latency{N: 100, P50: 50, P95: 95, P99: 99, Max: 100}
	if got != want {
		t.Errorf("got %+v; want %+v", got, want)
	}
	if got := summarize([]time.Duration{3 * time.Millisecond}); got.P99 != 3 || got.P50 != 3 {
		t.Errorf("one sample: got %+v; want every percentile 3 ms", got)
	}
	if got := summarize(nil); got != (Latency{}) {
		t.Errorf("no sample: got %+v; want zero", got)
	}
}

func TestStampMakesEventIDsUnique(t *testing.T) {
	b := body(50, 3, time.Date(2025, 6, 10, 18, 0, 0, 0, time.UTC))
	tails, err := idTails(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(tails) != 50 {
		t.Fatalf("got %d eventIds; want 50", len(tails))
	}
	seen := map[string]bool{}
	for n := range uint64(3) {
		stamp(b, tails, n+1)
		var evs []struct {
			EventID string `json:"eventId"`
		}
		if err := json.Unmarshal(b, &evs); err != nil {
			t.Fatalf("stamped body is not JSON: %v", err)
		}
		for _, e := range evs {
			if seen[e.EventID] {
				t.Fatalf("eventId %s repeated", e.EventID)
			}
			seen[e.EventID] = true
		}
	}
}

func TestThousands(t *testing.T) {
	for n, want := range map[int]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", -25000: "-25,000"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d): got %s; want %s", n, got, want)
		}
	}
}
