package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// boundedDefinition is what "lag stays bounded" means in the results.
const boundedDefinition = "a rate is sustained with bounded lag when (1) every POST was answered 2xx, " +
	"(2) the publisher finished within 1 s of its schedule (its last POST, sent at D-1 s, answered by D+1 s: the gateway kept up), " +
	"(3) the collectors' consumer lag (num_pending + num_ack_pending) at the end of the run, D s after the first POST " +
	"(or when the publisher finished, if later), was below one second of offered events, and " +
	"(4) the lag was not growing: read each second when a POST is due (the trough of the once-a-second sawtooth: " +
	"the backlog carried over), its mean over the last W s exceeded its mean over the W s before by less than 0.1 s of offered events " +
	"(W = min(10 s, D/4)). The highest bounded rate is the highest tested rate that, and every lower tested rate, passed."

// lagSampleEvery is how often the consumers' lag is read during a run;
// every other reading falls when a POST is due.
const lagSampleEvery = 500 * time.Millisecond

// E2EResults is part 3: the publisher at fixed rates against the whole
// system.
type E2EResults struct {
	Runs []E2ERun `json:"runs"`
	// HighestBoundedRate is 0 when even the lowest rate was not bounded.
	HighestBoundedRate int    `json:"highestBoundedRate"`
	Definition         string `json:"boundedDefinition"`
}

// E2ERun is one rate: one POST of Rate events per second for Seconds.
type E2ERun struct {
	Rate    int     `json:"rate"`
	Seconds float64 `json:"seconds"`
	// PublisherSeconds runs from the publisher's start to its last answer;
	// EndSeconds to the end of the run, at least Seconds: the lag at the
	// end and the stored count are read then.
	PublisherSeconds float64 `json:"publisherSeconds"`
	EndSeconds       float64 `json:"endSeconds"`
	Requests         int64   `json:"requests"`
	EventsSent       int64   `json:"eventsSent"`
	Accepted         int64   `json:"accepted"`
	Non2xx           int64   `json:"non2xxAnswers"`
	NetworkErrors    int64   `json:"networkErrors"`
	// Stored counts events committed and acknowledged by the collectors
	// during the run; StoredPerSecond divides by EndSeconds.
	Stored          int64   `json:"stored"`
	StoredPerSecond float64 `json:"storedPerSecond"`
	LagEnd          int64   `json:"lagAtEnd"`
	// LagMeanLast and LagMeanBefore average the readings taken when a
	// POST was due, over the last window and the one before.
	LagMeanLast   float64 `json:"lagDueMeanLastWindow"`
	LagMeanBefore float64 `json:"lagDueMeanWindowBefore"`
	LagMax        int64   `json:"lagMax"`
	// DrainSeconds is how long the lag took to reach 0 after the
	// publisher finished; -1 when it had not within the limit.
	DrainSeconds float64     `json:"drainSeconds"`
	Bounded      bool        `json:"bounded"`
	Why          string      `json:"notBoundedBecause,omitempty"`
	CPU          CPU         `json:"cpuCores"`
	Lag          []lagSample `json:"lagSamples"`
}

type lagSample struct {
	T   float64 `json:"t"`
	Lag int64   `json:"lag"`
	// Due marks a reading taken when a POST is due, before it lands.
	Due bool `json:"due,omitempty"`
}

func runE2E(ctx context.Context, e *env, sz Sizes, seed int64) (*E2EResults, error) {
	res := &E2EResults{Definition: boundedDefinition}
	for i, rate := range sz.Rates {
		r, err := runRate(ctx, e, rate, sz.RateDuration, seed+int64(i))
		if err != nil {
			return res, fmt.Errorf("rate %d: %w", rate, err)
		}
		res.Runs = append(res.Runs, r)
	}
	res.HighestBoundedRate = highestBounded(res.Runs)
	return res, nil
}

// highestBounded returns the highest rate that, and every lower rate,
// held; 0 when the lowest did not.
func highestBounded(runs []E2ERun) int {
	sorted := slices.Clone(runs)
	slices.SortFunc(sorted, func(a, b E2ERun) int { return a.Rate - b.Rate })
	highest := 0
	for _, r := range sorted {
		if !r.Bounded {
			break
		}
		highest = r.Rate
	}
	return highest
}

