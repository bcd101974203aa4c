package stack_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/eventpipe/eventpipe/pkg/event"
	"github.com/eventpipe/eventpipe/pkg/stream"
)

// ledger is the publisher's http.RoundTripper: it sees every request body
// and every answer on the wire, and keeps what the checks need: which
// events a 2xx acknowledged (and when), which were only in requests that
// failed, and which were invalid, so the dead-letter stream can be matched
// against them.
type ledger struct {
	next http.RoundTripper

	mu       sync.Mutex
	requests int
	failed   int // no 2xx: an error status or no answer at all
	netErrs  int
	statuses map[int]int
	elements int // array elements sent: repeats and corrupted ones included
	// acked holds each eventId a 2xx acknowledged, with its first 2xx.
	acked map[string]time.Time
	// maybe holds the eventIds of valid events sent in requests without a
	// 2xx: such an event may be stored, at most once.
	maybe map[string]bool
	// invalid maps each invalid event, as sent, to whether a 2xx
	// answered its request (and it must then be dead-lettered).
	invalid map[string]*invalidEvent
	spans   []span
	// inFlight counts requests sent and not answered yet.
	inFlight int
	// disagreements lists answers whose counts contradict the body.
	disagreements []string
}

type invalidEvent struct {
	eventID string
	// reason is the validator's verdict: the gateway's dead letter must
	// carry the same.
	reason string
	// answered: the request got a 2xx; span is its index in spans.
	answered bool
	span     int
}

// span is one request's time on the wire and how it ended.
type span struct {
	start, end time.Time
	status     int // 0: no answer
}

func newLedger(next http.RoundTripper) *ledger {
	return &ledger{
		next:     next,
		statuses: map[int]int{},
		acked:    map[string]time.Time{},
		maybe:    map[string]bool{},
		invalid:  map[string]*invalidEvent{},
	}
}

// sentBody is what one request carried.
type sentBody struct {
	elements int
	valid    []string // eventIds, repeats included
	invalid  []rejected
}

// rejected is an invalid event as sent, with why it is invalid.
type rejected struct {
	raw    []byte
	reason string
}

// gatewayAnswer is the part of a 202 or 400 body the ledger checks.
type gatewayAnswer struct {
	Accepted *int `json:"accepted"`
	Rejected *int `json:"rejected"`
}

func parseSent(body []byte) (sentBody, error) {
	var elems []json.RawMessage
	if err := json.Unmarshal(body, &elems); err != nil {
		return sentBody{}, fmt.Errorf("publisher body is not a JSON array: %w", err)
	}
	sb := sentBody{elements: len(elems)}
	for _, raw := range elems {
		if e, err := event.Parse(raw); err == nil {
			sb.valid = append(sb.valid, e.ID)
		} else {
			sb.invalid = append(sb.invalid, rejected{raw: raw, reason: err.Error()})
		}
	}
	return sb, nil
}

func (l *ledger) RoundTrip(req *http.Request) (*http.Response, error) {
	body, err := io.ReadAll(req.Body)
	req.Body.Close()
	if err != nil {
		return nil, err
	}
	sent, err := parseSent(body)
	if err != nil {
		// The checks cannot follow such a request: fail the run.
		l.mu.Lock()
		l.disagreements = append(l.disagreements, err.Error())
		l.mu.Unlock()
		return nil, err
	}
	out := req.Clone(req.Context())
	out.Body = io.NopCloser(bytes.NewReader(body))
	out.ContentLength = int64(len(body))

	l.mu.Lock()
	l.inFlight++
	l.mu.Unlock()
	start := time.Now()
	resp, err := l.next.RoundTrip(out)
	var answer []byte
	if err == nil {
		answer, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			resp = nil
		} else {
			resp.Body = io.NopCloser(bytes.NewReader(answer))
		}
	}
	status := 0
	if resp != nil {
		status = resp.StatusCode
	}
	l.record(sent, span{start: start, end: time.Now(), status: status}, answer)
	return resp, err
}

func (l *ledger) record(sent sentBody, sp span, answer []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.inFlight--
	l.requests++
	l.elements += sent.elements
	ok := sp.status/100 == 2
	switch {
	case sp.status == 0:
		l.netErrs++
		l.failed++
	case !ok:
		l.statuses[sp.status]++
		l.failed++
	default:
		l.statuses[sp.status]++
	}
	l.spans = append(l.spans, sp)
	for _, id := range sent.valid {
		if !ok {
			l.maybe[id] = true
		} else if _, seen := l.acked[id]; !seen {
			l.acked[id] = sp.end
		}
	}
	for _, rj := range sent.invalid {
		l.invalid[string(rj.raw)] = &invalidEvent{
			eventID:  peekEventID(rj.raw),
			reason:   rj.reason,
			answered: ok,
			span:     len(l.spans) - 1,
		}
	}
	if ok {
		var a gatewayAnswer
		err := json.Unmarshal(answer, &a)
		if err != nil || a.Accepted == nil || a.Rejected == nil ||
			*a.Accepted != len(sent.valid) || *a.Rejected != len(sent.invalid) {
			l.disagreements = append(l.disagreements, fmt.Sprintf(
				"%d answer %s to a body of %d valid and %d invalid events", sp.status, answer, len(sent.valid), len(sent.invalid)))
		}
	}
}

