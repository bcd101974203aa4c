package gateway

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eventpipe/eventpipe/pkg/config"
	"github.com/eventpipe/eventpipe/pkg/httpserver"
	"github.com/eventpipe/eventpipe/pkg/logtest"
	"github.com/eventpipe/eventpipe/pkg/natstest"
	"github.com/eventpipe/eventpipe/pkg/stream"
)

const (
	testToken  = "tok-0123456789abcdef-SECRET"
	testSecret = "hmac-secret-0123456789-SECRET"
)

// sign returns the X-Signature-256 value of body under secret.
func sign(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// authServer serves the webhook over httptest against a real JetStream,
// logging at debug level into the returned buffer.
func authServer(t *testing.T, token, secret string) (url string, logs *logtest.Buffer, count func() (uint64, uint64)) {
	t.Helper()
	ns := natstest.Start(t)
	js := natsClient(t, ns)
	opts := testOptions(t, ns.ClientURL())
	opts.WebhookToken = token
	opts.WebhookHMACSecret = secret
	ensureStreams(t, js, opts.Stream)

	reg := prometheus.NewRegistry()
	wh, err := newWebhook(opts, reg)
	if err != nil {
		t.Fatal(err)
	}
	wh.backend.Store(&backend{pub: js, connected: func() bool { return true }, maxEvent: 1 << 20})
	logs = &logtest.Buffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	engine := httpserver.NewEngine(logger, httpserver.NewReadiness(), reg)
	wh.register(engine)
	srv := httptest.NewServer(engine)
	t.Cleanup(srv.Close)
	return srv.URL, logs, func() (uint64, uint64) {
		return streamCount(t, js, stream.Events), streamCount(t, js, stream.DeadLetter)
	}
}

// checkUnauthorized checks a 401 with the common error body.
func checkUnauthorized(t *testing.T, a answer, wantChallenge bool) {
	t.Helper()
	if a.Status != http.StatusUnauthorized {
		t.Fatalf("got %d %s; want 401", a.Status, a.Body)
	}
	if !strings.Contains(string(a.Body), `{"error":{"code":"unauthorized"`) {
		t.Errorf("body %s: want the common error body with code unauthorized", a.Body)
	}
	if got := a.Header.Get("WWW-Authenticate"); wantChallenge != strings.HasPrefix(got, "Bearer ") {
		t.Errorf("WWW-Authenticate got %q; want a Bearer challenge: %v", got, wantChallenge)
	}
}

func TestLoadOptionsWebhookAuth(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		wantErr string // the setting named, "" for none
	}{
		{"both off by default", nil, ""},
		{"both set", map[string]string{"WEBHOOK_TOKEN": testToken, "WEBHOOK_HMAC_SECRET": testSecret}, ""},
		{"token too short", map[string]string{"WEBHOOK_TOKEN": "short-secret"}, "WEBHOOK_TOKEN"},
		{"token with a space", map[string]string{"WEBHOOK_TOKEN": "0123456789 SECRET"}, "WEBHOOK_TOKEN"},
		{"token not ASCII", map[string]string{"WEBHOOK_TOKEN": "0123456789é-SECRET"}, "WEBHOOK_TOKEN"},
		{"secret too short", map[string]string{"WEBHOOK_HMAC_SECRET": "short-SECRET"}, "WEBHOOK_HMAC_SECRET"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := LoadOptions(config.MapLookup(tt.env))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("LoadOptions: %v", err)
				}
				if o.WebhookToken != tt.env["WEBHOOK_TOKEN"] || o.WebhookHMACSecret != tt.env["WEBHOOK_HMAC_SECRET"] {
					t.Errorf("got token %q secret %q; want %q %q", o.WebhookToken, o.WebhookHMACSecret,
						tt.env["WEBHOOK_TOKEN"], tt.env["WEBHOOK_HMAC_SECRET"])
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %v; want an error naming %s", err, tt.wantErr)
			}
			if v := tt.env[tt.wantErr]; strings.Contains(err.Error(), v) {
				t.Errorf("error %q holds the value %q", err, v)
			}
		})
	}
}

