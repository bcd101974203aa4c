// Package publisher is a faithful stand-in for the andriiuni/events
// publisher and the load generator of this system.
//
// By default it behaves like the real one (shared/spec/events.md): a JSON
// array of 1,000..50,000 events POSTed every second on a timer, without
// waiting for earlier answers, without retries, timeouts or extra headers,
// and about one POST in ten with a corrupted event appended. Options add what
// the real one only threatens: duplicates and out-of-order timestamps.
package publisher

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eventpipe/eventpipe/pkg/eventgen"
)

// Defaults of the real publisher.
const (
	DefaultEndpoint      = "http://localhost:3000/webhook"
	DefaultInterval      = time.Second
	DefaultMinBatch      = 1000
	DefaultMaxBatch      = 50000
	DefaultCorruptEvery  = 10
	DefaultShutdownGrace = 30 * time.Second
)

const (
	// progressEvery paces the info-level progress line.
	progressEvery = 10 * time.Second

	// recentEvents is how many already-sent encoded events are kept as
	// candidates for duplicates: enough to reach into the previous POST at
	// the default batch sizes without holding a whole run in memory.
	recentEvents = 10000

	// maxResponseBody bounds what is read of an answer; the gateway's
	// error list is capped, so its bodies are far smaller.
	maxResponseBody = 1 << 20
)

// Options configure a run. Zero Interval, MinBatch, MaxBatch and
// ShutdownGrace take the defaults above; a zero CorruptEvery disables
// corruption, so start from DefaultOptions for the real publisher's
// behaviour.
type Options struct {
	// Endpoint is the URL events are POSTed to.
	Endpoint string
	// Interval is the time between two POSTs.
	Interval time.Duration
	// MinBatch and MaxBatch bound the number of events of a POST, drawn
	// uniformly; a corrupted event comes on top of them.
	MinBatch int
	MaxBatch int
	// Total is how many events to send in all, corrupted ones included;
	// zero sends until the context is cancelled.
	Total int64
	// DuplicateRatio is the share (0..1) of events of a POST that repeat,
	// byte for byte, an event already sent in this or an earlier POST.
	DuplicateRatio float64
	// OutOfOrder stamps each event with now minus a random amount in
	// [0, OutOfOrder) instead of now.
	OutOfOrder time.Duration
	// Seed makes the run reproducible: the same seed and options produce
	// the same bodies.
	Seed int64
	// CorruptEvery makes one POST in CorruptEvery, at random, end with a
	// corrupted event; zero disables it.
	CorruptEvery int
	// Timeout bounds each POST; zero means none, like the real publisher.
	Timeout time.Duration
	// MaxInFlight caps the POSTs awaiting an answer; when reached, the next
	// POST waits for a slot and ticks are skipped. Zero means unbounded,
	// like the real publisher.
	MaxInFlight int
	// ShutdownGrace is how long in-flight POSTs may still take once the
	// context is cancelled before they are aborted.
	ShutdownGrace time.Duration
}

// DefaultOptions returns the options that behave like the real publisher.
func DefaultOptions() Options {
	return Options{
		Endpoint:      DefaultEndpoint,
		Interval:      DefaultInterval,
		MinBatch:      DefaultMinBatch,
		MaxBatch:      DefaultMaxBatch,
		CorruptEvery:  DefaultCorruptEvery,
		ShutdownGrace: DefaultShutdownGrace,
	}
}

func (o Options) withDefaults() Options {
	if o.Interval == 0 {
		o.Interval = DefaultInterval
	}
	if o.MinBatch == 0 {
		o.MinBatch = DefaultMinBatch
	}
	if o.MaxBatch == 0 {
		o.MaxBatch = DefaultMaxBatch
	}
	if o.ShutdownGrace == 0 {
		o.ShutdownGrace = DefaultShutdownGrace
	}
	return o
}

// validate repeats the checks of LoadConfig for callers that build Options
// in code.
func (o Options) validate() error {
	u, err := url.Parse(o.Endpoint)
	switch {
	case err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https"):
		return fmt.Errorf("endpoint: must be an http or https URL, got %q", o.Endpoint)
	case o.Interval < 0:
		return fmt.Errorf("interval: must be positive, got %s", o.Interval)
	case o.MinBatch < 1 || o.MaxBatch < 1:
		return fmt.Errorf("batch sizes must be positive, got %d..%d", o.MinBatch, o.MaxBatch)
	case o.MinBatch > o.MaxBatch:
		return fmt.Errorf("min batch %d exceeds max batch %d", o.MinBatch, o.MaxBatch)
	case o.Total < 0:
		return fmt.Errorf("total: must not be negative, got %d", o.Total)
	case !(o.DuplicateRatio >= 0 && o.DuplicateRatio <= 1):
		return fmt.Errorf("duplicate ratio: must be from 0 to 1, got %g", o.DuplicateRatio)
	case o.OutOfOrder < 0 || o.Timeout < 0 || o.ShutdownGrace < 0:
		return errors.New("durations must not be negative")
	case o.CorruptEvery < 0 || o.MaxInFlight < 0:
		return errors.New("corrupt every and max in flight must not be negative")
	}
	return nil
}

