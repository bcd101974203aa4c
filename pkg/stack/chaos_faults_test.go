package stack_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/eventpipe/eventpipe/pkg/stack"
)

// Fault kinds.
const (
	faultGatewayKill   = "gateway-kill"
	faultCollectorKill = "collector-kill"
	faultNATSRestart   = "nats-restart"
	faultNATSCrash     = "nats-crash"
	faultPGOutage      = "postgres-outage"
)

// fault is one injected failure: what it hit, when, and which instances'
// readiness it had to drop (affected) or leave alone (steady).
type fault struct {
	kind   string
	target string
	// affected instances must not answer 200 from down to healed, and
	// must answer 200 again after healed. When want503 they stay up and
	// must say so: a 503, at least once.
	affected []string
	want503  bool
	// steady instances must never answer 503 from injected to healed.
	steady []string
	// injected is when the fault began, down when it had taken effect
	// (the process dead, the server stopped), healed when its cause was
	// removed (the process or server started again).
	injected, down, healed time.Time
	// ackedDuring counts events acknowledged during a database outage.
	ackedDuring int
	note        string
}

func (f *fault) String() string {
	s := fmt.Sprintf("%s %s for %s", f.kind, f.target, f.healed.Sub(f.injected).Round(10*time.Millisecond))
	if f.note != "" {
		s += " (" + f.note + ")"
	}
	return s
}

// readiness records every /readyz answer of every instance while a
// scenario runs; 0 stands for no answer.
type readiness struct {
	mu  sync.Mutex
	obs map[string][]readyObs
}

type readyObs struct {
	at     time.Time
	status int
}

// watchReadiness polls each instance's /readyz every interval until ctx
// ends.
func watchReadiness(ctx context.Context, s *stack.Stack, names []string, interval time.Duration) (*readiness, func()) {
	r := &readiness{obs: map[string][]readyObs{}}
	client := &http.Client{Timeout: 3 * time.Second}
	var wg sync.WaitGroup
	for _, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			url := s.URL(name) + "/readyz"
			for ctx.Err() == nil {
				status := 0
				// An answer is what the instance said when asked.
				asked := time.Now()
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
				if resp, err := client.Do(req); err == nil {
					resp.Body.Close()
					status = resp.StatusCode
				}
				if ctx.Err() != nil {
					return
				}
				r.mu.Lock()
				r.obs[name] = append(r.obs[name], readyObs{asked, status})
				r.mu.Unlock()
				select {
				case <-ctx.Done():
				case <-time.After(interval):
				}
			}
		}()
	}
	return r, wg.Wait
}

// between returns the statuses name answered from from to to, counted.
func (r *readiness) between(name string, from, to time.Time) map[int]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[int]int{}
	for _, o := range r.obs[name] {
		if !o.at.Before(from) && !o.at.After(to) {
			seen[o.status]++
		}
	}
	return seen
}

// readyAgain returns when name first answered 200 after t.
func (r *readiness) readyAgain(name string, t time.Time) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, o := range r.obs[name] {
		if o.at.After(t) && o.status == http.StatusOK {
			return o.at, true
		}
	}
	return time.Time{}, false
}

// check returns what is wrong with f's readiness, and how long after the
// heal its affected instances were all ready again. Overlapping faults
// (not strict) may kill an instance that would otherwise have answered
// 503, so there any answer but 200 counts as not ready.
func (r *readiness) check(f *fault, strict bool) (time.Duration, []string) {
	var problems []string
	var back time.Duration
	for _, name := range f.affected {
		seen := r.between(name, f.down, f.healed)
		if seen[http.StatusOK] > 0 {
			problems = append(problems, fmt.Sprintf("%s: %s /readyz answered %v during the fault; want no 200", f, name, seen))
		}
		if f.want503 && strict && seen[http.StatusServiceUnavailable] == 0 {
			problems = append(problems, fmt.Sprintf("%s: %s /readyz answered %v during the fault; want 503 at least once", f, name, seen))
		}
		if f.want503 && !strict && len(seen) == 0 {
			problems = append(problems, fmt.Sprintf("%s: %s /readyz not polled during the fault", f, name))
		}
		at, ok := r.readyAgain(name, f.healed)
		if !ok {
			problems = append(problems, fmt.Sprintf("%s: %s /readyz never answered 200 again after the heal", f, name))
			continue
		}
		back = max(back, at.Sub(f.healed))
	}
	if strict {
		for _, name := range f.steady {
			if n := r.between(name, f.injected, f.healed)[http.StatusServiceUnavailable]; n > 0 {
				problems = append(problems, fmt.Sprintf("%s: %s /readyz answered 503 %d times; it does not depend on %s", f, name, n, f.target))
			}
		}
	}
	return back, problems
}

// chaosRun is one scenario: the system, the load's ledger and the faults
// injected so far.
type chaosRun struct {
	s     *stack.Stack
	cfg   chaosConfig
	l     *ledger
	logf  func(format string, args ...any)
	start time.Time

	// recoveries is written by the scenario's goroutine only.
	recoveries []time.Duration

	mu        sync.Mutex
	faults    []*fault
	restarted map[string]bool // instances started again during the run
}