func peekEventID(raw []byte) string {
	var v struct {
		EventID any `json:"eventId"`
	}
	_ = json.Unmarshal(raw, &v)
	id, _ := v.EventID.(string)
	return id
}

// busy reports whether a request is on the wire.
func (l *ledger) busy() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.inFlight > 0
}

// cutAt counts the requests on the wire at t that got no answer: those a
// process killed at t cut off.
func (l *ledger) cutAt(t time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, sp := range l.spans {
		if sp.status == 0 && sp.start.Before(t) && !sp.end.Before(t) {
			n++
		}
	}
	return n
}

// ackedBy returns the eventIds acknowledged by a 2xx answered by t.
func (l *ledger) ackedBy(t time.Time) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var ids []string
	for id, at := range l.acked {
		if !at.After(t) {
			ids = append(ids, id)
		}
	}
	return ids
}

// ackedCount returns how many distinct events a 2xx acknowledged.
func (l *ledger) ackedCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

// storedOf returns which of ids are stored.
func storedOf(ctx context.Context, conn *pgx.Conn, ids []string) (map[string]bool, error) {
	rows, err := conn.Query(ctx, `SELECT event_id FROM events WHERE event_id = ANY($1)`, ids)
	if err != nil {
		return nil, err
	}
	found := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		found[id] = true
	}
	return found, rows.Err()
}