// Summary reports a run.
type Summary struct {
	Seed       int64 `json:"seed"`
	Requests   int64 `json:"requests"`
	EventsSent int64 `json:"eventsSent"`
	Corrupted  int64 `json:"corrupted"`
	Duplicates int64 `json:"duplicates"`
	// StatusCodes counts answers by HTTP status.
	StatusCodes   map[int]int64 `json:"statusCodes"`
	NetworkErrors int64         `json:"networkErrors"`
	// Accepted and Rejected sum the counts of the gateway's 2xx and 400
	// answer bodies.
	Accepted        int64         `json:"accepted"`
	Rejected        int64         `json:"rejected"`
	Duration        time.Duration `json:"-"`
	DurationSeconds float64       `json:"durationSeconds"`
	EventsPerSecond float64       `json:"eventsPerSecond"`
}

// Run POSTs batches of generated events to opts.Endpoint every
// opts.Interval until opts.Total events are sent or ctx is cancelled, then
// waits for the POSTs in flight (at most opts.ShutdownGrace after ctx is
// cancelled) and returns what happened. Failed POSTs are counted, never
// retried; the only error is an invalid option.
func Run(ctx context.Context, opts Options, client *http.Client, logger *slog.Logger) (Summary, error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return Summary{}, err
	}
	if client == nil {
		client = &http.Client{}
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	// POSTs run on a context that outlives ctx, so cancelling stops the
	// timer but lets answers arrive during the grace period.
	reqCtx, abort := context.WithCancel(context.WithoutCancel(ctx))
	defer abort()
	p := &publisher{
		opts:   opts,
		client: client,
		logger: logger.With("component", "publisher"),
		reqCtx: reqCtx,
		sum:    Summary{Seed: opts.Seed, StatusCodes: map[int]int64{}},
	}
	if opts.MaxInFlight > 0 {
		p.slots = make(chan struct{}, opts.MaxInFlight)
	}
	p.logger.Info("publishing", "endpoint", opts.Endpoint, "interval", opts.Interval,
		"minBatch", opts.MinBatch, "maxBatch", opts.MaxBatch, "total", opts.Total,
		"duplicateRatio", opts.DuplicateRatio, "outOfOrder", opts.OutOfOrder,
		"corruptEvery", opts.CorruptEvery, "seed", opts.Seed)

	start := time.Now()
	stopProgress := p.reportProgress(start)
	p.fire(ctx)
	p.logger.Info("stopped firing, waiting for requests in flight", "inFlight", p.inFlight.Load())
	p.waitInFlight(ctx, abort)
	stopProgress()

	sum := p.summary()
	sum.Duration = time.Since(start)
	sum.DurationSeconds = sum.Duration.Seconds()
	if s := sum.Duration.Seconds(); s > 0 {
		sum.EventsPerSecond = float64(sum.EventsSent) / s
	}
	p.logger.Info("done", "requests", sum.Requests, "eventsSent", sum.EventsSent,
		"accepted", sum.Accepted, "rejected", sum.Rejected, "networkErrors", sum.NetworkErrors,
		"duration", sum.Duration)
	return sum, nil
}

type publisher struct {
	opts   Options
	client *http.Client
	logger *slog.Logger
	reqCtx context.Context
	slots  chan struct{} // nil when unbounded
	bodies sync.Pool     // *[]byte
	wg     sync.WaitGroup

	inFlight atomic.Int64
	mu       sync.Mutex
	sum      Summary
}

