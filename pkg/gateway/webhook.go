package gateway

import (
	"bytes"
	"cmp"
	"errors"
	"io"
	"math"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fastjson"

	"github.com/eventpipe/eventpipe/pkg/event"
	"github.com/eventpipe/eventpipe/pkg/httpserver"
	"github.com/eventpipe/eventpipe/pkg/stream"
)

// origin names the gateway on what it dead-letters.
const origin = "gateway"

const (
	// maxDeadLetterData is how much of a rejected event is kept: enough to
	// inspect it, small enough to fit a NATS message.
	maxDeadLetterData = 1 << 20
	// headerRoom is what a message's headers may take of the server's max
	// payload: the eventId (at most event.MaxEventIDLen), the correlation
	// id (at most 128) or a rejection reason (at most maxReasonLen).
	headerRoom = 2 << 10
	// maxReasonLen caps an error text in responses and headers: a path
	// through deeply nested unknown fields can be long.
	maxReasonLen = 512
	// slabSize is the block that events are copied into for publishing.
	slabSize = 256 << 10
	// pooledMaxEvent keeps the request state of a request that carried an
	// outsized event out of the pool, so its grown buffers (the parser's,
	// the body reader's) are released.
	pooledMaxEvent = 64 << 10
	// sampleEvery is how often the publish-to-ack latency is sampled.
	sampleEvery = 64
	// maxQueue caps the acks one request awaits at once; the global cap is
	// PublishMaxPending.
	maxQueue = 8192
)

// The webhook's error codes (the common error body of httpserver).
const (
	codeUnsupportedMediaType = "unsupported_media_type"
	codeTooLarge             = "body_too_large"
	codeInvalidBody          = "invalid_body"
	codeNoEvents             = "no_events"
	codeInvalidEvents        = "invalid_events"
	codeUnavailable          = "unavailable"
)

// Why a publish did not make it.
var (
	errAckTimeout = errors.New("publish not acknowledged in time")
	errAbandoned  = errors.New("not published: an earlier publish of the request failed")
)

// publisher is what the webhook needs of JetStream; jetstream.JetStream
// has it, and tests wrap one to inject failures.
type publisher interface {
	PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error)
	PublishAsyncPending() int
}

// backend is the JetStream side of the webhook, set once the streams are
// ensured; until then every request gets 503.
type backend struct {
	pub       publisher
	connected func() bool
	// maxEvent is the largest event that fits a NATS message with its
	// headers; a larger one is rejected like an invalid event rather than
	// failing the whole request on every retry.
	maxEvent int
}

func newBackend(js jetstream.JetStream, nc *nats.Conn) *backend {
	maxEvent := int(nc.MaxPayload()) - headerRoom
	if maxEvent <= 0 {
		maxEvent = maxDeadLetterData
	}
	return &backend{
		pub:       js,
		connected: func() bool { return nc.Status() == nats.CONNECTED },
		maxEvent:  maxEvent,
	}
}

// webhook serves POST /webhook.
type webhook struct {
	opts    Options
	m       *metrics
	backend atomic.Pointer[backend]
	// pubOpts lets a publish wait for a free slot under PublishMaxPending
	// as long as for an ack, instead of the client's default 200ms.
	pubOpts []jetstream.PublishOpt
	// subjects[source index][event type] avoids building a subject string
	// per event.
	subjects   [numSources]map[string]string
	deadLetter string
	states     sync.Pool
}

func newWebhook(opts Options, reg prometheus.Registerer) (*webhook, error) {
	h := &webhook{
		opts:       opts,
		pubOpts:    []jetstream.PublishOpt{jetstream.WithStallWait(opts.PublishTimeout)},
		deadLetter: stream.DeadLetterSubject(origin),
	}
	for _, src := range event.Sources {
		m := make(map[string]string)
		for _, st := range event.Stages {
			for _, t := range event.Types(src, st) {
				m[t] = event.Subject(src, t)
			}
		}
		h.subjects[sourceIndex(src)] = m
	}
	queue := min(max(opts.PublishMaxPending, 1), maxQueue)
	h.states.New = func() any {
		return &requestState{
			body:  splitter{buf: make([]byte, 0, 64<<10)},
			queue: make(chan pending, queue),
			done:  make(chan struct{}, 1),
		}
	}
	var err error
	if h.m, err = newMetrics(reg, h.inFlight); err != nil {
		return nil, err
	}
	return h, nil
}

func (h *webhook) inFlight() float64 {
	if b := h.backend.Load(); b != nil {
		return float64(b.pub.PublishAsyncPending())
	}
	return 0
}

