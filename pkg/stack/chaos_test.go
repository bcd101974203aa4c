package stack_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/eventpipe/eventpipe/pkg/publisher"
	"github.com/eventpipe/eventpipe/pkg/stack"
	"github.com/eventpipe/eventpipe/pkg/stream"
)

// The fault-injection suite's settings. Zero durations take the CI size,
// or the long version's with -chaos.full.
var (
	chaosFull = flag.Bool("chaos.full", false,
		"TestChaos: the long version: the product's ACK_WAIT (30s), a 60s PostgreSQL outage, 10s NATS stops, more load, 5m of mixed faults")
	chaosSeed = flag.Int64("chaos.seed", 0,
		"TestChaos: seed of the load and of the mixed fault schedule; 0 picks one from the clock (printed, so a run can be replayed)")
	chaosLoad = flag.Duration("chaos.load", 0,
		"TestChaos: load before the first fault and after the last heal (default 4s; 20s with -chaos.full)")
	chaosPGOutage = flag.Duration("chaos.pg-outage", 0,
		"TestChaos: how long PostgreSQL stays stopped (default 30s; 60s with -chaos.full, past the product's ACK_WAIT)")
	chaosNATSDown = flag.Duration("chaos.nats-down", 0,
		"TestChaos: how long the NATS server stays stopped (default 3s; 10s with -chaos.full)")
	chaosMixed = flag.Duration("chaos.mixed", 0,
		"TestChaos: how long the mixed scenario keeps injecting faults (default 60s; 5m with -chaos.full)")
	chaosAckWait = flag.Duration("chaos.ack-wait", 0,
		"TestChaos: the collectors' ACK_WAIT (default 5s; the product's 30s with -chaos.full)")
	chaosSummary = flag.String("chaos.summary", "",
		"TestChaos: also write the summary table to this file")
)

// chaosConfig is the suite's settings, resolved.
type chaosConfig struct {
	full      bool
	seed      int64
	load      time.Duration
	pgOutage  time.Duration
	natsDown  time.Duration
	mixed     time.Duration
	mixedGap  time.Duration // the most between two faults of the mixed scenario
	ackWait   time.Duration
	dupWindow time.Duration // STREAM_DUPLICATE_WINDOW
	quiet     time.Duration // the idle window in which nothing may move
	settle    time.Duration // bound on each wait for the system to catch up
	hold      time.Duration // how long a killed process stays down
	// The publisher's pace: a POST of minBatch..maxBatch events every
	// interval.
	interval           time.Duration
	minBatch, maxBatch int
	batchSize          int // the collectors' BATCH_SIZE
}

func chaosSettings() chaosConfig {
	pick := func(flagged, ci, full time.Duration) time.Duration {
		switch {
		case flagged > 0:
			return flagged
		case *chaosFull:
			return full
		}
		return ci
	}
	c := chaosConfig{
		full:      *chaosFull,
		seed:      *chaosSeed,
		load:      pick(*chaosLoad, 4*time.Second, 20*time.Second),
		pgOutage:  pick(*chaosPGOutage, 30*time.Second, 60*time.Second),
		natsDown:  pick(*chaosNATSDown, 3*time.Second, 10*time.Second),
		mixed:     pick(*chaosMixed, time.Minute, 5*time.Minute),
		mixedGap:  pick(0, 4*time.Second, 15*time.Second),
		ackWait:   pick(*chaosAckWait, 5*time.Second, 30*time.Second),
		dupWindow: 2 * time.Second,
		quiet:     pick(0, 3*time.Second, 10*time.Second),
		settle:    pick(0, 90*time.Second, 3*time.Minute),
		hold:      time.Second,
		interval:  100 * time.Millisecond,
		minBatch:  50,
		maxBatch:  300,
		batchSize: 500,
	}
	if c.full {
		c.minBatch, c.maxBatch, c.batchSize = 100, 1000, 1000
	}
	if c.seed == 0 {
		c.seed = time.Now().UnixNano()
	}
	return c
}

// buildNATSServer builds nats-server, at the version go.mod requires, into
// the test binaries' folder.
func buildNATSServer(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(binDir, "nats-server")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "build", "-o", bin, "github.com/nats-io/nats-server/v2")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build nats-server: %v\n%s", err, out)
	}
	return bin
}

