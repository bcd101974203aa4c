package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Results is everything a run measured, as written to bench-results/.
type Results struct {
	Command         []string          `json:"command"`
	Config          benchConfig       `json:"config"`
	Machine         Machine           `json:"machine"`
	Started         time.Time         `json:"started"`
	DurationSeconds float64           `json:"durationSeconds"`
	Gateway         *GatewayResults   `json:"gateway,omitempty"`
	Collectors      *CollectorResults `json:"collectors,omitempty"`
	E2E             *E2EResults       `json:"e2e,omitempty"`
	Reports         *ReportResults    `json:"reports,omitempty"`
	Targets         []Target          `json:"targets"`
	Errors          []string          `json:"errors,omitempty"`
}

// Target is one row of issue 6's targets next to what was measured.
type Target struct {
	Measure  string  `json:"measure"`
	Target   string  `json:"target"`
	Measured string  `json:"measured,omitempty"`
	Value    float64 `json:"value,omitempty"`
	// Status is "met", "not met" or "not measured".
	Status string `json:"status"`
	// Note says when the workload was smaller than the target's, so the
	// status is only indicative.
	Note string `json:"note,omitempty"`
}

const (
	met         = "met"
	notMet      = "not met"
	notMeasured = "not measured"
)

// Issue 6's targets.
const (
	targetE2E          = 20000
	targetGateway50k   = 50000
	targetGatewayRSSMB = 300
	targetCollectors   = 40000
	targetReportsMs    = 50
	targetDemoMs       = 500
	targetReportEvents = 10_000_000
	targetBacklog      = 1_000_000
	targetRateSeconds  = 60
)

func status(ok bool) string {
	if ok {
		return met
	}
	return notMet
}

// targets compares the results with issue 6's targets.
func (r *Results) targets() []Target {
	var out []Target

	t := Target{Measure: "end to end, sustained with bounded lag", Target: ">= 20,000 events/s", Status: notMeasured}
	if r.E2E != nil && len(r.E2E.Runs) > 0 {
		v := r.E2E.HighestBoundedRate
		t.Value, t.Measured, t.Status = float64(v), fmt.Sprintf("%s events/s (highest bounded rate tested)", thousands(v)), status(v >= targetE2E)
		if r.Config.Sizes.RateDuration < targetRateSeconds*time.Second {
			t.Note = fmt.Sprintf("indicative: %.0f-s runs, the target asks for at least 60 s", r.Config.Sizes.RateDuration.Seconds())
		}
	}
	out = append(out, t)

	t = Target{Measure: "gateway, 50,000-event bodies", Target: ">= 50,000 events/s", Status: notMeasured}
	if r.Gateway != nil {
		for _, b := range r.Gateway.Bodies {
			if b.Events == rssBodyEvents {
				t.Value, t.Measured, t.Status = b.EventsPerSecond, thousands(round(b.EventsPerSecond))+" events/s", status(b.EventsPerSecond >= targetGateway50k && b.Failed == 0)
			}
		}
	}
	out = append(out, t)

	t = Target{Measure: "gateway peak RSS, two concurrent 50,000-event bodies", Target: "<= 300 MB", Status: notMeasured}
	if r.Gateway != nil && r.Gateway.RSS != nil {
		p := r.Gateway.RSS.PeakMB
		t.Value, t.Measured, t.Status = p, fmt.Sprintf("%.0f MB", p), status(p <= targetGatewayRSSMB && r.Gateway.RSS.Failed == 0)
	}
	out = append(out, t)

	t = Target{Measure: "collectors, backlog drain with 10% duplicates", Target: ">= 40,000 events/s", Status: notMeasured}
	if r.Collectors != nil {
		for _, c := range r.Collectors.Runs {
			if c.DuplicatePct == 10 {
				t.Value, t.Measured, t.Status = c.EventsPerSecond, thousands(round(c.EventsPerSecond))+" events/s", status(c.EventsPerSecond >= targetCollectors)
				if c.Backlog < targetBacklog {
					t.Note = fmt.Sprintf("indicative: a %s-event backlog, the issue's is 1,000,000", thousands(c.Backlog))
				}
			}
		}
	}
	out = append(out, t)

	out = append(out,
		r.reportTarget("/reports/events, /reports/revenue at 10M events, any range", "p95 <= 50 ms", targetReportsMs, "events", "revenue"),
		r.reportTarget("/reports/demographics at 10M events", "p95 <= 500 ms", targetDemoMs, "demographics"))
	return out
}