func TestWebhookToken(t *testing.T) {
	url, logs, count := authServer(t, testToken, "")
	body := array(events(3, 301)...)
	// The series exists before the first refusal, like every other code.
	if v, ok := scrape(t, url)[`gateway_requests_total{code="401"}`]; !ok || v != 0 {
		t.Errorf(`gateway_requests_total{code="401"} before any request: got %v (present %v); want 0`, v, ok)
	}

	tests := []struct {
		name    string
		headers []string
		want    int
	}{
		{"missing", nil, http.StatusUnauthorized},
		{"wrong bearer", []string{"Authorization", "Bearer " + testToken + "x"}, http.StatusUnauthorized},
		{"bearer prefix of the token", []string{"Authorization", "Bearer " + testToken[:16]}, http.StatusUnauthorized},
		{"token without the Bearer scheme", []string{"Authorization", testToken}, http.StatusUnauthorized},
		{"basic scheme", []string{"Authorization", "Basic " + testToken}, http.StatusUnauthorized},
		{"wrong X-Webhook-Token", []string{"X-Webhook-Token", strings.ToUpper(testToken)}, http.StatusUnauthorized},
		{"empty X-Webhook-Token", []string{"X-Webhook-Token", " "}, http.StatusUnauthorized},
		{"right token in the wrong header", []string{"X-Api-Key", testToken}, http.StatusUnauthorized},
		{"right bearer", []string{"Authorization", "Bearer " + testToken}, http.StatusAccepted},
		{"right bearer, scheme in lower case", []string{"Authorization", "bearer " + testToken}, http.StatusAccepted},
		{"right X-Webhook-Token", []string{"X-Webhook-Token", testToken}, http.StatusAccepted},
		{"wrong bearer, right X-Webhook-Token", []string{"Authorization", "Bearer nope", "X-Webhook-Token", testToken}, http.StatusAccepted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, _ := count()
			a := post(t, url, body, tt.headers...)
			if tt.want == http.StatusUnauthorized {
				checkUnauthorized(t, a, true)
				if after, _ := count(); after != before {
					t.Errorf("EVENTS got %d messages after a 401; want %d", after, before)
				}
				return
			}
			if a.Status != tt.want || a.Result.Accepted != 3 {
				t.Fatalf("got %d %s; want %d with 3 accepted", a.Status, a.Body, tt.want)
			}
		})
	}
	// Authentication comes first: a 401 says nothing about the body.
	a := post(t, url, []byte("not json"), "Content-Type", "text/plain")
	checkUnauthorized(t, a, true)

	if events, deadLetters := count(); events != 3 || deadLetters != 0 {
		t.Errorf("streams got %d events, %d dead letters; want 3 (the same body accepted 4 times), 0", events, deadLetters)
	}
	m := scrape(t, url)
	if got := m[`gateway_requests_total{code="401"}`]; got != 9 {
		t.Errorf(`gateway_requests_total{code="401"} got %v; want 9`, got)
	}
	checkLogsHide(t, logs.String(), 13, testToken)
}

// checkLogsHide checks that the log holds a line for each of n requests,
// the failed ones saying why, and none of the secrets.
func checkLogsHide(t *testing.T, logs string, n int, secrets ...string) {
	t.Helper()
	if got := strings.Count(logs, `"path":"/webhook"`); got != n {
		t.Errorf("log has %d request lines; want %d:\n%s", got, n, logs)
	}
	if !strings.Contains(logs, `"auth_error"`) {
		t.Errorf("log does not say why requests were refused:\n%s", logs)
	}
	for _, s := range secrets {
		if strings.Contains(logs, s) {
			t.Errorf("log holds the secret %q:\n%s", s, logs)
		}
	}
}

