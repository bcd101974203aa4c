package collector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/eventpipe/eventpipe/pkg/event"
	"github.com/eventpipe/eventpipe/pkg/httpserver"
	"github.com/eventpipe/eventpipe/pkg/store"
	"github.com/eventpipe/eventpipe/pkg/stream"
)

const (
	// maxLoggedCorrelationIDs caps the correlation ids a batch's log line
	// lists; the line also says how many there were.
	maxLoggedCorrelationIDs = 50
	// maxLoggedPoison caps the poison reasons a batch's log line lists.
	maxLoggedPoison = 5
	// maxReasonLen caps the reason header of a dead-lettered message.
	maxReasonLen = 1024
)

// worker turns messages into stored rows, one batch at a time. It runs on
// one goroutine: its parser is not shared.
type worker struct {
	opts    Options
	logger  *slog.Logger
	m       *metrics
	js      jetstream.JetStream
	ins     Inserter
	probe   func(context.Context) error // does the database answer (the readiness check)
	parser  event.Parser
	prefix  string // "events.<source>."
	dlqSubj string

	// iter is the subscription consume reads. In a database outage its
	// prefetched messages are taken out into held, kept in progress by
	// stopHeld's goroutine, and stored before anything else; drained says
	// iter was drained for that, and must be subscribed again.
	iter     jetstream.MessagesContext
	held     []jetstream.Msg
	stopHeld func()
	drained  bool
}

func newWorker(opts Options, logger *slog.Logger, m *metrics, js jetstream.JetStream, ins Inserter, probe func(context.Context) error) *worker {
	filter := event.SourceFilter(opts.Source)
	return &worker{
		opts:    opts,
		logger:  logger,
		m:       m,
		js:      js,
		ins:     ins,
		probe:   probe,
		prefix:  strings.TrimSuffix(filter, ">"),
		dlqSubj: stream.DeadLetterSubject(opts.Service),
	}
}

// consume stores batches from iter until stop ends. Then it drains iter,
// so the server sends nothing more, and stores what iter still hands out
// until work ends; whatever is left then is not acknowledged and will be
// redelivered. It returns false when iter ended while stop was alive: the
// caller subscribes again.
func (w *worker) consume(stop, work context.Context, iter jetstream.MessagesContext) bool {
	w.iter, w.drained = iter, false
	defer w.releaseHeld()
	// Fetching stops the moment the stop is asked, not after the batch in
	// flight: what the server sends meanwhile would only wait for AckWait.
	stopFetching := context.AfterFunc(stop, iter.Drain)
	defer stopFetching()
	buf := make([]jetstream.Msg, 0, w.opts.BatchSize)
	for stop.Err() == nil {
		batch, err := w.next(stop, iter, buf[:0])
		if len(batch) > 0 {
			w.process(stop, work, batch)
		}
		if err == nil || stop.Err() != nil {
			continue
		}
		if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
			return false
		}
		// The iterator closes itself after a terminal status (the consumer
		// was deleted) and then answers ErrMsgIteratorClosed; pausing keeps
		// any other repeating error from spinning.
		w.logger.Warn("fetch failed", "error", err)
		sleep(stop, w.opts.RetryMin)
	}
	iter.Drain()
	for work.Err() == nil {
		batch, err := w.next(work, iter, buf[:0])
		if len(batch) > 0 {
			w.process(stop, work, batch)
		}
		if err != nil {
			break
		}
	}
	return true
}

// next returns the next batch: the held messages first, then what
// collect gathers from iter.
func (w *worker) next(ctx context.Context, iter jetstream.MessagesContext, buf []jetstream.Msg) ([]jetstream.Msg, error) {
	if len(w.held) == 0 {
		return w.collect(ctx, iter, buf)
	}
	n := min(len(w.held), w.opts.BatchSize)
	batch := append(buf, w.held[:n]...)
	w.held = w.held[n:]
	if len(w.held) == 0 {
		// process keeps the last of them in progress from here.
		w.releaseHeld()
	}
	return batch, nil
}

// holdPrefetched runs when an insert fails in a way that may pass (the
// database is down): the messages the subscription prefetched behind the
// batch in hand would time out after AckWait meanwhile and be delivered
// again, so it stops the subscription pulling more (Drain), takes what it
// had buffered into held and keeps those in progress with the batch until
// they are stored, first thing after it. consume then subscribes again.
func (w *worker) holdPrefetched() {
	if w.iter == nil || w.drained {
		return
	}
	w.drained = true
	w.iter.Drain()
	for {
		// A drained iterator hands out its buffer, then reports itself
		// closed; the wait only bounds a connection that went away.
		msg, err := w.iter.Next(jetstream.NextMaxWait(time.Second))
		if err != nil {
			break
		}
		_ = msg.InProgress()
		w.held = append(w.held, msg)
	}
	if len(w.held) > 0 {
		w.stopHeld = w.keepAlive(slices.Clone(w.held))
	}
	w.logger.Info("database failing: holding the prefetched messages until it is back", "held", len(w.held))
}