// reportTarget takes the worst p95 of the given reports at the largest
// size measured.
func (r *Results) reportTarget(measure, target string, limitMs float64, reports ...string) Target {
	t := Target{Measure: measure, Target: target, Status: notMeasured}
	if r.Reports == nil || len(r.Reports.Sizes) == 0 {
		return t
	}
	largest := r.Reports.Sizes[0]
	for _, s := range r.Reports.Sizes {
		if s.Events > largest.Events {
			largest = s
		}
	}
	worst, where, failed := -1.0, "", 0
	for _, q := range largest.Queries {
		for _, name := range reports {
			if q.Report == name {
				failed += q.Failed
				if q.Latency.P95 > worst {
					worst, where = q.Latency.P95, q.Report+" "+q.Kind
				}
			}
		}
	}
	if worst < 0 {
		return t
	}
	t.Value = worst
	t.Measured = fmt.Sprintf("worst p95 %s ms (%s) at %s events", fmtMs(worst), where, thousands(largest.Events))
	t.Status = status(worst <= limitMs && failed == 0)
	if largest.Events < targetReportEvents {
		t.Note = fmt.Sprintf("indicative: %s stored events, the target is at 10,000,000", thousands(largest.Events))
	}
	return t
}

// writeTable prints the one table of the run: a row per measurement, with
// the target it answers to where it has one.
func (r *Results) writeTable(w io.Writer) {
	fmt.Fprintf(w, "eventpipe benchmarks: size %s, parts %s, %s, took %s\n", r.Config.Size, strings.Join(r.Config.Parts, ","),
		r.Started.UTC().Format(time.RFC3339), (time.Duration(r.DurationSeconds) * time.Second).String())
	fmt.Fprintf(w, "machine: %s\n", r.Machine)
	fmt.Fprintf(w, "command: %s\n\n", strings.Join(r.Command, " "))

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PART\tCASE\tRESULT\tLATENCY\tTARGET\tCPU CORES USED")
	tgt := map[string]Target{}
	for _, t := range r.targets() {
		tgt[t.Measure] = t
	}
	mark := func(measure string) string {
		t, ok := tgt[measure]
		if !ok || t.Status == notMeasured {
			return ""
		}
		s := t.Target + ": " + strings.ToUpper(t.Status)
		if t.Note != "" {
			s += " *"
		}
		return s
	}
	row := func(cols ...string) { fmt.Fprintln(tw, strings.Join(cols, "\t")) }

	if g := r.Gateway; g != nil {
		for _, b := range g.Bodies {
			res := fmt.Sprintf("%s events/s (%s req/s)", thousands(round(b.EventsPerSecond)), thousands(round(float64(b.Requests-b.Failed)/b.Seconds)))
			if b.Failed > 0 {
				res += fmt.Sprintf(", %d FAILED", b.Failed)
			}
			target := ""
			if b.Events == rssBodyEvents {
				target = mark("gateway, 50,000-event bodies")
			}
			row("gateway", fmt.Sprintf("%s-event bodies, %d clients, %.0f s", thousands(b.Events), b.Clients, b.Seconds),
				res, fmt.Sprintf("p50 %s, p99 %s ms (n=%d)", fmtMs(b.Latency.P50), fmtMs(b.Latency.P99), b.Latency.N), target, b.CPU.String())
		}
		if s := g.RSS; s != nil {
			res := fmt.Sprintf("peak %.0f MB (VmHWM; %.0f MB idle)", s.PeakMB, s.BaselineMB)
			if s.Failed > 0 {
				res += fmt.Sprintf(", %d FAILED", s.Failed)
			}
			row("gateway", fmt.Sprintf("RSS, %d concurrent %s-event bodies x %d", s.Concurrent, thousands(s.EventsPerBody), s.Rounds),
				res, fmt.Sprintf("p50 %s, max %s ms", fmtMs(s.RoundLatencyMs.P50), fmtMs(s.RoundLatencyMs.Max)),
				mark("gateway peak RSS, two concurrent 50,000-event bodies"), "")
		}
	}
	if c := r.Collectors; c != nil {
		for _, run := range c.Runs {
			target := ""
			if run.DuplicatePct == 10 {
				target = mark("collectors, backlog drain with 10% duplicates")
			}
			row("collectors", fmt.Sprintf("drain %s events, %d%% duplicates", thousands(run.Backlog), run.DuplicatePct),
				fmt.Sprintf("%s events/s (%s new rows/s) in %.1f s", thousands(round(run.EventsPerSecond)), thousands(round(run.RowsPerSecond)), run.Seconds),
				"", target, run.CPU.String())
		}
	}
	if e := r.E2E; e != nil {
		for _, run := range e.Runs {
			state := "bounded"
			if !run.Bounded {
				state = "NOT bounded"
			}
			drain := "not drained"
			if run.DrainSeconds >= 0 {
				drain = fmt.Sprintf("drained %.1f s later", run.DrainSeconds)
			}
			row("e2e", fmt.Sprintf("publisher at %s events/s for %.0f s", thousands(run.Rate), run.Seconds),
				fmt.Sprintf("stored %s/s; lag at end %s, %s; %s", thousands(round(run.StoredPerSecond)), thousands(run.LagEnd), drain, state),
				"", "", run.CPU.String())
		}
		if len(e.Runs) > 0 {
			row("e2e", "highest rate with bounded lag", thousands(e.HighestBoundedRate)+" events/s", "",
				mark("end to end, sustained with bounded lag"), "")
		}
	}
	if rep := r.Reports; rep != nil {
		for _, s := range rep.Sizes {
			row("reports", fmt.Sprintf("load %s events (COPY, %d writers)", thousands(s.Events), loadWriters),
				fmt.Sprintf("%s rows/s; %.0f MB with indexes", thousands(round(s.LoadRowsPerSecond)), s.TableMB), "", "", "")
			for _, q := range s.Queries {
				// Each query against its report's target; starred below
				// the target's 10M events.
				limit := float64(targetReportsMs)
				if q.Report == "demographics" {
					limit = targetDemoMs
				}
				target := fmt.Sprintf("p95 <= %.0f ms: %s", limit, strings.ToUpper(status(q.Latency.P95 <= limit && q.Failed == 0)))
				if s.Events < targetReportEvents {
					target += " *"
				}
				res := q.Example
				if q.Failed > 0 {
					res += fmt.Sprintf(" (%d FAILED)", q.Failed)
				}
				row("reports", fmt.Sprintf("%s events: %s, %s", shortCount(s.Events), q.Report, q.Kind), res,
					fmt.Sprintf("p50 %s, p95 %s ms (n=%d)", fmtMs(q.Latency.P50), fmtMs(q.Latency.P95), q.Latency.N), target, q.CPU.String())
			}
		}
	}
	_ = tw.Flush()

	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TARGET (issue 6)\t\tSTATUS\tMEASURED")
	for _, t := range r.targets() {
		measured := t.Measured
		if t.Note != "" {
			measured += " (* " + t.Note + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t.Measure, t.Target, strings.ToUpper(t.Status), measured)
	}
	_ = tw.Flush()
	if r.E2E != nil {
		fmt.Fprintln(w, "bounded lag:", r.E2E.Definition)
		for _, run := range r.E2E.Runs {
			if !run.Bounded {
				fmt.Fprintf(w, "  %s events/s not bounded: %s\n", thousands(run.Rate), run.Why)
			}
		}
	}
	fmt.Fprintln(w, "* measured on a smaller workload than the target's: indicative only.")
	fmt.Fprintln(w, "CPU CORES USED: cores each group of processes used during the measurement; harness is this process (embedded NATS and the load client), other is the rest of the machine.")
	for _, e := range r.Errors {
		fmt.Fprintln(w, "ERROR:", e)
	}
}

// thousands formats an integer with comma separators.
func thousands[T int | int64](n T) string {
	s := strconv.FormatInt(int64(n), 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// shortCount writes 100000 as 100k and 10000000 as 10M.
func shortCount(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return strconv.Itoa(n/1_000_000) + "M"
	case n >= 1000 && n%1000 == 0:
		return strconv.Itoa(n/1000) + "k"
	}
	return thousands(n)
}

// fmtMs keeps three significant digits or so.
func fmtMs(ms float64) string {
	switch {
	case ms >= 100:
		return strconv.FormatFloat(ms, 'f', 0, 64)
	case ms >= 10:
		return strconv.FormatFloat(ms, 'f', 1, 64)
	}
	return strconv.FormatFloat(ms, 'f', 2, 64)
}