func (r *chaosRun) add(f *fault) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.faults = append(r.faults, f)
	if f.kind == faultGatewayKill || f.kind == faultCollectorKill {
		r.restarted[f.target] = true
	}
}

func (r *chaosRun) allFaults() []*fault {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.faults)
}

func (r *chaosRun) since(t time.Time) string {
	return "+" + t.Sub(r.start).Round(100*time.Millisecond).String()
}

// instances lists every service instance of the stack.
func instances(s *stack.Stack) []string {
	var names []string
	for _, svc := range []string{"gateway", "fb-collector", "ttk-collector", "reporter"} {
		names = append(names, s.Instances(svc)...)
	}
	return names
}

func collectorInstances(s *stack.Stack) []string {
	return append(s.Instances("fb-collector"), s.Instances("ttk-collector")...)
}

func without(names []string, drop ...string) []string {
	return slices.DeleteFunc(slices.Clone(names), func(n string) bool { return slices.Contains(drop, n) })
}

// waitFor polls cond every interval until it holds or limit passes.
func waitFor(ctx context.Context, limit, interval time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(interval)
	}
	return true
}

// killGateway SIGKILLs the gateway while a request is on the wire, keeps
// it down for hold, and starts it again. A kill that cut no request is
// repeated, up to three times in all: this fault is about requests cut
// mid-way.
func (r *chaosRun) killGateway(ctx context.Context, hold time.Duration) (*fault, error) {
	f := &fault{kind: faultGatewayKill, target: "gateway", affected: []string{"gateway"},
		steady: without(instances(r.s), "gateway")}
	for attempt := 1; ; attempt++ {
		if !waitFor(ctx, 30*time.Second, time.Millisecond, r.l.busy) {
			return f, errors.New("no request on the wire to cut within 30s")
		}
		p := r.s.Proc("gateway")
		kill := time.Now()
		if f.injected.IsZero() {
			f.injected = kill
		}
		if err := p.Signal(syscall.SIGKILL); err != nil {
			return f, err
		}
		p.Wait()
		f.down = time.Now()
		time.Sleep(hold)
		f.healed = time.Now()
		if err := r.s.Restart(ctx, "gateway"); err != nil {
			return f, fmt.Errorf("restart gateway: %w", err)
		}
		if cut := r.l.cutAt(kill); cut > 0 {
			f.note = fmt.Sprintf("%d requests cut, kill %d", cut, attempt)
			return f, nil
		}
		if attempt == 3 {
			return f, errors.New("none of 3 kills cut a request on the wire")
		}
	}
}

// killCollector SIGKILLs one collector instance while it holds a batch
// (it has received messages it has not yet stored or dead-lettered),
// keeps it down for hold, and starts it again.
func (r *chaosRun) killCollector(ctx context.Context, service, name string, hold time.Duration) (*fault, error) {
	prefix := strings.ReplaceAll(service, "-", "_") + "_"
	f := &fault{kind: faultCollectorKill, target: name, affected: []string{name},
		steady: without(instances(r.s), name)}
	held := 0.0
	waitFor(ctx, 15*time.Second, 5*time.Millisecond, func() bool {
		m, err := scrapeMetrics(ctx, r.s.URL(name)+"/metrics")
		if err != nil {
			return false
		}
		held = m[prefix+"events_accepted_total"] - m[prefix+"events_processed_total"] - m[prefix+"events_failed_total"]
		return held > 0
	})
	p := r.s.Proc(name)
	f.injected = time.Now()
	if err := p.Signal(syscall.SIGKILL); err != nil {
		return f, err
	}
	p.Wait()
	f.down = time.Now()
	if held > 0 {
		f.note = fmt.Sprintf("holding %.0f messages mid-batch", held)
	} else {
		f.note = "no batch seen in hand within 15s; killed anyway"
	}
	time.Sleep(hold)
	f.healed = time.Now()
	if err := r.s.Restart(ctx, name); err != nil {
		return f, fmt.Errorf("restart %s: %w", name, err)
	}
	return f, nil
}

// restartNATS stops the NATS server, gracefully or (crash) with SIGKILL,
// keeps it down for down, and starts it again on the same store and ports.
func (r *chaosRun) restartNATS(ctx context.Context, down time.Duration, crash bool) (*fault, error) {
	f := &fault{kind: faultNATSRestart, target: "nats-server", want503: true,
		affected: append([]string{"gateway"}, collectorInstances(r.s)...),
		steady:   r.s.Instances("reporter")}
	if crash {
		f.kind = faultNATSCrash
	}
	f.injected = time.Now()
	stopCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	stop := r.s.StopNATS
	if crash {
		stop = func(context.Context) error { return r.s.KillNATS() }
	}
	if err := stop(stopCtx); err != nil {
		return f, fmt.Errorf("stop nats: %w", err)
	}
	f.down = time.Now()
	time.Sleep(down)
	f.healed = time.Now()
	if err := r.s.StartNATS(ctx); err != nil {
		return f, fmt.Errorf("start nats: %w", err)
	}
	return f, nil
}

