package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/eventpipe/eventpipe/pkg/event"
	"github.com/eventpipe/eventpipe/pkg/eventgen"
	"github.com/eventpipe/eventpipe/pkg/natstest"
	"github.com/eventpipe/eventpipe/pkg/stream"
)

// withField returns raw, one event object, with an extra member added at
// the end.
func withField(raw []byte, member string) []byte {
	out := bytes.Clone(raw[:len(raw)-1])
	out = append(out, ',')
	out = append(out, member...)
	return append(out, '}')
}

// byID indexes stored messages by their Nats-Msg-Id.
func byID(msgs []*jetstream.RawStreamMsg) map[string]*jetstream.RawStreamMsg {
	out := make(map[string]*jetstream.RawStreamMsg, len(msgs))
	for _, m := range msgs {
		out[m.Header.Get(jetstream.MsgIDHeader)] = m
	}
	return out
}

// checkStored checks that every raw event is in EVENTS once, on its subject,
// byte for byte, with its eventId and correlation id headers.
func checkStored(t *testing.T, msgs map[string]*jetstream.RawStreamMsg, raws [][]byte, corr string) {
	t.Helper()
	for i, raw := range raws {
		var e struct {
			EventID   string `json:"eventId"`
			Source    string `json:"source"`
			EventType string `json:"eventType"`
		}
		if err := json.Unmarshal(raw, &e); err != nil {
			t.Fatal(err)
		}
		m, ok := msgs[e.EventID]
		if !ok {
			t.Errorf("event %d (%s): not in the stream", i, e.EventID)
			continue
		}
		if want := "events." + e.Source + "." + e.EventType; m.Subject != want {
			t.Errorf("event %d: subject got %q; want %q", i, m.Subject, want)
		}
		if got := m.Header.Get(stream.HeaderCorrelationID); got != corr {
			t.Errorf("event %d: X-Correlation-ID got %q; want %q", i, got, corr)
		}
		if !bytes.Equal(m.Data, raw) {
			t.Errorf("event %d: data got %s; want %s", i, m.Data, raw)
		}
	}
}

func TestWebhookArray(t *testing.T) {
	ns := natstest.Start(t)
	g := startGateway(t, testOptions(t, ns.ClientURL()))
	js := natsClient(t, ns)

	raws := samples(t)
	// Unknown fields must survive: the collectors keep the whole event.
	raws[0] = withField(raws[0], `"extra":{"nested":[1,2.50,"x"]}`)
	raws = append(raws, events(40, 1)...)
	// Whitespace between elements is not part of any event.
	body := []byte("\n [ " + string(bytes.Join(raws, []byte(" ,\n\t"))) + " ]\n")

	a := post(t, g.url, body, "X-Correlation-ID", "corr-array")
	if a.Status != http.StatusAccepted {
		t.Fatalf("status: got %d; want 202 (body %s)", a.Status, a.Body)
	}
	if !bytes.Contains(a.Body, []byte(`"errors":[]`)) {
		t.Errorf("body %s: want an empty errors list", a.Body)
	}
	want := result{Accepted: len(raws), Errors: []eventError{}}
	if a.Result.Accepted != want.Accepted || a.Result.Rejected != 0 || a.Result.Duplicates != 0 || a.Result.Error != nil {
		t.Errorf("result: got %+v; want %+v", a.Result, want)
	}
	msgs := streamMsgs(t, js, stream.Events)
	if len(msgs) != len(raws) {
		t.Fatalf("stream holds %d messages; want %d", len(msgs), len(raws))
	}
	checkStored(t, byID(msgs), raws, "corr-array")
}