// waitStored waits until every one of ids is stored, or ctx ends.
func waitStored(ctx context.Context, dbURL string, ids []string) error {
	missing := ids
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	for len(missing) > 0 {
		var err error
		if conn == nil || conn.IsClosed() {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			conn, err = pgx.Connect(cctx, dbURL)
			cancel()
		}
		if err == nil {
			var found map[string]bool
			if found, err = storedOf(ctx, conn, missing); err == nil {
				rest := missing[:0:0]
				for _, id := range missing {
					if !found[id] {
						rest = append(rest, id)
					}
				}
				missing = rest
				if len(missing) == 0 {
					return nil
				}
			} else {
				conn.Close(context.Background())
				conn = nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d of %d acknowledged events not stored: %w", len(missing), len(ids), ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
	return nil
}

// storageTally is what the events table holds compared with the ledger.
type storageTally struct {
	stored         int // distinct stored eventIds
	duplicates     int // rows beyond the first of an eventId
	lost           []string
	fromFailed     int      // stored events that only failed requests carried
	neverSent      []string // stored events no request carried
	storedTwice    []string
	acknowledged   int
	maybeSent      int
	requests       int
	failedRequests int
	networkErrors  int
	elements       int
	statuses       map[int]int
}

// tally compares the events table with the ledger.
func (l *ledger) tally(stored map[string]int) storageTally {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := storageTally{
		stored:         len(stored),
		acknowledged:   len(l.acked),
		requests:       l.requests,
		failedRequests: l.failed,
		networkErrors:  l.netErrs,
		elements:       l.elements,
		statuses:       maps.Clone(l.statuses),
	}
	for id := range l.maybe {
		if _, ok := l.acked[id]; !ok {
			st.maybeSent++
		}
	}
	for id := range l.acked {
		if stored[id] == 0 {
			st.lost = append(st.lost, id)
		}
	}
	for id, n := range stored {
		st.duplicates += n - 1
		if n > 1 {
			st.storedTwice = append(st.storedTwice, id)
		}
		if _, ok := l.acked[id]; ok {
			continue
		}
		if l.maybe[id] {
			st.fromFailed++
		} else {
			st.neverSent = append(st.neverSent, id)
		}
	}
	return st
}

// deadLetter is one message of the DEADLETTER stream.
type deadLetter struct {
	subject, origin, reason, eventID string
	data                             []byte
}

// readDeadLetters returns every message of the DEADLETTER stream.
func readDeadLetters(ctx context.Context, js jetstream.JetStream) ([]deadLetter, error) {
	str, err := js.Stream(ctx, stream.DeadLetter)
	if err != nil {
		return nil, err
	}
	info, err := str.Info(ctx)
	if err != nil {
		return nil, err
	}
	var out []deadLetter
	if info.State.Msgs == 0 {
		return nil, nil
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := str.GetMsg(ctx, seq)
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				continue
			}
			return nil, fmt.Errorf("dead letter %d: %w", seq, err)
		}
		out = append(out, deadLetter{
			subject: m.Subject,
			origin:  m.Header.Get(stream.HeaderOrigin),
			reason:  m.Header.Get(stream.HeaderReason),
			eventID: peekEventID(m.Data),
			data:    m.Data,
		})
	}
	return out, nil
}

// checkDeadLetters matches the DEADLETTER stream with what was sent: the
// gateway's entries must each be an invalid event the publisher sent,
// once, with a reason, and every invalid event of a 2xx request must be
// there, except one whose request was on the wire when NATS stopped (its
// dead-letter publish, the request's last, may have been cut while the
// events were acknowledged); each collector's entries must be exactly the
// poison published to it.
func (l *ledger) checkDeadLetters(dls []deadLetter, poison map[string]string, natsStops []time.Time) deadLetterTally {
	l.mu.Lock()
	defer l.mu.Unlock()
	var (
		gateway, collectors int
		problems            []string
	)
	seen := map[string]int{}
	poisonSeen := map[string]int{}
	for _, dl := range dls {
		if dl.reason == "" {
			problems = append(problems, fmt.Sprintf("dead letter on %s from %s without a reason: %s", dl.subject, dl.origin, dl.data))
		}
		switch dl.origin {
		case "gateway":
			gateway++
			inv, ok := l.invalid[string(dl.data)]
			if !ok {
				problems = append(problems, fmt.Sprintf("gateway dead-lettered what was not an invalid event sent (reason %q): %.300s", dl.reason, dl.data))
				continue
			}
			if inv.eventID != dl.eventID {
				problems = append(problems, fmt.Sprintf("dead letter eventId %q; sent as %q", dl.eventID, inv.eventID))
			}
			if dl.reason != inv.reason {
				problems = append(problems, fmt.Sprintf("dead letter reason %q; the validator says %q", dl.reason, inv.reason))
			}
			seen[string(dl.data)]++
		case "fb-collector", "ttk-collector":
			collectors++
			id := dl.eventID
			if poison[id] != dl.origin || dl.subject != stream.DeadLetterSubject(dl.origin) {
				problems = append(problems, fmt.Sprintf("%s dead-lettered what is not poison published to it (reason %q): %.300s", dl.origin, dl.reason, dl.data))
				continue
			}
			poisonSeen[id]++
		default:
			problems = append(problems, fmt.Sprintf("dead letter on %s from unknown origin %q", dl.subject, dl.origin))
		}
	}
	for raw, n := range seen {
		if n > 1 {
			problems = append(problems, fmt.Sprintf("invalid event dead-lettered %d times: %.200s", n, raw))
		}
	}
	excused := 0
	for raw, inv := range l.invalid {
		if !inv.answered || seen[raw] > 0 {
			continue
		}
		sp := l.spans[inv.span]
		cut := false
		for _, t := range natsStops {
			if sp.start.Before(t) && !sp.end.Before(t) {
				cut = true
			}
		}
		if cut {
			excused++
			continue
		}
		problems = append(problems, fmt.Sprintf("invalid event of a %d request not dead-lettered: %.200s", sp.status, raw))
	}
	for id, origin := range poison {
		switch n := poisonSeen[id]; {
		case n == 0:
			problems = append(problems, fmt.Sprintf("poison %s published to %s never dead-lettered", id, origin))
		case n > 1:
			problems = append(problems, fmt.Sprintf("poison %s dead-lettered %d times; want once", id, n))
		}
	}
	return deadLetterTally{gateway: gateway, collectors: collectors, excused: excused, problems: problems}
}

// deadLetterTally is what checkDeadLetters found.
type deadLetterTally struct {
	gateway, collectors int
	// excused counts invalid events of 2xx requests missing from the
	// stream because NATS stopped while their request was on the wire.
	excused  int
	problems []string
}

// scrapeMetrics scrapes a /metrics page and sums each metric over its labels.
func scrapeMetrics(ctx context.Context, url string) (map[string]float64, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %d", url, resp.StatusCode)
	}
	sums := map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		name := line
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			name = line[:i]
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			continue
		}
		sums[name] += v
	}
	return sums, nil
}

// cpuSeconds returns the CPU time (user and system) a process has used.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name, in parentheses, may hold spaces: fields count
	// from after it. utime and stime are fields 14 and 15 of the line.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	utime, err1 := strconv.ParseFloat(f[11], 64)
	stime, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	// USER_HZ is 100 on Linux for every architecture Go supports here.
	return (utime + stime) / 100, nil
}
