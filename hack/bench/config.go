package main

import (
	"cmp"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Parts of the suite, in run order.
var allParts = []string{"gateway", "collectors", "e2e", "reports"}

// Sizes are the workload of one run.
type Sizes struct {
	GatewayBodies   []int         `json:"gatewayBodies"`
	GatewayDuration time.Duration `json:"-"`
	GatewayClients  int           `json:"gatewayClients"`
	RSSRounds       int           `json:"rssRounds"`
	Backlog         int           `json:"backlog"`
	DuplicatePcts   []int         `json:"duplicatePercents"`
	Rates           []int         `json:"rates"`
	RateDuration    time.Duration `json:"-"`
	ReportEvents    []int         `json:"reportEvents"`
	ReportSamples   int           `json:"reportSamples"`
	ReportBudget    time.Duration `json:"-"`

	GatewaySeconds float64 `json:"gatewaySecondsPerBody"`
	RateSeconds    float64 `json:"rateSeconds"`
	ReportSeconds  float64 `json:"reportBudgetSecondsPerQuery"`
}

// sizePresets: "full" is issue 6's workload, run by hand; "ci" is a
// reduced one that finishes in a few minutes, so the suite runs in CI and
// cannot rot.
var sizePresets = map[string]Sizes{
	"full": {
		GatewayBodies:   []int{1, 100, 1000, 50000},
		GatewayDuration: 20 * time.Second,
		GatewayClients:  2,
		RSSRounds:       5,
		Backlog:         1_000_000,
		DuplicatePcts:   []int{0, 10},
		Rates:           []int{5000, 10000, 20000, 25000},
		RateDuration:    60 * time.Second,
		ReportEvents:    []int{1_000_000, 10_000_000},
		ReportSamples:   50,
		ReportBudget:    60 * time.Second,
	},
	"ci": {
		GatewayBodies:   []int{1, 100, 1000, 50000},
		GatewayDuration: 3 * time.Second,
		GatewayClients:  2,
		RSSRounds:       2,
		Backlog:         100_000,
		DuplicatePcts:   []int{0, 10},
		Rates:           []int{5000, 20000},
		RateDuration:    10 * time.Second,
		ReportEvents:    []int{100_000},
		ReportSamples:   10,
		ReportBudget:    10 * time.Second,
	},
}

// benchConfig is the command line.
type benchConfig struct {
	Size    string   `json:"size"`
	Parts   []string `json:"parts"`
	Sizes   Sizes    `json:"sizes"`
	OutDir  string   `json:"-"`
	BinDir  string   `json:"-"`
	WorkDir string   `json:"-"`
	Keep    bool     `json:"-"`
	PGFast  bool     `json:"postgresFsyncOff"`
	Seed    int64    `json:"seed"`
}

// parseFlags reads the command line; BENCH_SIZE and BENCH_PARTS (through
// lookup) are the defaults of -size and -parts.
func parseFlags(args []string, lookup func(string) (string, bool), usage io.Writer) (benchConfig, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(usage)
	defSize, ok := lookup("BENCH_SIZE")
	if !ok || defSize == "" {
		defSize = "ci"
	}
	defParts, ok := lookup("BENCH_PARTS")
	if !ok || defParts == "" {
		defParts = strings.Join(allParts, ",")
	}
	var (
		c             benchConfig
		parts         string
		bodies        string
		rates         string
		reportEvents  string
		backlog       int
		gwDuration    time.Duration
		gwClients     int
		rateDuration  time.Duration
		reportSamples int
	)
	fs.StringVar(&c.Size, "size", defSize, "workload: ci (reduced, a few minutes) or full (issue 6's sizes, run by hand); env BENCH_SIZE")
	fs.StringVar(&parts, "parts", defParts, "comma-separated parts to run: "+strings.Join(allParts, ",")+"; env BENCH_PARTS")
	fs.StringVar(&c.OutDir, "out", "bench-results", "folder the JSON results are written to")
	fs.StringVar(&c.BinDir, "bin", "", "folder of already built binaries (make build's .bin); empty builds them")
	fs.StringVar(&c.WorkDir, "dir", "", "work folder for NATS, PostgreSQL and logs; empty makes a temporary one")
	fs.BoolVar(&c.Keep, "keep", false, "keep the work folder (logs, data) after the run")
	fs.BoolVar(&c.PGFast, "pg-fast", false, "run PostgreSQL with fsync off (not how production runs)")
	fs.Int64Var(&c.Seed, "seed", 1, "seed of every generated event stream")
	fs.StringVar(&bodies, "gateway-bodies", "", "override: events per body of the gateway part, comma-separated")
	fs.DurationVar(&gwDuration, "gateway-duration", 0, "override: how long each gateway body size runs")
	fs.IntVar(&gwClients, "gateway-clients", 0, "override: concurrent clients of the gateway part")
	fs.IntVar(&backlog, "backlog", 0, "override: events in the collectors' backlog")
	fs.StringVar(&rates, "rates", "", "override: end-to-end rates in events/s, comma-separated")
	fs.DurationVar(&rateDuration, "rate-duration", 0, "override: how long each end-to-end rate runs")
	fs.StringVar(&reportEvents, "report-events", "", "override: stored events of the report part, comma-separated")
	fs.IntVar(&reportSamples, "report-samples", 0, "override: timed requests per report query")
	if err := fs.Parse(args); err != nil {
		return benchConfig{}, err
	}
	if fs.NArg() > 0 {
		return benchConfig{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	sz, ok := sizePresets[c.Size]
	if !ok {
		return benchConfig{}, fmt.Errorf("-size: must be ci or full, got %q", c.Size)
	}
	for p := range strings.SplitSeq(parts, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if !slices.Contains(allParts, p) {
			return benchConfig{}, fmt.Errorf("-parts: unknown part %q (known: %s)", p, strings.Join(allParts, ","))
		}
		if !slices.Contains(c.Parts, p) {
			c.Parts = append(c.Parts, p)
		}
	}
	if len(c.Parts) == 0 {
		return benchConfig{}, errors.New("-parts: no part selected")
	}
	// Run order is fixed, whatever order they were given in.
	slices.SortFunc(c.Parts, func(a, b string) int { return slices.Index(allParts, a) - slices.Index(allParts, b) })

	var err error
	if sz.GatewayBodies, err = intList("-gateway-bodies", bodies, sz.GatewayBodies); err != nil {
		return benchConfig{}, err
	}
	if sz.Rates, err = intList("-rates", rates, sz.Rates); err != nil {
		return benchConfig{}, err
	}
	if sz.ReportEvents, err = intList("-report-events", reportEvents, sz.ReportEvents); err != nil {
		return benchConfig{}, err
	}
	if backlog < 0 || gwClients < 0 || reportSamples < 0 || gwDuration < 0 || rateDuration < 0 {
		return benchConfig{}, errors.New("overrides must not be negative")
	}
	sz.Backlog = cmp.Or(backlog, sz.Backlog)
	sz.GatewayClients = cmp.Or(gwClients, sz.GatewayClients)
	sz.GatewayDuration = cmp.Or(gwDuration, sz.GatewayDuration)
	sz.RateDuration = cmp.Or(rateDuration, sz.RateDuration)
	sz.ReportSamples = cmp.Or(reportSamples, sz.ReportSamples)
	sz.GatewaySeconds = sz.GatewayDuration.Seconds()
	sz.RateSeconds = sz.RateDuration.Seconds()
	sz.ReportSeconds = sz.ReportBudget.Seconds()
	c.Sizes = sz
	return c, nil
}

// intList parses "1,100,1000" (underscores allowed: 1_000_000); empty
// keeps def.
func intList(name, s string, def []int) ([]int, error) {
	if strings.TrimSpace(s) == "" {
		return def, nil
	}
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.ReplaceAll(strings.TrimSpace(f), "_", ""))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%s: must be positive integers separated by commas, got %q", name, s)
		}
		out = append(out, n)
	}
	return out, nil
}