func TestWebhookSingleObject(t *testing.T) {
	ns := natstest.Start(t)
	g := startGateway(t, testOptions(t, ns.ClientURL()))
	js := natsClient(t, ns)

	raw := samples(t)[2]
	a := post(t, g.url, append([]byte("\r\n  "), raw...), "X-Correlation-ID", "corr-one")
	if a.Status != http.StatusAccepted || a.Result.Accepted != 1 || a.Result.Rejected != 0 {
		t.Fatalf("got %d %s; want 202 with accepted 1", a.Status, a.Body)
	}
	msgs := streamMsgs(t, js, stream.Events)
	if len(msgs) != 1 {
		t.Fatalf("stream holds %d messages; want 1", len(msgs))
	}
	checkStored(t, byID(msgs), [][]byte{raw}, "corr-one")
}

func TestRunOwnsStreamConfig(t *testing.T) {
	ns := natstest.Start(t)
	js := natsClient(t, ns)
	// A stream left by an older configuration is brought in line.
	old := testOptions(t, ns.ClientURL())
	old.Stream.DuplicateWindow = time.Minute
	ensureStreams(t, js, old.Stream)

	opts := testOptions(t, ns.ClientURL())
	opts.Stream.DuplicateWindow = 7 * time.Minute
	opts.Stream.MaxAge = 36 * time.Hour
	startGateway(t, opts)
	s, err := js.Stream(context.Background(), stream.Events)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	if cfg.Duplicates != 7*time.Minute || cfg.MaxAge != 36*time.Hour {
		t.Errorf("EVENTS duplicate window %v, max age %v; want 7m and 36h", cfg.Duplicates, cfg.MaxAge)
	}
}

