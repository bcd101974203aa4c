package main

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/eventpipe/eventpipe/pkg/event"
	"github.com/eventpipe/eventpipe/pkg/eventgen"
	"github.com/eventpipe/eventpipe/pkg/stream"
)

// recentEvents is how far back a duplicate reaches: the publisher's
// choice too, about one large POST.
const recentEvents = 10000

// CollectorResults is part 2: both collectors draining a backlog that was
// published before they started.
type CollectorResults struct {
	Runs []CollectorRun `json:"runs"`
}

// CollectorRun is one backlog drained into an empty events table.
type CollectorRun struct {
	Backlog      int `json:"backlogEvents"`
	DuplicatePct int `json:"duplicatePercent"`
	// Duplicates are messages repeating an earlier eventId under another
	// Nats-Msg-Id, so JetStream's duplicate window lets them through.
	Duplicates    int     `json:"duplicates"`
	FillSeconds   float64 `json:"fillSeconds"`
	FillPerSecond float64 `json:"fillEventsPerSecond"`
	// Seconds runs from the collectors' start to the last acknowledgement
	// (the stream is empty); their start-up is included.
	Seconds float64 `json:"seconds"`
	// EventsPerSecond counts every backlog event, duplicates included:
	// each one was handled, committed (as a no-op for a duplicate) and
	// acknowledged.
	EventsPerSecond float64 `json:"eventsPerSecond"`
	// Rows are the new rows stored; RowsPerSecond is their rate.
	Rows              int64   `json:"rows"`
	RowsPerSecond     float64 `json:"rowsPerSecond"`
	DuplicatesCounted int64   `json:"duplicatesCounted"`
	CPU               CPU     `json:"cpuCores"`
}

func runCollectors(ctx context.Context, e *env, sz Sizes, seed int64) (*CollectorResults, error) {
	res := &CollectorResults{}
	for _, pct := range sz.DuplicatePcts {
		r, err := drainBacklog(ctx, e, sz.Backlog, pct, seed+int64(pct))
		if err != nil {
			return res, fmt.Errorf("backlog with %d%% duplicates: %w", pct, err)
		}
		res.Runs = append(res.Runs, r)
	}
	return res, nil
}

func drainBacklog(ctx context.Context, e *env, n, dupPct int, seed int64) (CollectorRun, error) {
	r := CollectorRun{Backlog: n, DuplicatePct: dupPct}
	ns, err := e.startNATS("collectors")
	if err != nil {
		return r, err
	}
	defer ns.stop()
	if err := ns.ensureStreams(ctx); err != nil {
		return r, err
	}
	e.logger.Info("collectors: filling the backlog", "events", n, "duplicates_pct", dupPct)
	start := time.Now()
	if r.Duplicates, err = fillBacklog(ctx, ns, n, dupPct, seed); err != nil {
		return r, err
	}
	r.FillSeconds = time.Since(start).Seconds()
	r.FillPerSecond = float64(n) / r.FillSeconds

	dbURL, drop, err := e.newDatabase(ctx, "collectors")
	if err != nil {
		return r, err
	}
	defer drop()
	// The fill's dirty pages would otherwise be written while the
	// collectors run.
	if err := execSQL(ctx, e.dbURL("postgres"), "CHECKPOINT"); err != nil {
		return r, err
	}

	e.logger.Info("collectors: draining", "events", n)
	var fb, ttk *proc
	meter := startCPU(cpuGroup{"collectors", func() []int { return pidsOf(fb, ttk)() }}, e.postgresGroup(), harnessGroup())
	start = time.Now()
	env := []string{"NATS_URL=" + ns.url(), "DATABASE_URL=" + dbURL}
	if fb, err = e.start("fb-collector", fmt.Sprintf("fb-collector-dup%d", dupPct), env...); err != nil {
		return r, err
	}
	defer fb.stop()
	if ttk, err = e.start("ttk-collector", fmt.Sprintf("ttk-collector-dup%d", dupPct), env...); err != nil {
		return r, err
	}
	defer ttk.stop()
	limit := 2*time.Minute + time.Duration(n/500)*time.Second
	if err := waitDrained(ctx, e, ns, limit, fb, ttk); err != nil {
		return r, err
	}
	r.Seconds = time.Since(start).Seconds()
	r.CPU = meter.stop()
	r.EventsPerSecond = float64(n) / r.Seconds

	if r.Rows, err = countRows(ctx, dbURL); err != nil {
		return r, err
	}
	r.RowsPerSecond = float64(r.Rows) / r.Seconds
	for _, p := range []*proc{fb, ttk} {
		prefix := strings.ReplaceAll(p.name, "-", "_") + "_"
		d, err := scrapeSum(ctx, p.url(), prefix+"events_duplicates_total")
		if err != nil {
			return r, err
		}
		r.DuplicatesCounted += int64(d)
	}
	if want := int64(n - r.Duplicates); r.Rows != want {
		return r, fmt.Errorf("stored %d rows; want %d distinct events", r.Rows, want)
	}
	e.logger.Info("collectors: drained", "events", n, "seconds", fmt.Sprintf("%.1f", r.Seconds),
		"events_per_s", round(r.EventsPerSecond), "rows_per_s", round(r.RowsPerSecond))
	return r, stopAll(fb, ttk)
}

