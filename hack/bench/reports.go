package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/eventpipe/eventpipe/pkg/eventgen"
	"github.com/eventpipe/eventpipe/pkg/store"
)

// The loaded events span loadDays days from loadStart, in time order with
// a minute of jitter, as collectors would have stored them.
var loadStart = time.Date(2025, 5, 12, 0, 0, 0, 0, time.UTC)

const (
	loadDays    = 30
	loadJitter  = time.Minute
	loadWriters = 2
)

// ReportResults is part 4: report latency over bulk-loaded events.
type ReportResults struct {
	Sizes []ReportSize `json:"sizes"`
}

// ReportSize is one number of stored events.
type ReportSize struct {
	Events            int           `json:"events"`
	LoadSeconds       float64       `json:"loadSeconds"`
	LoadRowsPerSecond float64       `json:"loadRowsPerSecond"`
	VacuumSeconds     float64       `json:"vacuumAnalyzeSeconds"`
	TableMB           float64       `json:"tableWithIndexesMB"`
	Queries           []ReportQuery `json:"queries"`
}

// ReportQuery is one report and query shape, asked sequentially through
// the reporter binary over HTTP.
type ReportQuery struct {
	Report  string  `json:"report"`
	Kind    string  `json:"kind"`
	Example string  `json:"example"`
	Failed  int     `json:"failedRequests"`
	Latency Latency `json:"latency"`
	CPU     CPU     `json:"cpuCores"`
}

// reportQuery builds the path of the i-th request of a query.
type reportQuery struct {
	report, kind string
	path         func(i int) string
}

// reportQueries are, for each report, a full-range query, a one-day query,
// an uneven range (about nine days from and to odd milliseconds, which
// rollups of whole buckets cannot answer alone) and a filtered full-range
// query. The one-day and uneven ranges move with each request, so nothing
// can answer from a cache of the previous one.
func reportQueries(campaign string) []reportQuery {
	day := func(i int) string {
		d := loadStart.AddDate(0, 0, 1+i%(loadDays-2)).Format(time.DateOnly)
		return "from=" + d + "&to=" + d
	}
	uneven := func(i int) string {
		from := loadStart.AddDate(0, 0, 1+i%(loadDays-12)).Add(7*time.Hour + 13*time.Minute + 25123*time.Millisecond)
		to := from.Add(9*24*time.Hour + 9*time.Hour + 33*time.Minute + 44333*time.Millisecond)
		return "from=" + from.Format(time.RFC3339Nano) + "&to=" + to.Format(time.RFC3339Nano)
	}
	var out []reportQuery
	for _, r := range []struct{ name, filter string }{
		{"events", "source=facebook&eventType=checkout.complete"},
		{"revenue", "source=facebook&campaignId=" + url.QueryEscape(campaign)},
		{"demographics", "source=facebook"},
	} {
		p := "/reports/" + r.name
		out = append(out,
			reportQuery{r.name, "full range", func(int) string { return p }},
			reportQuery{r.name, "one day", func(i int) string { return p + "?" + day(i) }},
			reportQuery{r.name, "uneven range", func(i int) string { return p + "?" + uneven(i) }},
			reportQuery{r.name, "filtered", func(int) string { return p + "?" + r.filter }},
		)
	}
	return out
}

func runReports(ctx context.Context, e *env, sz Sizes, seed int64) (*ReportResults, error) {
	res := &ReportResults{}
	for _, n := range sz.ReportEvents {
		r, err := reportSize(ctx, e, sz, n, seed)
		if err != nil {
			return res, fmt.Errorf("%d events: %w", n, err)
		}
		res.Sizes = append(res.Sizes, r)
	}
	return res, nil
}

func reportSize(ctx context.Context, e *env, sz Sizes, n int, seed int64) (ReportSize, error) {
	r := ReportSize{Events: n}
	dbURL, drop, err := e.newDatabase(ctx, "reports")
	if err != nil {
		return r, err
	}
	defer drop()
	e.logger.Info("reports: loading events with COPY", "events", n, "writers", loadWriters)
	start := time.Now()
	if err := bulkLoad(ctx, e, dbURL, n, seed); err != nil {
		return r, err
	}
	r.LoadSeconds = time.Since(start).Seconds()
	r.LoadRowsPerSecond = float64(n) / r.LoadSeconds
	// What autovacuum would have done by the time anyone reports: planner
	// statistics and the visibility map, of events and of the rollups its
	// trigger filled. The checkpoint keeps the load's writes out of the
	// timings.
	start = time.Now()
	if err := execSQL(ctx, dbURL, "VACUUM (ANALYZE)", "CHECKPOINT"); err != nil {
		return r, err
	}
	r.VacuumSeconds = time.Since(start).Seconds()

	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return r, err
	}
	var (
		campaign string
		bytes    int64
	)
	err = conn.QueryRow(ctx, `SELECT campaign_id FROM events WHERE campaign_id IS NOT NULL LIMIT 1`).Scan(&campaign)
	if err == nil {
		err = conn.QueryRow(ctx, `SELECT pg_total_relation_size('events')`).Scan(&bytes)
	}
	conn.Close(context.Background())
	if err != nil {
		return r, err
	}
	r.TableMB = float64(bytes) / 1e6
	e.logger.Info("reports: loaded", "events", n, "seconds", fmt.Sprintf("%.1f", r.LoadSeconds),
		"rows_per_s", round(r.LoadRowsPerSecond), "table_mb", round(r.TableMB))

	rep, err := e.startReady(ctx, "reporter", fmt.Sprintf("reporter-%d", n), "DATABASE_URL="+dbURL)
	if err != nil {
		return r, err
	}
	defer rep.stop()
	client := &http.Client{}
	for _, q := range reportQueries(campaign) {
		rq, err := timeQuery(ctx, e, client, rep, q, sz)
		if err != nil {
			return r, err
		}
		e.logger.Info("reports: timed", "events", n, "report", q.report, "kind", q.kind,
			"p50_ms", rq.Latency.P50, "p95_ms", rq.Latency.P95, "n", rq.Latency.N)
		r.Queries = append(r.Queries, rq)
	}
	return r, rep.stop()
}

