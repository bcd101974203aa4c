package gateway

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eventpipe/eventpipe/pkg/httpserver"
	"github.com/eventpipe/eventpipe/pkg/natstest"
	"github.com/eventpipe/eventpipe/pkg/stream"
)

// fuzzMaxBody is small enough for the fuzzer to reach 413.
const fuzzMaxBody = 8 << 10

// FuzzWebhookBody drives the whole webhook with arbitrary bodies against a
// real embedded JetStream (seeds in testdata/fuzz/FuzzWebhookBody). It
// checks that the webhook never panics (recovery would answer 500), that
// the status is 202, 400 or 413, and that the answer's counts are what
// reached the streams: accepted minus duplicates new events, one dead
// letter per rejected event, up to the per-request cap.
func FuzzWebhookBody(f *testing.F) {
	ns := natstest.Start(f)
	js := natsClient(f, ns)
	opts := testOptions(f, ns.ClientURL())
	opts.MaxBodyBytes = fuzzMaxBody
	ensureStreams(f, js, opts.Stream)
	wh, err := newWebhook(opts, prometheus.NewRegistry())
	if err != nil {
		f.Fatal(err)
	}
	wh.backend.Store(&backend{pub: js, connected: func() bool { return true }, maxEvent: 4 << 10})
	engine := httpserver.NewEngine(quietLogger(), httpserver.NewReadiness(), prometheus.NewRegistry())
	wh.register(engine)

	f.Fuzz(func(t *testing.T, body []byte) {
		events, deadLetters := streamCount(t, js, stream.Events), streamCount(t, js, stream.DeadLetter)
		req := httptest.NewRequest(http.MethodPost, "/webhook", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		engine.ServeHTTP(rec, req)

		switch rec.Code {
		case http.StatusAccepted, http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		default:
			t.Fatalf("got %d %s; want 202, 400 or 413", rec.Code, rec.Body)
		}
		var res struct {
			result
			Accepted *int `json:"accepted"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil {
			t.Fatalf("response %s: %v", rec.Body, err)
		}
		if res.Accepted == nil {
			// The common error body: nothing was read as events.
			res.result = result{}
		} else {
			res.result.Accepted = *res.Accepted
		}
		if rec.Code == http.StatusAccepted && (res.Accepted == nil || res.Error != nil) {
			t.Errorf("202 %s: want counts and no error", rec.Body)
		}
		if len(res.Errors) > opts.MaxErrorsReported || len(res.Errors) > res.Rejected {
			t.Errorf("%d errors listed for %d rejected; want at most min(rejected, %d)", len(res.Errors), res.Rejected, opts.MaxErrorsReported)
		}
		if res.Duplicates > res.result.Accepted {
			t.Errorf("%d duplicates of %d accepted", res.Duplicates, res.result.Accepted)
		}
		gotEvents := streamCount(t, js, stream.Events) - events
		gotDeadLetters := streamCount(t, js, stream.DeadLetter) - deadLetters
		if want := uint64(res.result.Accepted - res.Duplicates); gotEvents != want {
			t.Errorf("EVENTS grew by %d; want accepted %d - duplicates %d (answer %s)", gotEvents, res.result.Accepted, res.Duplicates, rec.Body)
		}
		if want := uint64(min(res.Rejected, opts.MaxDeadLettersPerRequest)); gotDeadLetters != want {
			t.Errorf("DEADLETTER grew by %d; want rejected %d capped at %d (answer %s)",
				gotDeadLetters, res.Rejected, opts.MaxDeadLettersPerRequest, rec.Body)
		}
	})
}