// fillBacklog publishes n events, as the publisher generates them, straight
// to JetStream. dupPct of them repeat an event among the last
// recentEvents published, under a Nats-Msg-Id of their own. It returns how
// many duplicates it published.
func fillBacklog(ctx context.Context, ns *natsServer, n, dupPct int, seed int64) (int, error) {
	g := eventgen.New(seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0x5eed))
	type sent struct {
		subject, id string
		raw         []byte
	}
	recent := make([]sent, 0, recentEvents)
	dups := 0
	ts := time.Now().UTC()
	var corr []string
	for i := range n {
		if i%1000 == 0 {
			corr = []string{"bench-fill-" + strconv.Itoa(i/1000)}
		}
		var s sent
		if dupPct > 0 && len(recent) > 0 && rng.IntN(100) < dupPct {
			s = recent[rng.IntN(len(recent))]
			s.id += "#dup" + strconv.Itoa(i)
			dups++
		} else {
			ev := g.Next(ts.Add(time.Duration(i) * time.Millisecond))
			s = sent{subject: event.Subject(ev.Source, ev.Type), id: ev.ID, raw: ev.AppendJSON(nil)}
			if len(recent) < recentEvents {
				recent = append(recent, s)
			} else {
				recent[i%recentEvents] = s
			}
		}
		msg := &nats.Msg{
			Subject: s.subject,
			Data:    s.raw,
			Header: nats.Header{
				jetstream.MsgIDHeader:      []string{s.id},
				stream.HeaderCorrelationID: corr,
			},
		}
		// A full window of pending publishes waits for acknowledgements
		// rather than failing.
		if _, err := ns.js.PublishMsgAsync(msg, jetstream.WithStallWait(time.Minute)); err != nil {
			return 0, fmt.Errorf("publish: %w", err)
		}
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
	}
	select {
	case <-ns.js.PublishAsyncComplete():
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(time.Minute):
		return 0, fmt.Errorf("%d publishes not acknowledged after a minute", ns.js.PublishAsyncPending())
	}
	got, err := ns.streamMsgs(ctx)
	if err != nil {
		return 0, err
	}
	if got != uint64(n) {
		return 0, fmt.Errorf("stream holds %d messages after the fill; want %d", got, n)
	}
	return dups, nil
}

// waitDrained waits until EVENTS is empty: every message acknowledged.
func waitDrained(ctx context.Context, e *env, ns *natsServer, limit time.Duration, procs ...*proc) error {
	deadline := time.Now().Add(limit)
	lastLog := time.Now()
	for {
		msgs, err := ns.streamMsgs(ctx)
		if err != nil {
			return err
		}
		if msgs == 0 {
			return nil
		}
		for _, p := range procs {
			select {
			case <-p.done:
				return fmt.Errorf("%s exited (%v); see %s", p.name, p.err, p.log)
			default:
			}
		}
		if time.Since(lastLog) > 10*time.Second {
			e.logger.Info("collectors: backlog left", "events", msgs)
			lastLog = time.Now()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d events still in the stream after %s", msgs, limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func countRows(ctx context.Context, dbURL string) (int64, error) {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.Background())
	var n int64
	err = conn.QueryRow(ctx, `SELECT count(*) FROM events`).Scan(&n)
	return n, err
}

// scrapeSum reads a service's /metrics and sums every series of a metric.
func scrapeSum(ctx context.Context, baseURL, name string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s/metrics: status %d", baseURL, resp.StatusCode)
	}
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		if rest == "" || (rest[0] != '{' && rest[0] != ' ') {
			continue // a longer name sharing the prefix
		}
		v, err := strconv.ParseFloat(rest[strings.LastIndexByte(rest, ' ')+1:], 64)
		if err != nil {
			return 0, fmt.Errorf("metric line %q: %w", line, err)
		}
		sum += v
	}
	return sum, sc.Err()
}
