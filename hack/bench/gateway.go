package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// rssBodyEvents is the body size of the peak-memory case: the real
// publisher's largest.
const rssBodyEvents = 50000

// GatewayResults is part 1: the gateway alone, JetStream acknowledging and
// no collector reading.
type GatewayResults struct {
	Bodies []GatewayBody `json:"bodies"`
	RSS    *GatewayRSS   `json:"rss,omitempty"`
}

// GatewayBody is one body size, posted by concurrent clients in a closed
// loop (each sends its next body when the previous one is answered).
type GatewayBody struct {
	Events          int     `json:"eventsPerBody"`
	BodyBytes       int     `json:"bodyBytes"`
	Clients         int     `json:"clients"`
	Requests        int     `json:"requests"`
	Failed          int     `json:"failedRequests"`
	Seconds         float64 `json:"seconds"`
	EventsPerSecond float64 `json:"eventsPerSecond"`
	Latency         Latency `json:"latency"`
	CPU             CPU     `json:"cpuCores"`
}

// GatewayRSS is the gateway process's memory around concurrent bodies of
// the largest size, on a freshly started process.
type GatewayRSS struct {
	Concurrent     int     `json:"concurrentBodies"`
	EventsPerBody  int     `json:"eventsPerBody"`
	Rounds         int     `json:"rounds"`
	Failed         int     `json:"failedRequests"`
	BaselineMB     float64 `json:"baselineRssMB"`
	PeakMB         float64 `json:"peakRssMB"`
	RoundLatencyMs Latency `json:"requestLatency"`
}

// webhookClient posts bodies to a gateway.
type webhookClient struct {
	url  string
	http *http.Client
}

func newWebhookClient(url string, conns int) *webhookClient {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = conns
	t.DisableCompression = true
	return &webhookClient{url: url + "/webhook", http: &http.Client{Transport: t}}
}

// post sends one body and returns an error unless every one of its want
// events was accepted.
func (c *webhookClient) post(ctx context.Context, body []byte, want int) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	var r struct {
		Accepted int `json:"accepted"`
	}
	if resp.StatusCode != http.StatusAccepted || json.Unmarshal(b, &r) != nil || r.Accepted != want {
		return fmt.Errorf("status %d: %.200s", resp.StatusCode, b)
	}
	return nil
}

func runGateway(ctx context.Context, e *env, sz Sizes, seed int64) (*GatewayResults, error) {
	ns, err := e.startNATS("gateway")
	if err != nil {
		return nil, err
	}
	defer ns.stop()
	gw, err := e.startReady(ctx, "gateway", "gateway", "NATS_URL="+ns.url())
	if err != nil {
		return nil, err
	}
	defer gw.stop()

	res := &GatewayResults{}
	var seq atomic.Uint64 // stamps: unique across every request of the run
	for i, n := range sz.GatewayBodies {
		e.logger.Info("gateway: posting bodies", "events", n, "clients", sz.GatewayClients, "for", sz.GatewayDuration)
		b, err := postLoop(ctx, e, gw, n, sz, seed+int64(i), &seq)
		if err != nil {
			return res, fmt.Errorf("%d-event bodies: %w", n, err)
		}
		res.Bodies = append(res.Bodies, b)
		e.logger.Info("gateway: done", "events", n, "events_per_s", round(b.EventsPerSecond), "p99_ms", b.Latency.P99, "failed", b.Failed)
		// What the gateway published is of no further use; a growing
		// stream would only slow the next size's publishes.
		if err := ns.purge(ctx); err != nil {
			return res, err
		}
	}

	// Peak memory on a fresh process, so earlier sizes leave no trace in
	// its high-water mark.
	if err := gw.stop(); err != nil {
		return res, err
	}
	e.logger.Info("gateway: peak RSS with concurrent 50,000-event bodies", "rounds", sz.RSSRounds)
	res.RSS, err = measureRSS(ctx, e, ns, sz.RSSRounds, seed, &seq)
	return res, err
}