// fire sends one POST per tick, the first at once rather than after one
// interval so short runs and tests do not idle, until the total is
// reached or ctx is cancelled.
func (p *publisher) fire(ctx context.Context) {
	b := newBuilder(p.opts)
	ticker := time.NewTicker(p.opts.Interval)
	defer ticker.Stop()
	var sent int64
	for n := int64(1); p.opts.Total == 0 || sent < p.opts.Total; n++ {
		if n > 1 {
			select {
			case <-ctx.Done():
				return
			case <-ticker.C:
			}
		}
		if p.slots != nil {
			select {
			case <-ctx.Done():
				return
			case p.slots <- struct{}{}:
			}
		}
		if ctx.Err() != nil {
			p.releaseSlot()
			return
		}
		size, corrupt := b.plan(p.opts.Total - sent)
		buf := p.getBuffer()
		bt := b.build((*buf)[:0], size, corrupt, time.Now())
		*buf = bt.body
		sent += int64(bt.events)

		p.mu.Lock()
		p.sum.Requests++
		p.sum.EventsSent += int64(bt.events)
		p.sum.Duplicates += int64(bt.duplicates)
		if bt.corrupted {
			p.sum.Corrupted++
		}
		p.mu.Unlock()

		p.wg.Add(1)
		p.inFlight.Add(1)
		go p.post(n, buf, bt)
	}
}

// waitInFlight waits for every POST; once ctx is cancelled, for at most the
// grace period, after which the rest are aborted (and count as network
// errors).
func (p *publisher) waitInFlight(ctx context.Context, abort context.CancelFunc) {
	done := make(chan struct{})
	go func() {
		p.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return
	case <-ctx.Done():
	}
	grace := time.NewTimer(p.opts.ShutdownGrace)
	defer grace.Stop()
	select {
	case <-done:
	case <-grace.C:
		p.logger.Warn("aborting requests in flight after the grace period",
			"inFlight", p.inFlight.Load(), "grace", p.opts.ShutdownGrace)
		abort()
		<-done
	}
}

func (p *publisher) reportProgress(start time.Time) (stop func()) {
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(progressEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				s := p.summary()
				p.logger.Info("progress", "requests", s.Requests, "eventsSent", s.EventsSent,
					"eventsPerSecond", int64(float64(s.EventsSent)/time.Since(start).Seconds()),
					"inFlight", p.inFlight.Load(), "accepted", s.Accepted, "rejected", s.Rejected,
					"statusCodes", s.StatusCodes, "networkErrors", s.NetworkErrors)
			}
		}
	}()
	return func() {
		close(done)
		<-stopped
	}
}

func (p *publisher) getBuffer() *[]byte {
	if b, ok := p.bodies.Get().(*[]byte); ok {
		return b
	}
	b := []byte(nil)
	return &b
}

func (p *publisher) releaseSlot() {
	if p.slots != nil {
		<-p.slots
	}
}

// answer is the part of the gateway's response body the summary uses.
type answer struct {
	Accepted int64 `json:"accepted"`
	Rejected int64 `json:"rejected"`
}

func (p *publisher) post(n int64, buf *[]byte, bt batch) {
	defer p.wg.Done()
	defer p.inFlight.Add(-1)
	defer p.releaseSlot()

	// The transport may still read the body after Do returns; the buffer
	// goes back to the pool only once both Do's caller and the transport
	// (by closing the body) are done with it.
	var refs atomic.Int32
	refs.Store(2)
	release := func() {
		if refs.Add(-1) == 0 {
			p.bodies.Put(buf)
		}
	}
	defer release()

	ctx := p.reqCtx
	if p.opts.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.opts.Timeout)
		defer cancel()
	}
	body := &requestBody{Reader: bytes.NewReader(bt.body), onClose: release}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.opts.Endpoint, body)
	if err != nil {
		body.Close()
		p.logger.Error("build request", "request", n, "err", err)
		p.record(0, answer{}, err)
		return
	}
	req.ContentLength = int64(len(bt.body))
	req.Header.Set("Content-Type", "application/json")

	start := time.Now()
	resp, err := p.client.Do(req)
	if err != nil {
		// Warn rather than debug: a lost batch is what the operator of a
		// load test most needs to see, and it happens at most once a tick.
		p.logger.Warn("post failed", "request", n, "events", bt.events, "corrupted", bt.corrupted,
			"duplicates", bt.duplicates, "elapsed", time.Since(start), "err", err)
		p.record(0, answer{}, err)
		return
	}
	var a answer
	if resp.StatusCode/100 == 2 || resp.StatusCode == http.StatusBadRequest {
		// A body that is not the gateway's JSON just adds nothing.
		_ = json.NewDecoder(io.LimitReader(resp.Body, maxResponseBody)).Decode(&a)
	}
	// Reading to the end lets the connection be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseBody))
	_ = resp.Body.Close()
	p.logger.Debug("post", "request", n, "events", bt.events, "corrupted", bt.corrupted,
		"duplicates", bt.duplicates, "bytes", len(bt.body), "status", resp.StatusCode,
		"accepted", a.Accepted, "rejected", a.Rejected, "elapsed", time.Since(start),
		"inFlight", p.inFlight.Load())
	p.record(resp.StatusCode, a, nil)
}