// chaosScenario injects its faults into a system under load; errors mean
// a fault could not be injected or the system did not recover from it.
type chaosScenario struct {
	name string
	// strict: faults do not overlap, so each one's readiness must show
	// exactly its own dependencies failing.
	strict bool
	inject func(ctx context.Context, r *chaosRun, rnd *rand.Rand) error
}

var chaosScenarios = []chaosScenario{
	{name: "gateway-kill", strict: true, inject: func(ctx context.Context, r *chaosRun, _ *rand.Rand) error {
		return r.one(ctx, func() (*fault, error) { return r.killGateway(ctx, r.cfg.hold) })
	}},
	{name: "collector-kill", strict: true, inject: func(ctx context.Context, r *chaosRun, rnd *rand.Rand) error {
		// One replica of each collector; its twin keeps consuming.
		for _, service := range []string{"fb-collector", "ttk-collector"} {
			replicas := r.s.Instances(service)
			name := replicas[rnd.IntN(len(replicas))]
			err := r.one(ctx, func() (*fault, error) { return r.killCollector(ctx, service, name, r.cfg.hold) })
			if err != nil {
				return err
			}
		}
		return nil
	}},
	{name: "nats-restart", strict: true, inject: func(ctx context.Context, r *chaosRun, _ *rand.Rand) error {
		return r.one(ctx, func() (*fault, error) { return r.restartNATS(ctx, r.cfg.natsDown, false) })
	}},
	{name: "nats-crash", strict: true, inject: func(ctx context.Context, r *chaosRun, _ *rand.Rand) error {
		return r.one(ctx, func() (*fault, error) { return r.restartNATS(ctx, r.cfg.natsDown, true) })
	}},
	{name: "postgres-outage", strict: true, inject: func(ctx context.Context, r *chaosRun, _ *rand.Rand) error {
		return r.one(ctx, func() (*fault, error) { return r.outagePostgres(ctx, r.cfg.pgOutage) })
	}},
	{name: "mixed", inject: func(ctx context.Context, r *chaosRun, rnd *rand.Rand) error {
		errs := r.mixed(ctx, rnd, r.cfg.mixed)
		var last time.Time
		for _, f := range r.allFaults() {
			if f.healed.After(last) {
				last = f.healed
			}
		}
		if last.IsZero() {
			return errors.Join(append(errs, errors.New("no fault was injected"))...)
		}
		d, err := r.recover(ctx, last)
		if err != nil {
			errs = append(errs, fmt.Errorf("no recovery after the last heal: %w", err))
		} else {
			r.recoveries = append(r.recoveries, d)
			r.logf("%s recovered %s after the last heal", r.since(time.Now()), d.Round(10*time.Millisecond))
		}
		return errors.Join(errs...)
	}},
}

// one injects one fault and waits for the system to recover from it: every
// instance ready and every event acknowledged before the heal stored.
func (r *chaosRun) one(ctx context.Context, inject func() (*fault, error)) error {
	f, err := inject()
	if f != nil && !f.injected.IsZero() {
		r.add(f)
	}
	if err != nil {
		return err
	}
	d, err := r.recover(ctx, f.healed)
	if err != nil {
		return fmt.Errorf("%s: no recovery: %w", f, err)
	}
	r.recoveries = append(r.recoveries, d)
	r.logf("%s %s; recovered %s after the heal", r.since(f.injected), f, d.Round(10*time.Millisecond))
	return nil
}

// summaryRow is one scenario's line of the summary table.
type summaryRow struct {
	scenario     string
	faults       int
	requests     int
	failed       int
	sent         int
	acknowledged int
	stored       int
	fromFailed   int
	duplicates   int
	lost         int
	deadLetters  string
	recovery     time.Duration
	elapsed      time.Duration
	ok           bool
}