func TestWebhookSignature(t *testing.T) {
	url, logs, count := authServer(t, "", testSecret)
	body := array(events(3, 302)...)
	good := sign(testSecret, body)

	tests := []struct {
		name      string
		signature string
	}{
		{"missing", ""},
		{"another secret", sign(testSecret+"x", body)},
		{"another body", sign(testSecret, append(bytes.Clone(body), ' '))},
		{"no sha256= prefix", strings.TrimPrefix(good, "sha256=")},
		{"sha1 scheme", "sha1=" + strings.TrimPrefix(good, "sha256=")},
		{"short", good[:len(good)-2]},
		{"long", good + "00"},
		{"not hex", good[:len(good)-1] + "g"},
		{"the secret itself", testSecret},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkUnauthorized(t, post(t, url, body, "X-Signature-256", tt.signature), false)
		})
	}
	if events, deadLetters := count(); events != 0 || deadLetters != 0 {
		t.Fatalf("streams got %d events, %d dead letters after 401s; want nothing published", events, deadLetters)
	}

	t.Run("right", func(t *testing.T) {
		a := post(t, url, body, "X-Signature-256", good)
		if a.Status != http.StatusAccepted || a.Result.Accepted != 3 {
			t.Fatalf("got %d %s; want 202 with 3 accepted", a.Status, a.Body)
		}
	})
	t.Run("right, hex in upper case", func(t *testing.T) {
		a := post(t, url, body, "X-Signature-256", "sha256="+strings.ToUpper(strings.TrimPrefix(good, "sha256=")))
		if a.Status != http.StatusAccepted || a.Result.Duplicates != 3 {
			t.Fatalf("got %d %s; want 202 with 3 duplicates", a.Status, a.Body)
		}
	})
	t.Run("right, 50,000 events", func(t *testing.T) {
		big := array(events(50000, 303)...)
		a := post(t, url, big, "X-Signature-256", sign(testSecret, big))
		if a.Status != http.StatusAccepted || a.Result.Accepted != 50000 {
			t.Fatalf("got %d %.300s; want 202 with 50000 accepted", a.Status, a.Body)
		}
	})
	t.Run("right, invalid events still rejected one by one", func(t *testing.T) {
		mixed := array(events(1, 304)[0], []byte(`{"eventId":"x"}`))
		a := post(t, url, mixed, "X-Signature-256", sign(testSecret, mixed))
		if a.Status != http.StatusAccepted || a.Result.Accepted != 1 || a.Result.Rejected != 1 {
			t.Fatalf("got %d %s; want 202 with 1 accepted, 1 rejected", a.Status, a.Body)
		}
	})
	if events, deadLetters := count(); events != 50004 || deadLetters != 1 {
		t.Errorf("streams got %d events, %d dead letters; want 50004, 1", events, deadLetters)
	}
	m := scrape(t, url)
	if got := m[`gateway_requests_total{code="401"}`]; got != float64(len(tests)) {
		t.Errorf(`gateway_requests_total{code="401"} got %v; want %d`, got, len(tests))
	}
	checkLogsHide(t, logs.String(), len(tests)+4, testSecret, strings.TrimPrefix(good, "sha256="))
}

func TestWebhookSignatureBodyLimit(t *testing.T) {
	ns := natstest.Start(t)
	js := natsClient(t, ns)
	opts := testOptions(t, ns.ClientURL())
	opts.WebhookHMACSecret = testSecret
	opts.MaxBodyBytes = 1000
	ensureStreams(t, js, opts.Stream)
	url, _ := webhookServer(t, opts, &backend{pub: js, connected: func() bool { return true }, maxEvent: 1 << 20})

	body := array(events(10, 305)...)
	// Without a Content-Length the limit is found while hashing.
	a := postReader(t, url, struct{ *bytes.Reader }{bytes.NewReader(body)}, -1, "X-Signature-256", sign(testSecret, body))
	if a.Status != http.StatusRequestEntityTooLarge || !strings.Contains(string(a.Body), `"code":"body_too_large"`) {
		t.Fatalf("got %d %s; want 413 body_too_large", a.Status, a.Body)
	}
	if n := streamCount(t, js, stream.Events); n != 0 {
		t.Errorf("EVENTS got %d messages; want 0", n)
	}
}

func TestWebhookTokenAndSignature(t *testing.T) {
	url, logs, count := authServer(t, testToken, testSecret)
	body := array(events(2, 306)...)
	good := sign(testSecret, body)

	tests := []struct {
		name          string
		headers       []string
		want          int
		wantChallenge bool
	}{
		{"neither", nil, http.StatusUnauthorized, true},
		{"token only", []string{"X-Webhook-Token", testToken}, http.StatusUnauthorized, false},
		{"signature only", []string{"X-Signature-256", good}, http.StatusUnauthorized, true},
		{"right token, wrong signature", []string{"Authorization", "Bearer " + testToken, "X-Signature-256", sign("another-secret-0123456789", body)}, http.StatusUnauthorized, false},
		{"wrong token, right signature", []string{"Authorization", "Bearer " + testSecret, "X-Signature-256", good}, http.StatusUnauthorized, true},
		{"both right", []string{"Authorization", "Bearer " + testToken, "X-Signature-256", good}, http.StatusAccepted, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := post(t, url, body, tt.headers...)
			if tt.want == http.StatusUnauthorized {
				checkUnauthorized(t, a, tt.wantChallenge)
				if events, deadLetters := count(); events != 0 || deadLetters != 0 {
					t.Fatalf("streams got %d events, %d dead letters after 401s; want nothing published", events, deadLetters)
				}
				return
			}
			if a.Status != tt.want || a.Result.Accepted != 2 {
				t.Fatalf("got %d %s; want %d with 2 accepted", a.Status, a.Body, tt.want)
			}
		})
	}
	checkLogsHide(t, logs.String(), len(tests), testToken, testSecret, strings.TrimPrefix(good, "sha256="))
}