// mustCorrupt applies a named eventgen corruption.
func mustCorrupt(t *testing.T, name string, raw []byte) []byte {
	t.Helper()
	out, err := eventgen.Apply(name, raw)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// rejection returns the error the gateway reports for raw.
func rejection(t *testing.T, raw []byte) string {
	t.Helper()
	_, err := event.Parse(raw)
	if err == nil {
		t.Fatalf("event %s is valid; the test wants an invalid one", raw)
	}
	return err.Error()
}

func TestWebhookMixed(t *testing.T) {
	ns := natstest.Start(t)
	g := startGateway(t, testOptions(t, ns.ClientURL()))
	js := natsClient(t, ns)

	s := samples(t)
	valid := [][]byte{s[0], s[1], s[2], s[3]}
	badAge := bytes.Replace(s[1], []byte(`"age":58`), []byte(`"age":"58"`), 1)
	badTime := mustCorrupt(t, "invalid-timestamp", events(1, 7)[0])
	noID := mustCorrupt(t, "missing-event-id", events(1, 8)[0])
	body := array(valid[0], badAge, valid[1], badTime, []byte(`42`), valid[2], noID, valid[3])

	a := post(t, g.url, body, "X-Correlation-ID", "corr-mixed")
	if a.Status != http.StatusAccepted {
		t.Fatalf("status: got %d; want 202 (body %s)", a.Status, a.Body)
	}
	if a.Result.Accepted != 4 || a.Result.Rejected != 4 {
		t.Errorf("counts: got accepted %d rejected %d; want 4 and 4", a.Result.Accepted, a.Result.Rejected)
	}
	wantErrors := []eventError{
		{Index: 1, EventID: eventID(t, badAge), Error: rejection(t, badAge)},
		{Index: 3, EventID: eventID(t, badTime), Error: rejection(t, badTime)},
		{Index: 4, Error: rejection(t, []byte(`42`))},
		{Index: 6, Error: rejection(t, noID)},
	}
	if !slices.Equal(a.Result.Errors, wantErrors) {
		t.Errorf("errors:\n got %+v\nwant %+v", a.Result.Errors, wantErrors)
	}
	// The errors name the field at fault, then why.
	for _, e := range []struct{ got, prefix string }{
		{a.Result.Errors[0].Error, "data.user.age: "},
		{a.Result.Errors[1].Error, "timestamp: "},
		{a.Result.Errors[3].Error, "eventId: "},
	} {
		if !strings.HasPrefix(e.got, e.prefix) || len(e.got) == len(e.prefix) {
			t.Errorf("error %q: want a reason after %q", e.got, e.prefix)
		}
	}

	msgs := streamMsgs(t, js, stream.Events)
	if len(msgs) != len(valid) {
		t.Fatalf("EVENTS holds %d messages; want %d", len(msgs), len(valid))
	}
	checkStored(t, byID(msgs), valid, "corr-mixed")

	// Every rejected event is kept, raw, with the reason.
	dead := streamMsgs(t, js, stream.DeadLetter)
	rejected := [][]byte{badAge, badTime, []byte(`42`), noID}
	if len(dead) != len(rejected) {
		t.Fatalf("DEADLETTER holds %d messages; want %d", len(dead), len(rejected))
	}
	for i, m := range dead {
		if m.Subject != "deadletter.gateway" {
			t.Errorf("dead letter %d: subject got %q; want deadletter.gateway", i, m.Subject)
		}
		if !bytes.Equal(m.Data, rejected[i]) {
			t.Errorf("dead letter %d: data got %s; want %s", i, m.Data, rejected[i])
		}
		checks := []struct{ header, want string }{
			{stream.HeaderReason, wantErrors[i].Error},
			{stream.HeaderOrigin, "gateway"},
			{stream.HeaderCorrelationID, "corr-mixed"},
		}
		for _, c := range checks {
			if got := m.Header.Get(c.header); got != c.want {
				t.Errorf("dead letter %d: %s got %q; want %q", i, c.header, got, c.want)
			}
		}
	}
}

func TestWebhookBadBodies(t *testing.T) {
	ns := natstest.Start(t)
	g := startGateway(t, testOptions(t, ns.ClientURL()))
	js := natsClient(t, ns)

	ev := events(12, 3)
	tests := []struct {
		name     string
		body     []byte
		code     string
		message  string // a part of the error message
		accepted int    // events before the fault, published and acknowledged
		rejected int
	}{
		{name: "empty", body: nil, code: codeInvalidBody},
		{name: "whitespace", body: []byte(" \n\t "), code: codeInvalidBody},
		{name: "empty array", body: []byte(" [ ] "), code: codeNoEvents, message: "no events"},
		{name: "not JSON", body: []byte("eventId=1"), code: codeInvalidBody, message: "JSON array of events or one event object"},
		{name: "string", body: []byte(`"hello"`), code: codeInvalidBody, message: "JSON array of events or one event object"},
		{name: "number", body: []byte(`42`), code: codeInvalidBody},
		{name: "null", body: []byte(`null`), code: codeInvalidBody},
		{name: "truncated object", body: ev[0][:40], code: codeInvalidBody, message: "truncated"},
		{name: "object then garbage", body: append(bytes.Clone(ev[1]), " x"...), code: codeInvalidBody, message: "after the event"},
		{name: "truncated array", body: array(ev[2], ev[3])[:len(ev[2])+10], code: codeInvalidBody, message: "truncated at event index 1", accepted: 1},
		{name: "array without end", body: []byte("[" + string(ev[4]) + ","), code: codeInvalidBody, message: "truncated at event index 1", accepted: 1},
		{name: "syntax error mid-array", body: []byte("[" + string(ev[5]) + "," + string(ev[6]) + ",{]"), code: codeInvalidBody, message: "not valid JSON at event index 2", accepted: 2},
		{name: "missing comma", body: []byte("[" + string(ev[7]) + " " + string(ev[8]) + "]"), code: codeInvalidBody, message: "at event index 1", accepted: 1},
		{name: "array then garbage", body: append(array(ev[9]), "]"...), code: codeInvalidBody, message: "after the array", accepted: 1},
		{name: "all invalid", body: array([]byte(`{"eventId":"a"}`), []byte(`[]`), []byte(`"x"`)), code: codeInvalidEvents, rejected: 3},
		{name: "one invalid object", body: []byte(`{"eventId":"b","source":"facebook"}`), code: codeInvalidEvents, rejected: 1},
	}
	var stored uint64
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := post(t, g.url, tt.body)
			if a.Status != http.StatusBadRequest {
				t.Fatalf("status: got %d; want 400 (body %s)", a.Status, a.Body)
			}
			var body struct {
				Error struct{ Code, Message string }
			}
			if err := json.Unmarshal(a.Body, &body); err != nil {
				t.Fatalf("body %s: %v", a.Body, err)
			}
			if body.Error.Code != tt.code || !strings.Contains(body.Error.Message, tt.message) {
				t.Errorf("error: got %+v; want code %q and a message with %q", body.Error, tt.code, tt.message)
			}
			if a.Result.Accepted != tt.accepted || a.Result.Rejected != tt.rejected || len(a.Result.Errors) != tt.rejected {
				t.Errorf("result: got %+v; want accepted %d, rejected %d", a.Result, tt.accepted, tt.rejected)
			}
			// What a 400 counts as accepted is exactly what was stored.
			stored += uint64(tt.accepted)
			if got := streamCount(t, js, stream.Events); got != stored {
				t.Errorf("EVENTS holds %d messages; want %d", got, stored)
			}
		})
	}
}