func (h *webhook) register(e *gin.Engine) {
	e.POST("/webhook", h.serve)
}

// requestState is what a request reuses from an earlier one.
type requestState struct {
	parser event.Parser
	// peek reads eventId and source out of rejected events.
	peek fastjson.Parser
	body splitter
	// queue carries the request's publishes, in order, to its ack waiter;
	// a zero pending ends it, and the waiter answers on done.
	queue chan pending
	done  chan struct{}
	// failed is set once a publish of an event failed: the rest of the
	// body is not worth reading, the answer is 503.
	failed atomic.Bool
	tally  tally
}

// pending is one publish awaiting its ack.
type pending struct {
	fut jetstream.PubAckFuture
	// src is the event's source index, or deadLetterSrc.
	src int
	// sent is when a sampled publish was sent, since the request started;
	// zero when not sampled.
	sent time.Duration
}

const deadLetterSrc = -1

// tally is what the ack waiter found, read by the handler once the waiter
// has answered on done.
type tally struct {
	acked      [numSources]int
	duplicates [numSources]int
	// err is the first publish of an event that failed; the request then
	// stops and answers 503.
	err            error
	deadLetterLost int
	deadLetterErr  error
}

// eventError reports one rejected event.
type eventError struct {
	Index   int    `json:"index"`
	EventID string `json:"eventId,omitempty"`
	Error   string `json:"error"`
}

// result is the answer to a request that got as far as its events: 202,
// or 400 when every event was invalid. When the body turned out malformed
// (or too large) part way, Error says where, and the counts still say
// exactly what happened to the events before that point.
type result struct {
	Accepted   int                     `json:"accepted"`
	Rejected   int                     `json:"rejected"`
	Duplicates int                     `json:"duplicates"`
	Errors     []eventError            `json:"errors"`
	Error      *httpserver.ErrorDetail `json:"error,omitempty"`
}

func (h *webhook) serve(c *gin.Context) {
	start := time.Now()
	h.handle(c, start)
	h.m.requests.WithLabelValues(strconv.Itoa(c.Writer.Status())).Inc()
	h.m.duration.Observe(time.Since(start).Seconds())
}

func (h *webhook) handle(c *gin.Context, start time.Time) {
	if !h.checkToken(c) {
		return
	}
	if !jsonContentType(c.GetHeader("Content-Type")) {
		httpserver.Error(c, http.StatusUnsupportedMediaType, codeUnsupportedMediaType,
			"Content-Type must be application/json")
		return
	}
	if c.Request.ContentLength > h.opts.MaxBodyBytes {
		httpserver.Error(c, http.StatusRequestEntityTooLarge, codeTooLarge, h.tooLarge())
		return
	}
	if !h.checkSignature(c) {
		return
	}
	b := h.backend.Load()
	if b == nil || !b.connected() {
		unavailable(c, "the event stream is unavailable")
		return
	}

	st := h.states.Get().(*requestState)
	r := batch{
		h:     h,
		b:     b,
		st:    st,
		start: start,
		corr:  []string{httpserver.CorrelationID(c.Request.Context())},
	}
	st.body.reset(http.MaxBytesReader(c.Writer, c.Request.Body, h.opts.MaxBodyBytes))
	defer func() {
		st.body.reset(nil)
		if r.largest <= pooledMaxEvent && cap(st.body.buf) <= 4*pooledMaxEvent {
			h.states.Put(st)
		}
	}()

	first, err := st.body.peek()
	switch {
	case err != nil && !errors.Is(err, io.EOF):
		status, code, msg := h.bodyError(err, "")
		httpserver.Error(c, status, code, msg)
		return
	case err != nil || first != '[' && first != '{':
		httpserver.Error(c, http.StatusBadRequest, codeInvalidBody, "body must be a JSON array of events or one event object")
		return
	}

	st.failed.Store(false)
	go st.wait(h.opts.PublishTimeout, h.m, start)
	failure := r.run(first)
	r.finish(c, failure)
}

// run decodes and publishes the body, and returns once the ack waiter has
// seen every publish through, even if decoding panics.
func (r *batch) run(first byte) *bodyFailure {
	defer func() {
		r.st.queue <- pending{}
		<-r.st.done
	}()
	return r.decode(first)
}

// batch is one request's events on their way to JetStream.
type batch struct {
	h     *webhook
	b     *backend
	st    *requestState
	start time.Time
	corr  []string // the X-Correlation-ID header value, shared by every message
	slab  []byte

	events   int // decoded so far
	valid    [numSources]int
	rejected int
	errors   []eventError
	largest  int   // the largest event's size
	sendErr  error // a publish that failed before reaching the server
	sent     int   // publishes, for sampling

	deadLetterLost int
	deadLetterErr  error
	// deadLettered and deadLetterSkipped count the rejected events sent
	// to the dead-letter stream and those past the per-request cap.
	deadLettered      int
	deadLetterSkipped int
}