// releaseHeld stops keeping the held messages in progress.
func (w *worker) releaseHeld() {
	if w.stopHeld != nil {
		w.stopHeld()
		w.stopHeld = nil
	}
}

// collect waits until ctx ends for a first message, then adds to it what
// arrives within BatchWait, up to BatchSize messages. It returns the batch
// with the error that ended the wait for the first message, or with nil.
func (w *worker) collect(ctx context.Context, iter jetstream.MessagesContext, batch []jetstream.Msg) ([]jetstream.Msg, error) {
	msg, err := iter.Next(jetstream.NextContext(ctx))
	if err != nil {
		return batch, err
	}
	batch = append(batch, msg)
	linger, cancel := context.WithTimeout(ctx, w.opts.BatchWait)
	defer cancel()
	for len(batch) < w.opts.BatchSize {
		msg, err := iter.Next(jetstream.NextContext(linger))
		if err != nil {
			if linger.Err() != nil {
				return batch, nil
			}
			return batch, err
		}
		batch = append(batch, msg)
	}
	return batch, nil
}

// item is a decoded message on its way to the database.
type item struct {
	msg       jetstream.Msg
	rec       store.Record
	delivered uint64
}

// outcome is what became of a batch's messages.
type outcome struct {
	inserted  int64 // new rows
	stored    int   // committed (new or duplicate)
	poison    int   // dead-lettered, or refused by PostgreSQL and nak'd
	abandoned int   // left unacknowledged: stopped while the database failed
	ackErrors int
	// deadLetterFailures counts poison messages nak'd because the
	// dead-letter publish failed; deadLetterErr is the first error.
	deadLetterFailures int
	deadLetterErr      error
	reasons            []string // the first poison reasons, for the log line
	processed          map[string]int
}

// process stores one batch: decode, dead-letter what is not an event of
// this source, insert the rest in one call (retrying failures that may
// pass), acknowledge after the commit, and isolate what PostgreSQL refuses.
// work bounds every call; stop ends the waits between retries.
func (w *worker) process(stop, work context.Context, msgs []jetstream.Msg) {
	start := time.Now()
	w.m.batchSize.Observe(float64(len(msgs)))
	// JetStream must not hand these messages to another replica while the
	// database is slow or down, so they are kept in progress until done.
	defer w.keepAlive(msgs)()

	out := outcome{processed: make(map[string]int)}
	corr := correlations{seen: make(map[string]struct{})}
	items := make([]item, 0, len(msgs))
	for _, msg := range msgs {
		w.m.accepted.WithLabelValues(typeLabel(w.opts.Source, w.prefix, msg.Subject())).Inc()
		var delivered uint64 = 1
		if md, err := msg.Metadata(); err == nil {
			delivered = md.NumDelivered
		}
		if delivered > 1 {
			w.m.redeliveries.Inc()
		}
		cid := httpserver.SanitizeCorrelationID(msg.Headers().Get(stream.HeaderCorrelationID))
		corr.add(cid)
		e, err := w.decode(msg)
		if err != nil {
			w.poison(work, msg, delivered, reasonDecode, err, &out)
			continue
		}
		items = append(items, item{
			msg:       msg,
			rec:       store.Record{Event: e, Raw: msg.Data(), CorrelationID: cid},
			delivered: delivered,
		})
	}

	if len(items) > 0 {
		recs := make([]store.Record, len(items))
		for i := range items {
			recs[i] = items[i].rec
		}
		n, err := w.insert(stop, work, recs)
		switch {
		case err == nil:
			out.inserted, out.stored = n, len(items)
			for i := range items {
				w.ack(&items[i], &out)
			}
		case store.IsPermanent(err):
			if len(items) > 1 {
				w.logger.Warn("batch refused by the database; storing its events one by one",
					"size", len(items), "error", err)
			}
			w.isolate(stop, work, items, err, &out)
		default:
			out.abandoned = len(items)
		}
	}
	w.finish(start, len(msgs), &out, &corr)
}