// TestChaos is the fault-injection suite: each scenario starts the system
// as processes (a nats-server process with a file store, a private
// PostgreSQL, two replicas of each collector sharing their durable
// consumer), drives it with the publisher (duplicates, out-of-order and
// corrupted events) and injects its faults under that load: the gateway
// SIGKILLed mid-request, a collector replica SIGKILLed mid-batch, the NATS
// server restarted, PostgreSQL stopped for a while, then all of them mixed
// at random. Once the load stops and the system settles it checks that
// every event a 2xx acknowledged is stored exactly once, events of failed
// requests at most once and nothing else; that no collector is stuck or
// spinning; that readiness dropped during each fault and came back; and
// that the dead-letter stream holds only the poison that was sent. It
// prints a summary table.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping the fault-injection suite in -short mode: it runs the system as processes under load for minutes")
	}
	cfg := chaosSettings()
	natsBin := buildNATSServer(t)
	t.Logf("chaos seed %d (replay with -chaos.seed=%d); load %s before and after, PostgreSQL down %s, NATS down %s, mixed %s, ACK_WAIT %s",
		cfg.seed, cfg.seed, cfg.load, cfg.pgOutage, cfg.natsDown, cfg.mixed, cfg.ackWait)

	var rows []*summaryRow
	defer func() { printSummary(t, cfg, rows) }()
	for i, sc := range chaosScenarios {
		row := &summaryRow{scenario: sc.name}
		t.Run(sc.name, func(t *testing.T) {
			// Only scenarios that -run selected get a row.
			rows = append(rows, row)
			start := time.Now()
			defer func() {
				row.elapsed = time.Since(start)
				row.ok = !t.Failed()
			}()
			runScenario(t, cfg, natsBin, cfg.seed+int64(i), sc, row)
		})
	}
}

func printSummary(t *testing.T, cfg chaosConfig, rows []*summaryRow) {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "scenario\tfaults\trequests\tfailed\tevents sent\tacknowledged\tstored\tof failed requests\tduplicates stored\tlost\tdead letters gw/coll\trecovery\telapsed\tresult\t\n")
	for _, r := range rows {
		result := "ok"
		if !r.ok {
			result = "FAIL"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t\n",
			r.scenario, r.faults, r.requests, r.failed, r.sent, r.acknowledged, r.stored, r.fromFailed,
			r.duplicates, r.lost, r.deadLetters, r.recovery.Round(100*time.Millisecond),
			r.elapsed.Round(time.Second), result)
	}
	tw.Flush()
	size := "CI size"
	if cfg.full {
		size = "full"
	}
	table := fmt.Sprintf("fault-injection summary (%s, seed %d):\n%s", size, cfg.seed, b.String())
	t.Log("\n" + table)
	if *chaosSummary != "" {
		if err := os.WriteFile(*chaosSummary, []byte(table), 0o644); err != nil {
			t.Errorf("write summary: %v", err)
		}
	}
}