// postLoop runs clients posting n-event bodies until the duration has
// passed and each client has had at least one answer.
func postLoop(ctx context.Context, e *env, gw *proc, n int, sz Sizes, seed int64, seq *atomic.Uint64) (GatewayBody, error) {
	base := body(n, seed, time.Now())
	tails, err := idTails(base)
	if err != nil {
		return GatewayBody{}, err
	}
	client := newWebhookClient(gw.url(), sz.GatewayClients)
	bodies := make([][]byte, sz.GatewayClients)
	for c := range bodies {
		bodies[c] = bytes.Clone(base)
	}
	// One untimed request per client opens its connection and grows the
	// gateway's buffers.
	for _, b := range bodies {
		stamp(b, tails, seq.Add(1))
		if err := client.post(ctx, b, n); err != nil {
			return GatewayBody{}, fmt.Errorf("warm-up request: %w", err)
		}
	}

	var (
		mu      sync.Mutex
		took    []time.Duration
		failed  int
		lastErr error
		wg      sync.WaitGroup
	)
	meter := startCPU(cpuGroup{"gateway", pidsOf(gw)}, harnessGroup())
	start := time.Now()
	deadline := start.Add(sz.GatewayDuration)
	for c := range bodies {
		wg.Go(func() {
			for done := 0; ctx.Err() == nil && (done == 0 || time.Now().Before(deadline)); done++ {
				stamp(bodies[c], tails, seq.Add(1))
				t := time.Now()
				err := client.post(ctx, bodies[c], n)
				d := time.Since(t)
				mu.Lock()
				if err != nil {
					failed++
					lastErr = err
				} else {
					took = append(took, d)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	cpu := meter.stop()
	if ctx.Err() != nil {
		return GatewayBody{}, ctx.Err()
	}
	if lastErr != nil {
		e.logger.Warn("gateway: failed requests", "events", n, "failed", failed, "last_error", lastErr)
	}
	return GatewayBody{
		Events:          n,
		BodyBytes:       len(base),
		Clients:         sz.GatewayClients,
		Requests:        len(took) + failed,
		Failed:          failed,
		Seconds:         secs,
		EventsPerSecond: float64(len(took)*n) / secs,
		Latency:         summarize(took),
		CPU:             cpu,
	}, nil
}

// measureRSS starts a gateway, notes its resident memory once ready, then
// posts rounds of two concurrent 50,000-event bodies and reads the
// process's high-water mark (VmHWM).
func measureRSS(ctx context.Context, e *env, ns *natsServer, rounds int, seed int64, seq *atomic.Uint64) (*GatewayRSS, error) {
	gw, err := e.startReady(ctx, "gateway", "gateway-rss", "NATS_URL="+ns.url())
	if err != nil {
		return nil, err
	}
	defer gw.stop()
	const concurrent = 2
	res := &GatewayRSS{Concurrent: concurrent, EventsPerBody: rssBodyEvents, Rounds: rounds}
	base := body(rssBodyEvents, seed+100, time.Now())
	tails, err := idTails(base)
	if err != nil {
		return nil, err
	}
	bodies := [concurrent][]byte{bytes.Clone(base), bytes.Clone(base)}
	client := newWebhookClient(gw.url(), concurrent)
	baseline, err := procStatus(gw.pid(), "VmRSS")
	if err != nil {
		return nil, err
	}
	res.BaselineMB = kibToMB(baseline)

	var (
		took []time.Duration
		mu   sync.Mutex
		errs []error
	)
	for range rounds {
		var wg sync.WaitGroup
		for c := range bodies {
			stamp(bodies[c], tails, seq.Add(1))
			wg.Go(func() {
				t := time.Now()
				err := client.post(ctx, bodies[c], rssBodyEvents)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					res.Failed++
					errs = append(errs, err)
					return
				}
				took = append(took, time.Since(t))
			})
		}
		wg.Wait()
		if err := ns.purge(ctx); err != nil {
			return nil, err
		}
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if len(errs) > 0 {
		e.logger.Warn("gateway: failed requests in the RSS case", "failed", len(errs), "first_error", errs[0])
	}
	peak, err := procStatus(gw.pid(), "VmHWM")
	if err != nil {
		return nil, err
	}
	res.PeakMB = kibToMB(peak)
	res.RoundLatencyMs = summarize(took)
	return res, nil
}

func round(f float64) int64 { return int64(f + 0.5) }

// kibToMB converts /proc's kB (KiB) to decimal megabytes, the unit of the
// issue's memory target.
func kibToMB(kib int64) float64 { return float64(kib) * 1024 / 1e6 }
