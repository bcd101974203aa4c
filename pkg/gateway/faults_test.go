package gateway

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eventpipe/eventpipe/pkg/httpserver"
	"github.com/eventpipe/eventpipe/pkg/natstest"
	"github.com/eventpipe/eventpipe/pkg/stream"
)

// Faults a faultyPublisher injects.
const (
	faultNone = iota
	faultSend // PublishMsgAsync fails
	faultAck  // the ack is an error
	faultHang // the ack never comes
)

// faultyPublisher passes publishes to a real JetStream and injects a fault
// into every publish after the first `after` ones (counting only dead-letter
// publishes when deadLetterOnly).
type faultyPublisher struct {
	publisher
	after          int64
	fault          int
	deadLetterOnly bool
	n              atomic.Int64
}

func (f *faultyPublisher) PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	if f.deadLetterOnly && !strings.HasPrefix(m.Subject, "deadletter.") || f.n.Add(1) <= f.after {
		return f.publisher.PublishMsgAsync(m, opts...)
	}
	switch f.fault {
	case faultSend:
		return nil, errors.New("injected send failure")
	case faultAck:
		fut := &future{msg: m, ok: make(chan *jetstream.PubAck), err: make(chan error, 1)}
		fut.err <- errors.New("injected ack failure")
		return fut, nil
	case faultHang:
		return &future{msg: m, ok: make(chan *jetstream.PubAck), err: make(chan error)}, nil
	}
	return f.publisher.PublishMsgAsync(m, opts...)
}

type future struct {
	msg *nats.Msg
	ok  chan *jetstream.PubAck
	err chan error
}

func (f *future) Ok() <-chan *jetstream.PubAck { return f.ok }
func (f *future) Err() <-chan error            { return f.err }
func (f *future) Msg() *nats.Msg               { return f.msg }

// webhookServer serves the webhook alone over httptest, with pub as its
// JetStream (nil: not set up yet).
func webhookServer(t *testing.T, opts Options, b *backend) (string, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	wh, err := newWebhook(opts, reg)
	if err != nil {
		t.Fatal(err)
	}
	if b != nil {
		wh.backend.Store(b)
	}
	engine := httpserver.NewEngine(quietLogger(), httpserver.NewReadiness(), reg)
	wh.register(engine)
	srv := httptest.NewServer(engine)
	t.Cleanup(srv.Close)
	return srv.URL, reg
}

func TestWebhookPublishFailures(t *testing.T) {
	ns := natstest.Start(t)
	js := natsClient(t, ns)
	opts := testOptions(t, ns.ClientURL())
	opts.PublishTimeout = 300 * time.Millisecond
	ensureStreams(t, js, opts.Stream)

	tests := []struct {
		name  string
		fault int
	}{
		{"send fails", faultSend},
		{"ack is an error", faultAck},
		{"ack never comes", faultHang},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pub := &faultyPublisher{publisher: js, after: 5, fault: tt.fault}
			url, _ := webhookServer(t, opts, &backend{pub: pub, connected: func() bool { return true }, maxEvent: 1 << 20})
			a := post(t, url, array(events(20, int64(20+i))...))
			if a.Status != http.StatusServiceUnavailable || a.Header.Get("Retry-After") != "1" {
				t.Fatalf("got %d (Retry-After %q) %s; want 503 with Retry-After 1", a.Status, a.Header.Get("Retry-After"), a.Body)
			}
			if !strings.Contains(string(a.Body), `"code":"unavailable"`) || strings.Contains(string(a.Body), "accepted") {
				t.Errorf("body %s: want the common error body with code unavailable and nothing accepted", a.Body)
			}
			// A request stops publishing at once when a send fails (acks
			// are awaited concurrently, so later failures stop it later).
			if got := pub.n.Load(); tt.fault == faultSend && got != 6 {
				t.Errorf("publishes tried: got %d; want 6", got)
			}
		})
	}
	// The real client's pending publishes all settle.
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		t.Fatal("test client publishes still pending")
	}
}

func TestWebhookFailureMetrics(t *testing.T) {
	ns := natstest.Start(t)
	js := natsClient(t, ns)
	opts := testOptions(t, ns.ClientURL())
	ensureStreams(t, js, opts.Stream)

	// Two events pass, the third fails to send: the request read three valid
	// events and only two were acknowledged.
	pub := &faultyPublisher{publisher: js, after: 2, fault: faultSend}
	url, _ := webhookServer(t, opts, &backend{pub: pub, connected: func() bool { return true }, maxEvent: 1 << 20})
	s := samples(t) // facebook, facebook, tiktok, tiktok
	if a := post(t, url, array(s...)); a.Status != http.StatusServiceUnavailable {
		t.Fatalf("got %d %s; want 503", a.Status, a.Body)
	}
	got := scrape(t, url)
	want := map[string]float64{
		`gateway_events_accepted_total{source="facebook"}`:                2,
		`gateway_events_accepted_total{source="tiktok"}`:                  1,
		`gateway_events_processed_total{source="facebook"}`:               2,
		`gateway_events_processed_total{source="tiktok"}`:                 0,
		`gateway_events_failed_total{reason="publish",source="tiktok"}`:   1,
		`gateway_events_failed_total{reason="publish",source="facebook"}`: 0,
		`gateway_requests_total{code="503"}`:                              1,
	}
	for name, w := range want {
		if v, ok := got[name]; !ok || v != w {
			t.Errorf("%s: got %v (present %v); want %v", name, v, ok, w)
		}
	}
}