// runScenario runs one scenario on a system of its own and fills its row.
func runScenario(t *testing.T, cfg chaosConfig, natsBin string, seed int64, sc chaosScenario, row *summaryRow) {
	ackWait := "ACK_WAIT=" + cfg.ackWait.String()
	dupWindow := "STREAM_DUPLICATE_WINDOW=" + cfg.dupWindow.String()
	batch := "BATCH_SIZE=" + strconv.Itoa(cfg.batchSize)
	s := startStackWith(t, func(o *stack.Options) {
		o.NATSBinary = natsBin
		o.NATSMonitorPort = freePort(t)
		o.Replicas = map[string]int{"fb-collector": 2, "ttk-collector": 2}
		o.Ports["fb-collector-2"] = freePort(t)
		o.Ports["ttk-collector-2"] = freePort(t)
		// A short duplicate window lets the publisher's repeats reach
		// PostgreSQL, so storing once rests on the idempotent insert too,
		// not only on JetStream's deduplication.
		o.ServiceEnv = map[string][]string{
			"gateway":       {dupWindow},
			"fb-collector":  {dupWindow, ackWait, batch},
			"ttk-collector": {dupWindow, ackWait, batch},
		}
	})
	ctx := context.Background()
	nc, err := nats.Connect(s.NATSURL(), nats.Name("chaos-test"), nats.MaxReconnects(-1),
		nats.ReconnectWait(200*time.Millisecond), nats.RetryOnFailedConnect(true))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}

	rnd := rand.New(rand.NewPCG(uint64(seed), 0x9e3779b97f4a7c15))
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = 64
	l := newLedger(transport)
	r := &chaosRun{s: s, cfg: cfg, l: l, logf: t.Logf, start: time.Now(), restarted: map[string]bool{}}

	watchCtx, stopWatching := context.WithCancel(ctx)
	ready, watchDone := watchReadiness(watchCtx, s, instances(s), 100*time.Millisecond)
	defer func() { stopWatching(); watchDone() }()

	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	opts := publisher.Options{
		Endpoint:       s.URL("gateway") + "/webhook",
		Interval:       cfg.interval,
		MinBatch:       cfg.minBatch,
		MaxBatch:       cfg.maxBatch,
		DuplicateRatio: 0.1,
		OutOfOrder:     10 * time.Minute,
		Seed:           seed,
		CorruptEvery:   3,
		Timeout:        30 * time.Second,
		MaxInFlight:    16,
		ShutdownGrace:  30 * time.Second,
	}
	type ran struct {
		sum publisher.Summary
		err error
	}
	loadDone := make(chan ran, 1)
	go func() {
		sum, err := publisher.Run(loadCtx, opts, &http.Client{Transport: l}, nil)
		loadDone <- ran{sum, err}
	}()

	poison := map[string]string{}
	publishPoisonFor(t, js, sc.name+"-before", poison)
	time.Sleep(cfg.load)
	injectErr := sc.inject(ctx, r, rnd)
	if injectErr != nil {
		t.Error(injectErr)
	}
	time.Sleep(cfg.load)
	publishPoisonFor(t, js, sc.name+"-after", poison)
	stopLoad()
	res := <-loadDone
	if res.err != nil {
		t.Fatalf("publisher: %v", res.err)
	}
	stopWatching()
	watchDone()
	faults := r.allFaults()
	row.faults = len(faults)
	for _, d := range r.recoveries {
		row.recovery = max(row.recovery, d)
	}
	t.Logf("load stopped: publisher sent %d events in %d requests (%d repeats, %d corrupted), %d accepted",
		res.sum.EventsSent, res.sum.Requests, res.sum.Duplicates, res.sum.Corrupted, res.sum.Accepted)

	// Nothing acknowledged may be missing once the system has settled.
	// After a failed recovery a short wait tells whether it was only slow.
	wait := cfg.settle
	if injectErr != nil {
		wait = 20 * time.Second
	}
	settleCtx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	if err := waitStored(settleCtx, s.DatabaseURL(), l.ackedBy(time.Now())); err != nil {
		t.Errorf("after the load: %v", err)
	}
	checkSettled(t, r, js, len(faults))

	checkStorage(t, s, l, row)
	checkDeadLetterStream(t, js, l, poison, faults, row)
	// Readiness dropped during each fault and came back after it.
	for _, f := range faults {
		back, problems := ready.check(f, sc.strict)
		for _, p := range problems {
			t.Error(p)
		}
		t.Logf("%s %s: readiness of %v back %s after the heal", r.since(f.injected), f, f.affected, back.Round(10*time.Millisecond))
		if sc.strict && f.kind == faultPGOutage && f.ackedDuring == 0 {
			t.Errorf("%s: no event acknowledged during the outage; the gateway must keep accepting without PostgreSQL", f)
		}
		if sc.strict && (f.kind == faultNATSRestart || f.kind == faultNATSCrash) && l.answered(http.StatusServiceUnavailable, f.injected, f.healed) == 0 {
			t.Errorf("%s: no request answered 503 while NATS was down", f)
		}
	}
}

// checkStorage compares the events table with the ledger: every event a
// 2xx acknowledged stored exactly once, events only in failed requests at
// most once, nothing else; and the reports count what is stored.
func checkStorage(t *testing.T, s *stack.Stack, l *ledger, row *summaryRow) {
	t.Helper()
	st := l.tally(storedIDs(t, s.DatabaseURL()))
	row.requests, row.failed, row.sent = st.requests, st.failedRequests, st.elements
	row.acknowledged, row.stored, row.fromFailed = st.acknowledged, st.stored, st.fromFailed
	row.duplicates, row.lost = st.duplicates, len(st.lost)
	t.Logf("requests %d (no 2xx: %d, no answer: %d, statuses %v); events sent %d, distinct acknowledged %d, "+
		"only in failed requests %d, stored %d (%d of those only in failed requests)",
		st.requests, st.failedRequests, st.networkErrors, st.statuses, st.elements, st.acknowledged,
		st.maybeSent, st.stored, st.fromFailed)
	if len(st.lost) > 0 {
		t.Errorf("%d acknowledged events not stored, e.g. %v", len(st.lost), head(st.lost))
	}
	if st.duplicates > 0 {
		t.Errorf("%d duplicate rows, e.g. %v", st.duplicates, head(st.storedTwice))
	}
	if len(st.neverSent) > 0 {
		t.Errorf("%d stored events were never sent as valid events, e.g. %v", len(st.neverSent), head(st.neverSent))
	}
	if st.acknowledged == 0 {
		t.Error("no event was acknowledged: the scenario proved nothing")
	}
	l.mu.Lock()
	for _, d := range head(l.disagreements) {
		t.Errorf("gateway answer disagrees with the body: %s", d)
	}
	l.mu.Unlock()
	var report struct {
		Total int `json:"total"`
	}
	getJSON(t, s.URL("reporter")+"/reports/events", &report)
	if report.Total != st.stored {
		t.Errorf("/reports/events total: got %d; want the %d stored events", report.Total, st.stored)
	}
}