// bodyFailure says why the body could not be read to its end.
type bodyFailure struct {
	status  int
	code    string
	message string
}

// decode reads the body and publishes each event as it is read, so
// publishing overlaps reading and only the events in flight are in memory.
//
// A body that turns out malformed after some events is refused with 400,
// but those events may already be published (and stored): they cannot be
// taken back. The answer says where reading stopped and counts them, and a
// client that fixes and resends the body has them deduplicated by their
// eventId.
func (r *batch) decode(first byte) *bodyFailure {
	body := &r.st.body
	if first == '{' {
		raw, err := body.value(0)
		if err != nil {
			return r.fail(err, "")
		}
		// The value is copied before the end is checked: checking reads on.
		raw = r.keep(raw)
		if err := body.end(); err != nil {
			return r.fail(err, " after the event")
		}
		r.event(0, raw)
		return nil
	}

	body.skip() // the '[' peeked by the caller
	for i := 0; !r.st.failed.Load(); i++ {
		raw, done, err := body.element(i)
		if err != nil {
			return r.fail(err, " at event index "+strconv.Itoa(i))
		}
		if done {
			if err := body.end(); err != nil {
				return r.fail(err, " after the array")
			}
			return nil
		}
		r.event(i, r.keep(raw))
	}
	return nil
}

func (r *batch) fail(err error, where string) *bodyFailure {
	status, code, msg := r.h.bodyError(err, where)
	return &bodyFailure{status: status, code: code, message: msg}
}

// bodyError maps a failure to read or decode the body to its answer.
func (h *webhook) bodyError(err error, where string) (int, string, string) {
	var tooBig *http.MaxBytesError
	var syntax *syntaxError
	switch {
	case errors.As(err, &tooBig):
		return http.StatusRequestEntityTooLarge, codeTooLarge, h.tooLarge()
	case errors.As(err, &syntax):
		return http.StatusBadRequest, codeInvalidBody, "body is not valid JSON" + where + ": " + err.Error()
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return http.StatusBadRequest, codeInvalidBody, "body is truncated" + where
	default:
		return http.StatusBadRequest, codeInvalidBody, "reading body" + where + ": " + err.Error()
	}
}

func (h *webhook) tooLarge() string {
	return "body is larger than " + strconv.FormatInt(h.opts.MaxBodyBytes, 10) + " bytes"
}

// keep copies an event's bytes out of the read buffer into a slab, so
// 50,000 events cost a hundred allocations instead of 50,000. Slabs are
// never reused: a message keeps its bytes until its ack (the client resends
// them on a no-responders retry), which may come after the request ends.
func (r *batch) keep(raw []byte) []byte {
	if len(raw) > cap(r.slab)-len(r.slab) {
		if len(raw) > slabSize/4 {
			return bytes.Clone(raw)
		}
		r.slab = make([]byte, 0, slabSize)
	}
	l := len(r.slab)
	r.slab = append(r.slab, raw...)
	return r.slab[l:len(r.slab):len(r.slab)]
}

// event validates one event and publishes it, or rejects it.
func (r *batch) event(i int, raw []byte) {
	r.events++
	r.largest = max(r.largest, len(raw))
	if len(raw) > r.b.maxEvent {
		r.reject(i, raw, &event.ValidationError{Reason: "must be at most " + strconv.Itoa(r.b.maxEvent) + " bytes"})
		return
	}
	e, err := r.st.parser.Parse(raw)
	if err != nil {
		r.reject(i, raw, err)
		return
	}
	src := sourceIndex(e.Source)
	r.valid[src]++
	subject, ok := r.h.subjects[src][e.Type]
	if !ok {
		subject = event.Subject(e.Source, e.Type)
	}
	msg := &nats.Msg{
		Subject: subject,
		Data:    raw,
		Header: nats.Header{
			jetstream.MsgIDHeader:      []string{e.ID},
			stream.HeaderCorrelationID: r.corr,
		},
	}
	r.publish(msg, src)
}