func TestWebhookDeadLetterFailure(t *testing.T) {
	ns := natstest.Start(t)
	js := natsClient(t, ns)
	opts := testOptions(t, ns.ClientURL())
	ensureStreams(t, js, opts.Stream)

	for _, fault := range []int{faultSend, faultAck} {
		pub := &faultyPublisher{publisher: js, fault: fault, deadLetterOnly: true}
		url, _ := webhookServer(t, opts, &backend{pub: pub, connected: func() bool { return true }, maxEvent: 1 << 20})
		ev := events(2, int64(30+fault))
		a := post(t, url, array(ev[0], []byte(`{"eventId":"x"}`), ev[1]))
		if a.Status != http.StatusAccepted || a.Result.Accepted != 2 || a.Result.Rejected != 1 {
			t.Fatalf("fault %d: got %d %s; want 202 with accepted 2, rejected 1", fault, a.Status, a.Body)
		}
		if got := scrape(t, url)["gateway_deadletter_failures_total"]; got != 1 {
			t.Errorf("fault %d: gateway_deadletter_failures_total got %v; want 1", fault, got)
		}
	}
}

func TestWebhookNotReady(t *testing.T) {
	ns := natstest.Start(t)
	js := natsClient(t, ns)
	opts := testOptions(t, ns.ClientURL())

	tests := []struct {
		name string
		b    *backend
	}{
		{"streams not set up", nil},
		{"disconnected", &backend{pub: js, connected: func() bool { return false }, maxEvent: 1 << 20}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url, _ := webhookServer(t, opts, tt.b)
			a := post(t, url, array(events(1, 40)...))
			if a.Status != http.StatusServiceUnavailable || a.Header.Get("Retry-After") != "1" {
				t.Fatalf("got %d (Retry-After %q) %s; want 503 with Retry-After 1", a.Status, a.Header.Get("Retry-After"), a.Body)
			}
		})
	}
}

func TestWebhookOversizedEvent(t *testing.T) {
	ns := natstest.Start(t)
	js := natsClient(t, ns)
	opts := testOptions(t, ns.ClientURL())
	ensureStreams(t, js, opts.Stream)

	// An event that cannot fit a NATS message is rejected on its own rather
	// than failing the request on every retry; its dead letter is cut short.
	const limit = 600
	url, _ := webhookServer(t, opts, &backend{pub: js, connected: func() bool { return true }, maxEvent: limit})
	ev := events(2, 41)
	big := withField(ev[0], `"padding":"`+strings.Repeat("x", limit)+`"`)
	a := post(t, url, array(big, ev[1]))
	if a.Status != http.StatusAccepted || a.Result.Accepted != 1 || a.Result.Rejected != 1 {
		t.Fatalf("got %d %s; want 202 with accepted 1, rejected 1", a.Status, a.Body)
	}
	if e := a.Result.Errors[0]; e.Index != 0 || e.EventID != eventID(t, ev[0]) || !strings.Contains(e.Error, "at most 600 bytes") {
		t.Errorf("error: got %+v; want index 0, its eventId, and the size limit", e)
	}
	dead := streamMsgs(t, js, stream.DeadLetter)
	if len(dead) != 1 || !bytes.Equal(dead[0].Data, big[:limit]) {
		t.Errorf("DEADLETTER: got %d messages; want one holding the first %d bytes of the event", len(dead), limit)
	}
}

func TestJSONContentType(t *testing.T) {
	tests := []struct {
		ct   string
		want bool
	}{
		{"application/json", true},
		{"application/json;charset=utf-8", true},
		{"application/problem+json", true},
		{"application/json; charset", true}, // a malformed parameter does not change the type
		{"", false},
		{"json", false},
		{"text/json", false},
		{"application/+json", false},
		{"multipart/form-data; boundary=x", false},
	}
	for _, tt := range tests {
		if got := jsonContentType(tt.ct); got != tt.want {
			t.Errorf("jsonContentType(%q): got %v; want %v", tt.ct, got, tt.want)
		}
	}
}

func TestReasonLabel(t *testing.T) {
	tests := []struct{ path, want string }{
		{"", "event"},
		{"eventId", "eventId"},
		{"data.user.age", "data.user.age"},
		{"data.engagement.purchaseAmount", "data.engagement.purchaseAmount"},
		{"data.user.nickname", "other"},
		{`extra["a b"][3]`, "other"},
	}
	for _, tt := range tests {
		if got := reasonLabel(tt.path); got != tt.want {
			t.Errorf("reasonLabel(%q): got %q; want %q", tt.path, got, tt.want)
		}
	}
}

func TestClip(t *testing.T) {
	long := strings.Repeat("é", maxReasonLen)
	got := clip(long)
	if len(got) > maxReasonLen+len("...") || !strings.HasSuffix(got, "...") || !strings.HasPrefix(long, strings.TrimSuffix(got, "...")) {
		t.Errorf("clip(long): got %d bytes %q; want a prefix of at most %d bytes and ...", len(got), got, maxReasonLen)
	}
	if got := clip("a\r\nb"); got != "a  b" {
		t.Errorf("clip: got %q; want %q", got, "a  b")
	}
}