// checkDeadLetterStream requires the DEADLETTER stream to hold only
// poison: the invalid events the publisher sent (from the gateway) and
// the messages published to the collectors as poison.
func checkDeadLetterStream(t *testing.T, js jetstream.JetStream, l *ledger, poison map[string]string, faults []*fault, row *summaryRow) {
	t.Helper()
	var natsStops []time.Time
	for _, f := range faults {
		if f.kind == faultNATSRestart || f.kind == faultNATSCrash {
			natsStops = append(natsStops, f.injected)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dls, err := readDeadLetters(ctx, js)
	if err != nil {
		t.Errorf("read the dead-letter stream: %v", err)
		return
	}
	dt := l.checkDeadLetters(dls, poison, natsStops)
	row.deadLetters = fmt.Sprintf("%d/%d", dt.gateway, dt.collectors)
	for _, p := range head(dt.problems) {
		t.Error(p)
	}
	if len(dt.problems) > 5 {
		t.Errorf("... and %d more dead-letter problems", len(dt.problems)-5)
	}
	l.mu.Lock()
	sent, of2xx := 0, 0
	for _, inv := range l.invalid {
		sent++
		if inv.answered {
			of2xx++
		}
	}
	l.mu.Unlock()
	t.Logf("dead letters: %d from the gateway (of %d invalid events sent, %d in 2xx requests; %d missing as their request was cut by a NATS stop), %d from collectors (%d poison sent)",
		dt.gateway, sent, of2xx, dt.excused, dt.collectors, len(poison))
}

// checkSettled waits until the consumers have no lag, then watches the
// collectors through a quiet window: with no load and no lag nothing may
// move (no processing, redelivery, database retry) and no process may burn
// CPU. It also bounds the redeliveries and requires every collector
// replica that ran throughout to have stored events: the durable is shared.
func checkSettled(t *testing.T, r *chaosRun, js jetstream.JetStream, faults int) {
	t.Helper()
	ctx := context.Background()
	lag := func() (map[string]uint64, error) {
		out := map[string]uint64{}
		for _, name := range []string{"fb-collector", "ttk-collector"} {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			c, err := js.Consumer(cctx, stream.Events, name)
			var info *jetstream.ConsumerInfo
			if err == nil {
				info, err = c.Info(cctx)
			}
			cancel()
			if err != nil {
				return nil, fmt.Errorf("consumer %s: %w", name, err)
			}
			out[name] = info.NumPending + uint64(info.NumAckPending)
		}
		return out, nil
	}
	var last map[string]uint64
	var lagErr error
	caughtUp := waitFor(ctx, r.cfg.settle, 250*time.Millisecond, func() bool {
		last, lagErr = lag()
		return lagErr == nil && last["fb-collector"] == 0 && last["ttk-collector"] == 0
	})
	if !caughtUp {
		t.Errorf("consumers never caught up: lag %v %v", last, lagErr)
		return
	}

	type sample struct {
		metrics map[string]map[string]float64
		cpu     map[string]float64
		at      time.Time
	}
	take := func() sample {
		sm := sample{metrics: map[string]map[string]float64{}, cpu: map[string]float64{}, at: time.Now()}
		for _, name := range instances(r.s) {
			m, err := scrapeMetrics(ctx, r.s.URL(name)+"/metrics")
			if err != nil {
				t.Errorf("%s metrics: %v", name, err)
			}
			sm.metrics[name] = m
			if c, err := cpuSeconds(r.s.Proc(name).Pid()); err == nil {
				sm.cpu[name] = c
			}
		}
		return sm
	}
	before := take()
	time.Sleep(r.cfg.quiet)
	after := take()
	window := after.at.Sub(before.at).Seconds()
	if l, err := lag(); err != nil || l["fb-collector"] != 0 || l["ttk-collector"] != 0 {
		t.Errorf("lag after the quiet window: %v %v; want 0", l, err)
	}
	redelivered := map[string]float64{}
	for _, name := range collectorInstances(r.s) {
		service := serviceOf(name)
		prefix := strings.ReplaceAll(service, "-", "_") + "_"
		for _, m := range []string{"events_accepted_total", "events_processed_total", "events_failed_total",
			"redeliveries_total", "db_retries_total", "events_duplicates_total"} {
			if b, a := before.metrics[name][prefix+m], after.metrics[name][prefix+m]; a != b {
				t.Errorf("%s %s%s moved from %.0f to %.0f in %.1fs with no load and no lag: stuck or spinning", name, prefix, m, b, a, window)
			}
		}
		redelivered[service] += after.metrics[name][prefix+"redeliveries_total"]
		processed := after.metrics[name][prefix+"events_processed_total"]
		r.mu.Lock()
		restarted := r.restarted[name]
		r.mu.Unlock()
		if !restarted && processed == 0 {
			t.Errorf("%s stored nothing; both replicas share the durable and must both take work", name)
		}
	}
	for name, c := range after.cpu {
		if used := (c - before.cpu[name]) / window; used > 0.25 {
			t.Errorf("%s used %.2f CPU cores while idle; want under 0.25 (spinning?)", name, used)
		}
	}
	// A fault can leave at most every message a consumer may hold
	// unacknowledged to come back: far fewer than a redelivery storm.
	maxAckPending := float64(4 * r.cfg.batchSize)
	bound := float64(faults+1) * maxAckPending
	for service, n := range redelivered {
		if n > bound {
			t.Errorf("%s replicas saw %.0f redeliveries; want at most %.0f (MAX_ACK_PENDING per fault)", service, n, bound)
		}
	}
	t.Logf("settled: lag 0, collectors idle over %.1fs (CPU %s), redeliveries seen by the current processes %v",
		window, cpuSummary(before.cpu, after.cpu, window), redelivered)
	for _, f := range r.allFaults() {
		if f.kind == faultCollectorKill && redelivered[serviceOf(f.target)] == 0 && !strings.HasPrefix(f.note, "no batch") {
			t.Errorf("%s: no redelivery after the kill; want what the replica held delivered again", f)
		}
	}
}

func cpuSummary(before, after map[string]float64, window float64) string {
	names := make([]string, 0, len(after))
	for n := range after {
		names = append(names, n)
	}
	sort.Strings(names)
	parts := make([]string, 0, len(names))
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s %.3f", n, (after[n]-before[n])/window))
	}
	return strings.Join(parts, ", ")
}

// answered counts the requests answered status between from and to.
func (l *ledger) answered(status int, from, to time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, sp := range l.spans {
		if sp.status == status && !sp.end.Before(from) && !sp.end.After(to) {
			n++
		}
	}
	return n
}

// publishPoisonFor puts one message that is not an event on each source's
// subjects, as a producer other than the gateway might: each collector
// must dead-letter it, and nothing else. It records the poison in poison
// (eventId -> collector).
func publishPoisonFor(t *testing.T, js jetstream.JetStream, tag string, poison map[string]string) {
	t.Helper()
	for _, p := range []struct{ subject, collector string }{
		{"events.facebook.ad.view", "fb-collector"},
		{"events.tiktok.like", "ttk-collector"},
	} {
		id := "poison-" + tag + "-" + p.collector
		msg := nats.NewMsg(p.subject)
		msg.Data = []byte(`{"eventId":"` + id + `","source":"nowhere"}`)
		msg.Header.Set(stream.HeaderCorrelationID, "chaos-poison")
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		var err error
		for ctx.Err() == nil {
			if _, err = js.PublishMsg(ctx, msg); err == nil {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		cancel()
		if err != nil {
			t.Fatalf("publish poison to %s: %v", p.subject, err)
		}
		poison[id] = p.collector
	}
}

func head[T any](s []T) []T {
	if len(s) > 5 {
		return s[:5]
	}
	return s
}

// serviceOf returns the service of an instance name: fb-collector-2 is
// an fb-collector.
func serviceOf(name string) string {
	if i := strings.LastIndexByte(name, '-'); i > 0 {
		if _, err := strconv.Atoi(name[i+1:]); err == nil {
			return name[:i]
		}
	}
	return name
}