func TestWebhookDuplicates(t *testing.T) {
	ns := natstest.Start(t)
	g := startGateway(t, testOptions(t, ns.ClientURL()))
	js := natsClient(t, ns)

	ev := events(3, 4)
	a := post(t, g.url, array(ev[0], ev[1], ev[0], ev[2], ev[0]))
	if a.Status != http.StatusAccepted || a.Result.Accepted != 5 || a.Result.Duplicates != 2 {
		t.Fatalf("first request: got %d %s; want 202 with accepted 5, duplicates 2", a.Status, a.Body)
	}
	a = post(t, g.url, array(ev[2], ev[1]))
	if a.Status != http.StatusAccepted || a.Result.Accepted != 2 || a.Result.Duplicates != 2 {
		t.Fatalf("second request: got %d %s; want 202 with accepted 2, duplicates 2", a.Status, a.Body)
	}
	msgs := streamMsgs(t, js, stream.Events)
	if len(msgs) != 3 {
		t.Fatalf("stream holds %d messages; want 3, one per eventId", len(msgs))
	}
	checkStored(t, byID(msgs), ev, msgs[0].Header.Get(stream.HeaderCorrelationID))
}

// hideLength hides a reader's length so the request is sent chunked and
// the limit is found while reading.
type hideLength struct{ r io.Reader }

func (h hideLength) Read(p []byte) (int, error) { return h.r.Read(p) }

func TestWebhookTooLarge(t *testing.T) {
	ns := natstest.Start(t)
	opts := testOptions(t, ns.ClientURL())
	opts.MaxBodyBytes = 4 << 10
	g := startGateway(t, opts)
	js := natsClient(t, ns)

	small := array(events(2, 5)...)
	big := array(events(30, 6)...)
	if len(small) > int(opts.MaxBodyBytes) || len(big) < 2*int(opts.MaxBodyBytes) {
		t.Fatalf("body sizes %d and %d do not straddle the %d limit", len(small), len(big), opts.MaxBodyBytes)
	}

	if a := post(t, g.url, small); a.Status != http.StatusAccepted {
		t.Errorf("body under the limit: got %d %s; want 202", a.Status, a.Body)
	}
	if a := post(t, g.url, big); a.Status != http.StatusRequestEntityTooLarge || !strings.Contains(string(a.Body), codeTooLarge) {
		t.Errorf("declared length over the limit: got %d %s; want 413 %s", a.Status, a.Body, codeTooLarge)
	}
	before := streamCount(t, js, stream.Events)
	a := postReader(t, g.url, hideLength{bytes.NewReader(big)}, -1)
	if a.Status != http.StatusRequestEntityTooLarge || a.Result.Error == nil || a.Result.Error.Code != codeTooLarge {
		t.Fatalf("chunked body over the limit: got %d %s; want 413 %s", a.Status, a.Body, codeTooLarge)
	}
	// The events read before the limit was hit are stored and counted.
	if got := streamCount(t, js, stream.Events) - before; got != uint64(a.Result.Accepted) {
		t.Errorf("stored %d events; want the %d the answer counts", got, a.Result.Accepted)
	}
}