// outagePostgres stops PostgreSQL, keeps it down for down, and starts it
// again on the same data.
func (r *chaosRun) outagePostgres(ctx context.Context, down time.Duration) (*fault, error) {
	f := &fault{kind: faultPGOutage, target: "postgres", want503: true,
		affected: append(collectorInstances(r.s), r.s.Instances("reporter")...),
		steady:   r.s.Instances("gateway")}
	f.injected = time.Now()
	if err := r.s.StopPostgres(); err != nil {
		return f, fmt.Errorf("stop postgres: %w", err)
	}
	f.down = time.Now()
	time.Sleep(down)
	f.healed = time.Now()
	f.ackedDuring = len(r.l.ackedBy(f.healed)) - len(r.l.ackedBy(f.injected))
	f.note = fmt.Sprintf("%d events acknowledged meanwhile", f.ackedDuring)
	if err := r.s.StartPostgres(ctx); err != nil {
		return f, fmt.Errorf("start postgres: %w", err)
	}
	return f, nil
}

// recover waits until every instance is ready and every event
// acknowledged by healed is stored, and returns how long after healed
// that was.
func (r *chaosRun) recover(ctx context.Context, healed time.Time) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.settle)
	defer cancel()
	if err := waitStored(ctx, r.s.DatabaseURL(), r.l.ackedBy(healed)); err != nil {
		return 0, err
	}
	for _, name := range instances(r.s) {
		if err := r.s.WaitReady(ctx, name, r.cfg.settle); err != nil {
			return 0, err
		}
	}
	return time.Since(healed), nil
}

// mixed injects faults of every kind at random for d: first each kind
// once in a random order, then a kind drawn at random each time, skipped
// while a fault of that kind is still in progress (drawing only among the
// idle kinds would favour the short faults). Faults overlap: the next one
// starts after a random gap, whether or not the last has healed. Every
// draw comes from rnd (the printed seed), so a replay draws the same
// sequence; only whether a drawn kind is still in progress depends on
// timing.
func (r *chaosRun) mixed(ctx context.Context, rnd *rand.Rand, d time.Duration) []error {
	kinds := []string{faultGatewayKill, "fb-" + faultCollectorKill, "ttk-" + faultCollectorKill,
		faultNATSRestart, faultNATSCrash, faultPGOutage}
	// One NATS server: a restart and a crash never overlap.
	slot := func(kind string) string {
		if kind == faultNATSCrash {
			return faultNATSRestart
		}
		return kind
	}
	var (
		mu     sync.Mutex
		active = map[string]bool{}
		errs   []error
		wg     sync.WaitGroup
	)
	between := func(lo, hi time.Duration) time.Duration {
		if hi <= lo {
			return lo
		}
		return lo + time.Duration(rnd.Int64N(int64(hi-lo)))
	}
	order := rnd.Perm(len(kinds))
	end := time.Now().Add(d)
	for i := 0; i < len(kinds) || time.Now().Before(end); i++ {
		var kind string
		if i < len(kinds) {
			kind = kinds[order[i]]
		} else {
			kind = kinds[rnd.IntN(len(kinds))]
		}
		gap := between(500*time.Millisecond, r.cfg.mixedGap)
		mu.Lock()
		busy := active[slot(kind)]
		mu.Unlock()
		if busy {
			time.Sleep(gap)
			continue
		}
		var (
			run  func() (*fault, error)
			plan string
		)
		switch kind {
		case faultGatewayKill:
			hold := between(0, 2*time.Second)
			run = func() (*fault, error) { return r.killGateway(ctx, hold) }
			plan = fmt.Sprintf("down %s", hold.Round(time.Millisecond))
		case faultNATSRestart, faultNATSCrash:
			down := between(r.cfg.natsDown/3, r.cfg.natsDown)
			crash := kind == faultNATSCrash
			run = func() (*fault, error) { return r.restartNATS(ctx, down, crash) }
			plan = fmt.Sprintf("down %s", down.Round(time.Millisecond))
		case faultPGOutage:
			down := between(r.cfg.pgOutage/2, r.cfg.pgOutage)
			run = func() (*fault, error) { return r.outagePostgres(ctx, down) }
			plan = fmt.Sprintf("down %s", down.Round(time.Millisecond))
		default:
			service := strings.TrimSuffix(kind, "-"+faultCollectorKill) + "-collector"
			replicas := r.s.Instances(service)
			name := replicas[rnd.IntN(len(replicas))]
			hold := between(0, 2*time.Second)
			run = func() (*fault, error) { return r.killCollector(ctx, service, name, hold) }
			plan = fmt.Sprintf("%s, down %s", name, hold.Round(time.Millisecond))
		}
		mu.Lock()
		active[slot(kind)] = true
		mu.Unlock()
		r.logf("mixed %s: %s (%s); next in %s", r.since(time.Now()), kind, plan, gap.Round(time.Millisecond))
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, err := run()
			if f != nil && !f.injected.IsZero() {
				r.add(f)
			}
			mu.Lock()
			defer mu.Unlock()
			active[slot(kind)] = false
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", kind, err))
			}
		}()
		time.Sleep(gap)
	}
	wg.Wait()
	return errs
}