// finish records a batch's outcome in the metrics and its one log line.
func (w *worker) finish(start time.Time, size int, out *outcome, corr *correlations) {
	elapsed := time.Since(start)
	duplicates := int64(out.stored) - out.inserted
	w.m.duration.Observe(elapsed.Seconds())
	w.m.duplicates.Add(float64(duplicates))
	for t, n := range out.processed {
		w.m.processed.WithLabelValues(t).Add(float64(n))
	}
	attrs := []any{
		"size", size,
		"inserted", out.inserted,
		"duplicates", duplicates,
		"poison", out.poison,
		"duration_ms", float64(elapsed.Microseconds()) / 1000,
		"correlation_ids", corr.ids,
		"correlation_id_count", len(corr.seen),
	}
	if len(out.reasons) > 0 {
		attrs = append(attrs, "poison_reasons", out.reasons)
	}
	if out.ackErrors > 0 {
		attrs = append(attrs, "ack_errors", out.ackErrors)
	}
	if out.deadLetterFailures > 0 {
		attrs = append(attrs, "deadletter_failures", out.deadLetterFailures, "deadletter_error", out.deadLetterErr.Error())
	}
	switch {
	case out.abandoned > 0:
		// Stopped while the database failed: the rest is redelivered,
		// and the insert being idempotent makes that safe.
		w.logger.Warn("batch not stored; left for redelivery", append(attrs, "abandoned", out.abandoned)...)
	case out.deadLetterFailures > 0:
		w.logger.Warn("batch stored; dead-lettering failed, poison left for redelivery", attrs...)
	default:
		w.logger.Info("batch stored", attrs...)
	}
}

// decode parses a message into an event of this collector's source,
// published on the subject the gateway would have used for it.
func (w *worker) decode(msg jetstream.Msg) (event.Event, error) {
	e, err := w.parser.Parse(msg.Data())
	if err != nil {
		return e, err
	}
	if t, ok := strings.CutPrefix(msg.Subject(), w.prefix); !ok || e.Source != w.opts.Source || t != e.Type {
		return e, fmt.Errorf("a %s %s event does not belong on subject %s", e.Source, e.Type, msg.Subject())
	}
	return e, nil
}

// insert stores recs, trying again with exponential backoff while the
// failure is one that may pass. It gives up, returning the last error,
// when the failure is permanent, when work ends, or when stop ends (the
// messages are then left for redelivery).
func (w *worker) insert(stop, work context.Context, recs []store.Record) (int64, error) {
	wait := w.opts.RetryMin
	for {
		n, err := w.ins.InsertEvents(work, recs)
		if err == nil || store.IsPermanent(err) || stop.Err() != nil || work.Err() != nil {
			return n, err
		}
		w.m.dbRetries.Inc()
		w.logger.Warn("insert failed; retrying", "error", err, "events", len(recs), "retry_in", wait.String())
		w.holdPrefetched()
		if !w.waitRetry(stop, wait) {
			return 0, err
		}
		wait = min(2*wait, w.opts.RetryMax)
	}
}

// probeEvery is how often a backoff asks whether the database answers.
const probeEvery = 250 * time.Millisecond

// waitRetry waits d before the next try of an insert, or less: when the
// database fails the readiness check during the wait and then passes it,
// the outage is over and the wait ends there, so recovery does not wait
// out a backoff grown to RetryMax. A database that answers throughout (the
// failure was not an outage) gets the whole backoff. It returns false when
// stop ends first.
func (w *worker) waitRetry(stop context.Context, d time.Duration) bool {
	end := time.Now().Add(d)
	down := false
	for {
		left := time.Until(end)
		if left <= 0 {
			return true
		}
		if w.probe == nil || left <= probeEvery {
			return sleep(stop, left)
		}
		if !sleep(stop, probeEvery) {
			return false
		}
		ctx, cancel := context.WithTimeout(stop, probeEvery)
		err := w.probe(ctx)
		cancel()
		if err != nil {
			down = true
		} else if down {
			w.logger.Info("database answers again; retrying now")
			return true
		}
	}
}

// isolate stores a batch's items one by one after PostgreSQL refused the
// whole batch with err, so the rows it accepts are stored and only the
// culprits stay behind: each of those is nak'd to be tried again later,
// and dead-lettered with the database's reason once it has been delivered
// MaxDeliver times.
func (w *worker) isolate(stop, work context.Context, items []item, err error, out *outcome) {
	if len(items) == 1 {
		// The batch was this one record: the refusal is its own.
		w.poison(work, items[0].msg, items[0].delivered, reasonDBPermanent, err, out)
		return
	}
	for i := range items {
		it := &items[i]
		n, err := w.insert(stop, work, []store.Record{it.rec})
		if err == nil {
			out.inserted += n
			out.stored++
			w.ack(it, out)
			continue
		}
		if !store.IsPermanent(err) {
			out.abandoned = len(items) - i
			return
		}
		w.poison(work, it.msg, it.delivered, reasonDBPermanent, err, out)
	}
}