func TestWebhookContentType(t *testing.T) {
	ns := natstest.Start(t)
	g := startGateway(t, testOptions(t, ns.ClientURL()))

	ev := events(6, 9)
	tests := []struct {
		contentType string
		want        int
	}{
		{"application/json", http.StatusAccepted},
		{"application/json; charset=utf-8", http.StatusAccepted},
		{"Application/JSON;charset=UTF-8", http.StatusAccepted},
		{"application/vnd.events+json", http.StatusAccepted},
		{"text/plain", http.StatusUnsupportedMediaType},
		{"", http.StatusUnsupportedMediaType},
		{"application/x-www-form-urlencoded", http.StatusUnsupportedMediaType},
		{"application/+json", http.StatusUnsupportedMediaType},
		{"application/jsonp", http.StatusUnsupportedMediaType},
	}
	for i, tt := range tests {
		t.Run(tt.contentType, func(t *testing.T) {
			a := post(t, g.url, array(ev[i%len(ev)]), "Content-Type", tt.contentType)
			if a.Status != tt.want {
				t.Fatalf("got %d %s; want %d", a.Status, a.Body, tt.want)
			}
			if tt.want == http.StatusUnsupportedMediaType && !strings.Contains(string(a.Body), `"code":"unsupported_media_type"`) {
				t.Errorf("body %s: want the common error body with code unsupported_media_type", a.Body)
			}
		})
	}
}

func TestWebhookNATSDown(t *testing.T) {
	ns := natstest.Start(t)
	g := startGateway(t, testOptions(t, ns.ClientURL()))

	ns.Shutdown()
	ns.WaitForShutdown()
	waitFor(t, "readiness to report NATS down", func() bool {
		resp, err := http.Get(g.url + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable
	})

	a := post(t, g.url, array(events(10, 10)...))
	if a.Status != http.StatusServiceUnavailable {
		t.Fatalf("status: got %d %s; want 503", a.Status, a.Body)
	}
	if got := a.Header.Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After: got %q; want \"1\"", got)
	}
	if !strings.Contains(string(a.Body), `"code":"unavailable"`) || strings.Contains(string(a.Body), "accepted") {
		t.Errorf("body %s: want the common error body with code unavailable and nothing accepted", a.Body)
	}
}

func TestWebhookCorrelationID(t *testing.T) {
	ns := natstest.Start(t)
	g := startGateway(t, testOptions(t, ns.ClientURL()))
	js := natsClient(t, ns)

	generated := regexp.MustCompile(`^[0-9a-f]{32}$`)
	tests := []struct {
		name    string
		headers []string
		want    string // empty: a generated id
	}{
		{"X-Correlation-ID", []string{"X-Correlation-ID", "corr-given-1"}, "corr-given-1"},
		{"X-Request-ID", []string{"X-Request-ID", "req-given-2"}, "req-given-2"},
		{"both", []string{"X-Correlation-ID", "corr-3", "X-Request-ID", "req-3"}, "corr-3"},
		{"none", nil, ""},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := events(3, int64(100+i))
			before := len(streamMsgs(t, js, stream.DeadLetter))
			a := post(t, g.url, array(append(ev, []byte(`{"eventId":"bad-`+tt.name+`"}`))...), tt.headers...)
			if a.Status != http.StatusAccepted {
				t.Fatalf("got %d %s; want 202", a.Status, a.Body)
			}
			got := a.Header.Get("X-Correlation-ID")
			if tt.want != "" && got != tt.want || tt.want == "" && !generated.MatchString(got) {
				t.Fatalf("X-Correlation-ID: got %q; want %q (or a generated id)", got, tt.want)
			}
			checkStored(t, byID(streamMsgs(t, js, stream.Events)), ev, got)
			dead := streamMsgs(t, js, stream.DeadLetter)
			if len(dead) != before+1 {
				t.Fatalf("DEADLETTER holds %d messages; want %d", len(dead), before+1)
			}
			if h := dead[before].Header.Get(stream.HeaderCorrelationID); h != got {
				t.Errorf("dead letter X-Correlation-ID: got %q; want %q", h, got)
			}
		})
	}
}