// timeQuery asks a query, after two untimed requests, until it has
// sz.ReportSamples timings and a second has passed (fast queries get more
// samples, up to a hundred times as many), or until its budget is spent
// with at least three.
func timeQuery(ctx context.Context, e *env, client *http.Client, rep *proc, q reportQuery, sz Sizes) (ReportQuery, error) {
	rq := ReportQuery{Report: q.report, Kind: q.kind, Example: q.path(0)}
	get := func(path string) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, rep.url()+path, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: status %d: %.200s", path, resp.StatusCode, b)
		}
		return nil
	}
	for i := range 2 {
		if err := get(q.path(1000 + i)); err != nil {
			return rq, fmt.Errorf("warm-up: %w", err)
		}
	}
	var took []time.Duration
	meter := startCPU(cpuGroup{"reporter", pidsOf(rep)}, e.postgresGroup())
	start := time.Now()
	more := func(i int) bool {
		elapsed := time.Since(start)
		switch {
		case i < 3:
			return true
		case elapsed >= sz.ReportBudget || i >= 100*sz.ReportSamples:
			return false
		}
		return i < sz.ReportSamples || elapsed < time.Second
	}
	for i := 0; more(i); i++ {
		t := time.Now()
		if err := get(q.path(i)); err != nil {
			if ctx.Err() != nil {
				return rq, ctx.Err()
			}
			rq.Failed++
			e.logger.Warn("reports: request failed", "error", err)
			continue
		}
		took = append(took, time.Since(t))
	}
	rq.CPU = meter.stop()
	rq.Latency = summarize(took)
	return rq, nil
}

// bulkLoad stores n generated events with COPY from loadWriters
// connections. One goroutine generates them in time order, in chunks the
// writers take in turn, so the table's physical order follows time as the
// collectors' inserts would, and the data depends on the seed alone.
func bulkLoad(ctx context.Context, e *env, dbURL string, n int, seed int64) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	chunk := min(n, max(n/(loadDays*24), 5000))
	chunks := make(chan [][]any, 2*loadWriters)
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		errs   []error
		stored int64
	)
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
		cancel()
	}
	for range loadWriters {
		wg.Go(func() {
			conn, err := pgx.Connect(ctx, dbURL)
			if err != nil {
				fail(err)
				return
			}
			defer conn.Close(context.Background())
			for rows := range chunks {
				if _, err := conn.CopyFrom(ctx, pgx.Identifier{"events"}, store.CopyColumns, pgx.CopyFromRows(rows)); err != nil {
					fail(fmt.Errorf("copy: %w", err))
					return
				}
				mu.Lock()
				stored += int64(len(rows))
				mu.Unlock()
			}
		})
	}

	g := eventgen.New(seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0x10ad))
	step := loadDays * 24 * time.Hour / time.Duration(n)
	lastLog := time.Now()
	recs := make([]store.Record, 0, chunk)
	func() {
		defer close(chunks)
		for i := range n {
			ts := loadStart.Add(time.Duration(i)*step - time.Duration(rng.Int64N(int64(loadJitter))))
			if ts.Before(loadStart) {
				ts = loadStart
			}
			ev := g.Next(ts)
			recs = append(recs, store.Record{Event: ev, Raw: ev.AppendJSON(nil), CorrelationID: "bench-load"})
			if len(recs) == chunk || i == n-1 {
				// The collectors' own column mapping, so loaded events read
				// as stored ones.
				rows, err := store.CopyRows(recs)
				if err != nil {
					fail(err)
					return
				}
				select {
				case chunks <- rows:
				case <-ctx.Done():
					return
				}
				recs = make([]store.Record, 0, chunk)
			}
			if time.Since(lastLog) > 15*time.Second {
				mu.Lock()
				done := stored
				mu.Unlock()
				e.logger.Info("reports: loading", "stored", done, "of", n)
				lastLog = time.Now()
			}
		}
	}()
	wg.Wait()
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if stored != int64(n) {
		return fmt.Errorf("stored %d of %d events", stored, n)
	}
	return ctx.Err()
}