// poison handles a message that cannot be stored. A decode failure cannot
// change, so it is dead-lettered at once; a database refusal is retried
// with a delay until the message's MaxDeliver-th delivery. Dead-lettering
// waits for the DEADLETTER stream's acknowledgement before the message is
// terminated; if that fails, the message is nak'd and comes back.
func (w *worker) poison(ctx context.Context, msg jetstream.Msg, delivered uint64, reason string, cause error, out *outcome) {
	out.poison++
	detail := cause.Error()
	if len(out.reasons) < maxLoggedPoison {
		out.reasons = append(out.reasons, msg.Subject()+": "+detail)
	}
	if reason == reasonDBPermanent && delivered < uint64(w.opts.MaxDeliver) {
		w.m.failed.WithLabelValues(reasonDBRejected).Inc()
		_ = msg.NakWithDelay(w.backoff(delivered))
		return
	}
	if err := w.deadLetter(ctx, msg, detail); err != nil {
		w.m.failed.WithLabelValues(reasonDeadLetter).Inc()
		if out.deadLetterErr == nil {
			out.deadLetterErr = err
		}
		out.deadLetterFailures++
		_ = msg.NakWithDelay(w.backoff(delivered))
		return
	}
	w.m.failed.WithLabelValues(reason).Inc()
	_ = msg.TermWithReason(reason)
}

// deadLetter publishes msg to the collector's dead-letter subject with
// why and where from, and waits for the stream to store it. The message id
// makes a repeat (the terminate was lost and the message came back) a
// no-op within the stream's duplicate window.
func (w *worker) deadLetter(ctx context.Context, msg jetstream.Msg, reason string) error {
	dl := nats.NewMsg(w.dlqSubj)
	dl.Data = msg.Data()
	dl.Header.Set(stream.HeaderReason, headerValue(reason))
	dl.Header.Set(stream.HeaderOrigin, w.opts.Service)
	dl.Header.Set(stream.HeaderSubject, msg.Subject())
	if cid := msg.Headers().Get(stream.HeaderCorrelationID); cid != "" {
		dl.Header.Set(stream.HeaderCorrelationID, cid)
	}
	var opts []jetstream.PublishOpt
	if md, err := msg.Metadata(); err == nil {
		opts = append(opts, jetstream.WithMsgID(w.opts.Service+":"+strconv.FormatUint(md.Sequence.Stream, 10)))
	}
	if _, err := w.js.PublishMsg(ctx, dl, opts...); err != nil {
		return fmt.Errorf("publish to %s: %w", w.dlqSubj, err)
	}
	return nil
}

// ack acknowledges a stored item's message.
func (w *worker) ack(it *item, out *outcome) {
	if err := it.msg.Ack(); err != nil {
		// Stored but not acknowledged: it comes back and counts as a
		// duplicate then.
		out.ackErrors++
		return
	}
	out.processed[it.rec.Event.Type]++
}

// backoff returns the delay before a message delivered n times is tried
// again: RetryMin doubled per delivery, capped at RetryMax.
func (w *worker) backoff(n uint64) time.Duration {
	d := w.opts.RetryMin
	for i := uint64(1); i < n && d < w.opts.RetryMax; i++ {
		d *= 2
	}
	return min(d, w.opts.RetryMax)
}

// keepAlive tells JetStream every quarter of AckWait that msgs are still
// being worked on, until the returned function is called.
func (w *worker) keepAlive(msgs []jetstream.Msg) func() {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(w.opts.AckWait / 4)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				for _, m := range msgs {
					// Already acknowledged ones answer ErrMsgAlreadyAckd.
					_ = m.InProgress()
				}
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
	}
}

// sleep waits for d, or less if ctx ends first; it reports whether the
// whole wait passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// headerValue makes s fit in a NATS header value: one line, bounded.
func headerValue(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
	if len(s) > maxReasonLen {
		s = strings.ToValidUTF8(s[:maxReasonLen], "")
	}
	return s
}

// correlations collects a batch's distinct correlation ids, listing the
// first few for the log line.
type correlations struct {
	ids  []string
	seen map[string]struct{}
}

func (c *correlations) add(id string) {
	if id == "" {
		return
	}
	if _, ok := c.seen[id]; ok {
		return
	}
	c.seen[id] = struct{}{}
	if len(c.ids) < maxLoggedCorrelationIDs {
		c.ids = append(c.ids, id)
	}
}