func TestWebhookLargeBody(t *testing.T) {
	if testing.Short() {
		t.Skip("50,000 events: skipped in -short")
	}
	ns := natstest.Start(t)
	g := startGateway(t, testOptions(t, ns.ClientURL()))
	js := natsClient(t, ns)

	const n = 50000
	body := array(events(n, 11)...)
	a := post(t, g.url, body)
	if a.Status != http.StatusAccepted || a.Result.Accepted != n || a.Result.Rejected != 0 {
		t.Fatalf("got %d %.300s; want 202 with accepted %d", a.Status, a.Body, n)
	}
	if got := streamCount(t, js, stream.Events); got != n {
		t.Errorf("stream holds %d messages; want %d", got, n)
	}
}

func TestWebhookMetrics(t *testing.T) {
	ns := natstest.Start(t)
	g := startGateway(t, testOptions(t, ns.ClientURL()))

	s := samples(t) // facebook, facebook, tiktok, tiktok
	badAge := bytes.Replace(s[1], []byte(`"age":58`), []byte(`"age":-1`), 1)
	body := array(s[0], s[1], s[2], badAge, []byte(`{"source":"myspace"}`), s[3])
	if a := post(t, g.url, body); a.Status != http.StatusAccepted {
		t.Fatalf("first request: got %d %s; want 202", a.Status, a.Body)
	}
	if a := post(t, g.url, array(s[2])); a.Status != http.StatusAccepted || a.Result.Duplicates != 1 {
		t.Fatalf("second request: got %d %s; want 202 with one duplicate", a.Status, a.Body)
	}
	if a := post(t, g.url, []byte(`[]`)); a.Status != http.StatusBadRequest {
		t.Fatalf("third request: got %d %s; want 400", a.Status, a.Body)
	}

	got := scrape(t, g.url)
	want := map[string]float64{
		`gateway_events_accepted_total{source="facebook"}`:                   2,
		`gateway_events_accepted_total{source="tiktok"}`:                     3,
		`gateway_events_processed_total{source="facebook"}`:                  2,
		`gateway_events_processed_total{source="tiktok"}`:                    3,
		`gateway_events_failed_total{reason="validation",source="facebook"}`: 1,
		`gateway_events_failed_total{reason="validation",source="unknown"}`:  1,
		`gateway_events_failed_total{reason="validation",source="tiktok"}`:   0,
		`gateway_events_failed_total{reason="publish",source="facebook"}`:    0,
		`gateway_events_failed_total{reason="publish",source="tiktok"}`:      0,
		`gateway_event_processing_duration_seconds_count`:                    3,
		`gateway_events_duplicate_total{source="tiktok"}`:                    1,
		`gateway_events_duplicate_total{source="facebook"}`:                  0,
		`gateway_requests_total{code="202"}`:                                 2,
		`gateway_requests_total{code="400"}`:                                 1,
		`gateway_deadletter_total{reason="data.user.age"}`:                   1,
		`gateway_deadletter_total{reason="eventId"}`:                         1,
		`gateway_deadletter_failures_total`:                                  0,
		`gateway_publish_in_flight`:                                          0,
		`gateway_publish_duration_seconds_count`:                             2,
		`gateway_event_processing_duration_seconds_bucket{le="+Inf"}`:        3,
		`gateway_event_processing_duration_seconds_bucket{le="0.0005"}`:      -1, // present; value not asserted
		`gateway_publish_duration_seconds_bucket{le="+Inf"}`:                 2,
	}
	for name, w := range want {
		v, ok := got[name]
		if !ok {
			t.Errorf("%s: missing from /metrics", name)
			continue
		}
		if w >= 0 && v != w {
			t.Errorf("%s: got %v; want %v", name, v, w)
		}
	}
	if v := got[`gateway_event_processing_duration_seconds_sum`]; v <= 0 {
		t.Errorf("gateway_event_processing_duration_seconds_sum: got %v; want > 0", v)
	}
}