func (r *batch) publish(msg *nats.Msg, src int) {
	if r.st.failed.Load() {
		if src == deadLetterSrc {
			r.deadLetterLost++
			r.deadLetterErr = errAbandoned
		}
		return
	}
	r.sent++
	var sent time.Duration
	if r.sent%sampleEvery == 1 {
		sent = max(time.Since(r.start), 1)
	}
	fut, err := r.b.pub.PublishMsgAsync(msg, r.h.pubOpts...)
	if err != nil {
		if src == deadLetterSrc {
			r.deadLetterLost++
			r.deadLetterErr = err
			return
		}
		r.sendErr = err
		r.st.failed.Store(true)
		return
	}
	r.st.queue <- pending{fut: fut, src: src, sent: sent}
}

// reject records an invalid event and dead-letters it.
func (r *batch) reject(i int, raw []byte, err error) {
	r.rejected++
	reason := clip(err.Error())
	path := ""
	if ve, ok := errors.AsType[*event.ValidationError](err); ok {
		path = ve.Path
	}
	id, src := r.peek(raw)
	r.h.m.failed[src][failValidation].Inc()
	if len(r.errors) < r.h.opts.MaxErrorsReported {
		r.errors = append(r.errors, eventError{Index: i, EventID: id, Error: reason})
	}
	if r.deadLettered >= r.h.opts.MaxDeadLettersPerRequest {
		r.deadLetterSkipped++
		return
	}
	r.deadLettered++
	r.h.m.deadLetter.WithLabelValues(reasonLabel(path)).Inc()
	data := raw
	if limit := min(maxDeadLetterData, r.b.maxEvent); len(data) > limit {
		data = data[:limit]
	}
	r.publish(&nats.Msg{
		Subject: r.h.deadLetter,
		Data:    data,
		Header: nats.Header{
			stream.HeaderReason:        []string{reason},
			stream.HeaderOrigin:        []string{origin},
			stream.HeaderCorrelationID: r.corr,
		},
	}, deadLetterSrc)
}

// peek returns a rejected event's eventId, when it has a usable string one,
// and its source index, srcUnknown unless it names a known source.
func (r *batch) peek(raw []byte) (string, int) {
	v, err := r.st.peek.ParseBytes(raw)
	if err != nil || v.Type() != fastjson.TypeObject {
		return "", srcUnknown
	}
	src := srcUnknown
	switch string(v.GetStringBytes("source")) {
	case string(event.Facebook):
		src = srcFacebook
	case string(event.TikTok):
		src = srcTikTok
	}
	id := v.GetStringBytes("eventId")
	if len(id) > event.MaxEventIDLen || !utf8.Valid(id) {
		return "", src
	}
	return string(id), src
}

// finish answers the request once every publish has been acknowledged, or
// has failed, and accounts for it.
func (r *batch) finish(c *gin.Context, failure *bodyFailure) {
	t := &r.st.tally
	m := r.h.m
	var valid, acked, duplicates int
	for s := range numSources {
		valid += r.valid[s]
		acked += t.acked[s]
		duplicates += t.duplicates[s]
		m.accepted[s].Add(float64(r.valid[s]))
		m.processed[s].Add(float64(t.acked[s]))
		m.duplicates[s].Add(float64(t.duplicates[s]))
		m.failed[s][failPublish].Add(float64(r.valid[s] - t.acked[s]))
	}
	deadLetterLost := r.deadLetterLost + t.deadLetterLost
	m.deadLetterLost.Add(float64(deadLetterLost))
	m.deadLetterSkip.Add(float64(r.deadLetterSkipped))

	elapsed := time.Since(r.start).Seconds()
	attrs := []any{
		"events", r.events,
		"accepted", valid,
		"rejected", r.rejected,
		"duplicates", duplicates,
		"events_per_second", math.Round(float64(r.events)/max(elapsed, 1e-6)*10) / 10,
	}
	if r.deadLetterSkipped > 0 {
		attrs = append(attrs, "deadletter_skipped", r.deadLetterSkipped)
	}
	if deadLetterLost > 0 {
		dlErr := cmp.Or(t.deadLetterErr, r.deadLetterErr, errAbandoned)
		attrs = append(attrs, "deadletter_lost", deadLetterLost, "deadletter_error", dlErr.Error())
	}

	if pubErr := cmp.Or(r.sendErr, t.err); pubErr != nil {
		httpserver.AddLogAttrs(c, append(attrs, "acked", acked, "error", pubErr.Error())...)
		unavailable(c, "the event stream did not acknowledge every event; retry the request")
		return
	}
	if failure != nil {
		attrs = append(attrs, "error", failure.message)
	}
	httpserver.AddLogAttrs(c, attrs...)

	res := result{Accepted: valid, Rejected: r.rejected, Duplicates: duplicates, Errors: r.errors}
	if res.Errors == nil {
		res.Errors = []eventError{}
	}
	status := http.StatusAccepted
	switch {
	case failure != nil:
		status = failure.status
		res.Error = &httpserver.ErrorDetail{Code: failure.code, Message: failure.message}
	case r.events == 0:
		httpserver.Error(c, http.StatusBadRequest, codeNoEvents, "no events")
		return
	case valid == 0:
		status = http.StatusBadRequest
		res.Error = &httpserver.ErrorDetail{Code: codeInvalidEvents, Message: "every event is invalid"}
	}
	c.JSON(status, res)
}