// runRate runs one rate on a system of its own: a fresh stream, an empty
// database and newly started services, so no rate inherits another's
// backlog.
func runRate(ctx context.Context, e *env, rate int, d time.Duration, seed int64) (E2ERun, error) {
	r := E2ERun{Rate: rate, Seconds: d.Seconds()}
	ns, err := e.startNATS("e2e")
	if err != nil {
		return r, err
	}
	defer ns.stop()
	dbURL, drop, err := e.newDatabase(ctx, "e2e")
	if err != nil {
		return r, err
	}
	defer drop()
	name := func(s string) string { return fmt.Sprintf("%s-%d", s, rate) }
	gw, err := e.startReady(ctx, "gateway", name("gateway"), "NATS_URL="+ns.url())
	if err != nil {
		return r, err
	}
	defer gw.stop()
	env := []string{"NATS_URL=" + ns.url(), "DATABASE_URL=" + dbURL}
	fb, err := e.startReady(ctx, "fb-collector", name("fb-collector"), env...)
	if err != nil {
		return r, err
	}
	defer fb.stop()
	ttk, err := e.startReady(ctx, "ttk-collector", name("ttk-collector"), env...)
	if err != nil {
		return r, err
	}
	defer ttk.stop()
	collectors := []*proc{fb, ttk}

	e.logger.Info("e2e: publishing", "rate", rate, "for", d)
	meter := startCPU(cpuGroup{"gateway", pidsOf(gw)}, cpuGroup{"collectors", pidsOf(fb, ttk)},
		e.postgresGroup(), harnessGroup())
	start := time.Now()
	pub, err := startProc(e.binDir, e.logDir, name("publisher"), "publisher", 0, true,
		"EVENT_ENDPOINT="+gw.url()+"/webhook",
		"PUBLISH_INTERVAL=1s",
		"MIN_BATCH="+strconv.Itoa(rate),
		"MAX_BATCH="+strconv.Itoa(rate),
		"TOTAL_EVENTS="+strconv.FormatInt(int64(rate)*int64(d/time.Second), 10),
		"SEED="+strconv.FormatInt(seed, 10),
		"LOG_LEVEL=warn",
	)
	if err != nil {
		return r, err
	}
	sampleCtx, stopSampling := context.WithCancel(ctx)
	var (
		mu      sync.Mutex
		samples []lagSample
		wg      sync.WaitGroup
	)
	wg.Go(func() {
		for i := 1; ; i++ {
			select {
			case <-sampleCtx.Done():
				return
			case <-time.After(time.Until(start.Add(time.Duration(i) * lagSampleEvery))):
			}
			if lag, err := ns.lag(sampleCtx); err == nil {
				mu.Lock()
				samples = append(samples, lagSample{T: time.Since(start).Seconds(), Lag: lag, Due: i%2 == 0})
				mu.Unlock()
			}
		}
	})
	err = pub.wait(ctx, d+5*time.Minute)
	r.PublisherSeconds = time.Since(start).Seconds()
	// The run ends one interval after the last POST was sent, when the
	// next would be due: a system that keeps up has stored that POST by
	// then.
	if left := time.Until(start.Add(d)); err == nil && left > 0 {
		select {
		case <-ctx.Done():
		case <-time.After(left):
		}
	}
	end := time.Since(start)
	lagEnd, lagErr := ns.lag(ctx)
	var stored int64
	for _, p := range collectors {
		prefix := strings.ReplaceAll(p.name, "-", "_") + "_"
		n, serr := scrapeSum(ctx, p.url(), prefix+"events_processed_total")
		err = errors.Join(err, serr)
		stored += int64(n)
	}
	r.CPU = meter.stop()
	stopSampling()
	wg.Wait()
	if err != nil {
		return r, err
	}
	if lagErr != nil {
		return r, lagErr
	}
	if r.CPU != nil {
		r.CPU["publisher"] = pub.cpuSeconds() / r.PublisherSeconds
	}
	out, err := os.ReadFile(pub.outPath())
	if err != nil {
		return r, err
	}
	sum, err := parseSummary(string(out))
	if err != nil {
		return r, fmt.Errorf("publisher summary: %w", err)
	}
	r.Requests, r.EventsSent, r.Accepted = sum.requests, sum.eventsSent, sum.accepted
	r.Non2xx, r.NetworkErrors = sum.non2xx, sum.networkErrors
	r.EndSeconds = end.Seconds()
	r.Stored = stored
	r.StoredPerSecond = float64(stored) / r.EndSeconds
	r.LagEnd = lagEnd
	r.Lag = samples
	judge(&r)

	e.logger.Info("e2e: publisher done; waiting for the collectors to catch up", "rate", rate,
		"stored_per_s", round(r.StoredPerSecond), "lag_at_end", lagEnd, "bounded", r.Bounded)
	r.DrainSeconds = -1
	drainStart := time.Now()
	for limit := drainStart.Add(max(30*time.Second, d)); time.Now().Before(limit); {
		lag, err := ns.lag(ctx)
		if err != nil {
			return r, err
		}
		if lag == 0 {
			r.DrainSeconds = time.Since(drainStart).Seconds()
			break
		}
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return r, stopAll(gw, fb, ttk)
}

// judge decides whether the run's lag stayed bounded (boundedDefinition).
func judge(r *E2ERun) {
	rate := float64(r.Rate)
	w := min(10, r.Seconds/4)
	end := r.EndSeconds
	var last, before []float64
	for _, s := range r.Lag {
		r.LagMax = max(r.LagMax, s.Lag)
		switch {
		case !s.Due:
		case s.T > end-w && s.T <= end+0.25:
			last = append(last, float64(s.Lag))
		case s.T > end-2*w && s.T <= end-w:
			before = append(before, float64(s.Lag))
		}
	}
	r.LagMeanLast, r.LagMeanBefore = mean(last), mean(before)
	var why []string
	if r.Non2xx > 0 || r.NetworkErrors > 0 {
		why = append(why, fmt.Sprintf("%d non-2xx answers and %d network errors", r.Non2xx, r.NetworkErrors))
	}
	if r.PublisherSeconds > r.Seconds+1 {
		why = append(why, fmt.Sprintf("the publisher took %.1f s for a %.0f s schedule (the gateway fell behind)", r.PublisherSeconds, r.Seconds))
	}
	if float64(r.LagEnd) >= rate {
		why = append(why, fmt.Sprintf("lag at the end %d >= one second of events (%d)", r.LagEnd, r.Rate))
	}
	if len(last) == 0 || len(before) == 0 {
		why = append(why, "too few lag samples to tell growth")
	} else if r.LagMeanLast-r.LagMeanBefore >= 0.1*rate {
		why = append(why, fmt.Sprintf("lag growing: mean %.0f over the last %.0f s against %.0f before", r.LagMeanLast, w, r.LagMeanBefore))
	}
	r.Bounded = len(why) == 0
	r.Why = strings.Join(why, "; ")
}

func mean(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	var s float64
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

// publisherSummary is what the harness reads of the publisher's summary.
type publisherSummary struct {
	requests, eventsSent, accepted, networkErrors, non2xx int64
}

var summaryLine = regexp.MustCompile(`^(\S+(?: \S+)*)\s{2,}(\S+)`)

// parseSummary reads the text summary cmd/publisher prints on exit.
func parseSummary(text string) (publisherSummary, error) {
	var s publisherSummary
	seen := map[string]bool{}
	for line := range strings.SplitSeq(text, "\n") {
		m := summaryLine.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			continue
		}
		key := m[1]
		n, err := strconv.ParseInt(m[2], 10, 64)
		if err != nil {
			continue // seed, duration
		}
		seen[key] = true
		switch {
		case key == "requests":
			s.requests = n
		case key == "events sent":
			s.eventsSent = n
		case key == "accepted":
			s.accepted = n
		case key == "network errors":
			s.networkErrors = n
		case strings.HasPrefix(key, "status "):
			if code, err := strconv.Atoi(strings.TrimPrefix(key, "status ")); err == nil && (code < 200 || code > 299) {
				s.non2xx += n
			}
		}
	}
	for _, k := range []string{"requests", "events sent", "accepted", "network errors"} {
		if !seen[k] {
			return s, fmt.Errorf("no %q line in %q", k, text)
		}
	}
	return s, nil
}