func TestGracefulShutdown(t *testing.T) {
	ns := natstest.Start(t)
	g := startGateway(t, testOptions(t, ns.ClientURL()))
	js := natsClient(t, ns)
	addr := strings.TrimPrefix(g.url, "http://")

	const n = 20000
	raws := events(n, 12)
	body := array(raws...)
	half := len(array(raws[:n/2]...)) - 1 // up to the end of event n/2-1, before its ']'
	pr, pw := io.Pipe()
	answers := make(chan answer, 1)
	go func() {
		a, err := doPost(g.url, pr, -1)
		if err != nil {
			t.Errorf("POST /webhook: %v", err)
		}
		answers <- a
	}()

	if _, err := pw.Write(body[:half]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first events to be stored", func() bool { return streamCount(t, js, stream.Events) > 0 })

	stopped := make(chan error, 1)
	go func() { stopped <- g.shutdown() }()
	// The listener closing shows that the HTTP shutdown has begun while the
	// request is still being read.
	waitFor(t, "the listener to close", func() bool {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
	if _, err := pw.Write(body[half:]); err != nil {
		t.Fatal(err)
	}
	pw.Close()

	a := <-answers
	if a.Status != http.StatusAccepted || a.Result.Accepted != n {
		t.Fatalf("in-flight request: got %d %.300s; want 202 with accepted %d", a.Status, a.Body, n)
	}
	if err := <-stopped; err != nil {
		t.Errorf("Run: got %v; want nil", err)
	}
	if got := streamCount(t, js, stream.Events); got != n {
		t.Errorf("stream holds %d messages; want %d", got, n)
	}
}

// TestWebhookDeadLetterCap: past DEADLETTER_MAX_PER_REQUEST a request's
// rejected events are counted, not dead-lettered, so a body of many tiny
// invalid items cannot flood the dead-letter stream; the answer's counts
// stay exact and the valid events still go through.
func TestWebhookDeadLetterCap(t *testing.T) {
	ns := natstest.Start(t)
	opts := testOptions(t, ns.ClientURL())
	opts.MaxDeadLettersPerRequest = 3
	g := startGateway(t, opts)
	js := natsClient(t, ns)

	valid := samples(t)[0]
	raws := [][]byte{valid}
	for range 10 {
		raws = append(raws, []byte(`{}`))
	}
	a := post(t, g.url, array(raws...))
	if a.Status != http.StatusAccepted || a.Result.Accepted != 1 || a.Result.Rejected != 10 {
		t.Fatalf("got %d accepted %d rejected %d; want 202, 1 and 10 (body %s)", a.Status, a.Result.Accepted, a.Result.Rejected, a.Body)
	}
	if got := streamCount(t, js, stream.DeadLetter); got != 3 {
		t.Errorf("DEADLETTER holds %d messages; want the cap, 3", got)
	}
	if got := streamCount(t, js, stream.Events); got != 1 {
		t.Errorf("EVENTS holds %d messages; want 1", got)
	}
	m := scrape(t, g.url)
	if got := m["gateway_deadletter_skipped_total"]; got != 7 {
		t.Errorf("gateway_deadletter_skipped_total: got %v; want 7", got)
	}
}