// wait collects the acks of the request's publishes in order, each within
// timeout, until the zero pending; then it answers on done. Once an event's
// publish has failed the request is lost anyway, so the rest are only
// checked, not waited for.
func (st *requestState) wait(timeout time.Duration, m *metrics, start time.Time) {
	t := &st.tally
	*t = tally{}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for p := range st.queue {
		if p.fut == nil {
			break
		}
		ack, err := await(p.fut, timer, timeout, t.err != nil)
		switch {
		case p.src == deadLetterSrc:
			if err != nil {
				t.deadLetterLost++
				t.deadLetterErr = err
			}
		case err != nil:
			if t.err == nil {
				t.err = err
				st.failed.Store(true)
			}
		default:
			t.acked[p.src]++
			if ack.Duplicate {
				t.duplicates[p.src]++
			}
			if p.sent > 0 {
				m.publishDuration.Observe((time.Since(start) - p.sent).Seconds())
			}
		}
	}
	st.done <- struct{}{}
}

// await returns the future's ack or error; unless noWait, it waits at most
// timeout. The client's own ack timeout fires first in practice: this
// bound only guards against a future that never resolves.
func await(f jetstream.PubAckFuture, timer *time.Timer, timeout time.Duration, noWait bool) (*jetstream.PubAck, error) {
	ok, failed := f.Ok(), f.Err()
	select {
	case ack := <-ok:
		return ack, nil
	case err := <-failed:
		return nil, err
	default:
	}
	if noWait {
		return nil, errAbandoned
	}
	timer.Reset(timeout)
	select {
	case ack := <-ok:
		return ack, nil
	case err := <-failed:
		return nil, err
	case <-timer.C:
		return nil, errAckTimeout
	}
}

func unavailable(c *gin.Context, msg string) {
	c.Header("Retry-After", "1")
	httpserver.Error(c, http.StatusServiceUnavailable, codeUnavailable, msg)
}

// jsonContentType accepts application/json and application/*+json, with any
// parameters.
func jsonContentType(ct string) bool {
	if ct == "" {
		return false
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil && !errors.Is(err, mime.ErrInvalidMediaParameter) {
		return false
	}
	if mt == "application/json" {
		return true
	}
	sub, ok := strings.CutPrefix(mt, "application/")
	return ok && len(sub) > len("+json") && strings.HasSuffix(sub, "+json")
}

// clip bounds an error text and keeps it a valid one-line header value.
func clip(s string) string {
	if len(s) > maxReasonLen {
		cut := maxReasonLen
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "..."
	}
	if strings.ContainsAny(s, "\r\n") {
		s = strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
	}
	return s
}

// eventFields are the paths of events.md's fields: the one list of the
// gateway_deadletter_total labels that are kept as they are.
var eventFields = map[string]bool{
	"eventId": true, "timestamp": true, "source": true, "funnelStage": true, "eventType": true, "data": true,
	"data.user": true, "data.user.userId": true, "data.user.name": true, "data.user.age": true, "data.user.gender": true,
	"data.user.location": true, "data.user.location.country": true, "data.user.location.city": true,
	"data.user.username": true, "data.user.followers": true,
	"data.engagement": true, "data.engagement.actionTime": true, "data.engagement.referrer": true,
	"data.engagement.videoId": true, "data.engagement.adId": true, "data.engagement.campaignId": true,
	"data.engagement.clickPosition": true, "data.engagement.device": true, "data.engagement.browser": true,
	"data.engagement.purchaseAmount": true, "data.engagement.watchTime": true,
	"data.engagement.percentageWatched": true, "data.engagement.country": true,
	"data.engagement.profileId": true, "data.engagement.purchasedItem": true,
}

// reasonLabel turns a validation error's path into a bounded metric label:
// a field of events.md as is, "event" for the event as a whole, "other"
// for anything else (paths into unknown fields are chosen by the sender).
func reasonLabel(path string) string {
	switch {
	case path == "":
		return "event"
	case eventFields[path]:
		return path
	}
	return "other"
}

// The real client is what the webhook is written against.
var _ publisher = jetstream.JetStream(nil)