func (p *publisher) record(status int, a answer, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		p.sum.NetworkErrors++
		return
	}
	p.sum.StatusCodes[status]++
	p.sum.Accepted += a.Accepted
	p.sum.Rejected += a.Rejected
}

// summary returns a copy of the counts that is safe to use while POSTs are
// still recording.
func (p *publisher) summary() Summary {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.sum
	s.StatusCodes = make(map[int]int64, len(p.sum.StatusCodes))
	for k, v := range p.sum.StatusCodes {
		s.StatusCodes[k] = v
	}
	return s
}

// requestBody tells when the transport is done with a request body: it
// closes it.
type requestBody struct {
	*bytes.Reader
	once    sync.Once
	onClose func()
}

func (b *requestBody) Close() error {
	b.once.Do(b.onClose)
	return nil
}

// batch is one POST body and what went into it.
type batch struct {
	body       []byte
	events     int // array elements, the corrupted one included
	duplicates int
	corrupted  bool
}

// builder draws batch sizes and assembles bodies. It is owned by the firing
// loop.
type builder struct {
	opts Options
	gen  *eventgen.Generator
	rng  *rand.Rand

	// recent is a ring of encoded events already put in a body, the
	// candidates for duplicates; slots are reused so that remembering an
	// event does not allocate.
	recent     [][]byte
	recentNext int

	scratch []byte
}

func newBuilder(opts Options) *builder {
	b := &builder{
		opts: opts,
		gen:  eventgen.New(opts.Seed),
		// A stream distinct from the generator's, so that batch sizes and
		// duplicate picks do not shift the events themselves.
		rng: rand.New(rand.NewPCG(uint64(opts.Seed), 0x2545f4914f6cdd1d)),
	}
	if opts.DuplicateRatio > 0 {
		b.recent = make([][]byte, 0, recentEvents)
	}
	return b
}

// plan draws the size of the next batch and whether it ends with a
// corrupted event, keeping within remaining when a total is set.
func (b *builder) plan(remaining int64) (size int, corrupt bool) {
	size = b.opts.MinBatch + b.rng.IntN(b.opts.MaxBatch-b.opts.MinBatch+1)
	corrupt = b.opts.CorruptEvery > 0 && b.rng.IntN(b.opts.CorruptEvery) == 0
	if b.opts.Total == 0 {
		return size, corrupt
	}
	// A lone corrupted event would not be a batch with one appended.
	if corrupt && remaining < 2 {
		corrupt = false
	}
	extra := 0
	if corrupt {
		extra = 1
	}
	if int64(size+extra) > remaining {
		size = int(remaining) - extra
	}
	return size, corrupt
}

// build appends to dst a JSON array of size events, plus a corrupted one
// when corrupt, stamped around now.
func (b *builder) build(dst []byte, size int, corrupt bool, now time.Time) batch {
	bt := batch{events: size, corrupted: corrupt}
	dst = append(dst, '[')
	for i := range size {
		if i > 0 {
			dst = append(dst, ',')
		}
		if len(b.recent) > 0 && b.rng.Float64() < b.opts.DuplicateRatio {
			dst = append(dst, b.recent[b.rng.IntN(len(b.recent))]...)
			bt.duplicates++
			continue
		}
		e := b.gen.Next(b.timestamp(now))
		start := len(dst)
		dst = e.AppendJSON(dst)
		b.remember(dst[start:])
	}
	if corrupt {
		if size > 0 {
			dst = append(dst, ',')
		}
		e := b.gen.Next(b.timestamp(now))
		b.scratch = e.AppendJSON(b.scratch[:0])
		dst = append(dst, b.gen.Corrupt(b.scratch)...)
		bt.events++
	}
	bt.body = append(dst, ']')
	return bt
}

func (b *builder) timestamp(now time.Time) time.Time {
	if b.opts.OutOfOrder <= 0 {
		return now
	}
	return now.Add(-time.Duration(b.rng.Int64N(int64(b.opts.OutOfOrder))))
}

func (b *builder) remember(encoded []byte) {
	if b.opts.DuplicateRatio <= 0 {
		return
	}
	if len(b.recent) < cap(b.recent) {
		b.recent = append(b.recent, append([]byte(nil), encoded...))
		return
	}
	b.recent[b.recentNext] = append(b.recent[b.recentNext][:0], encoded...)
	b.recentNext = (b.recentNext + 1) % len(b.recent)
}
