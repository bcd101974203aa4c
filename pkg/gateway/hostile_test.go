package gateway

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventpipe/eventpipe/pkg/natstest"
)

// sampleID is the eventId of the first line of testdata/samples.jsonl.
const sampleID = "fb-3e8f395a-661a-4dc5-b868-1b571b78e33f"

// hostileEvent returns the first sample with a fresh eventId and old
// replaced by new.
func hostileEvent(t *testing.T, id int, old, new string) []byte {
	t.Helper()
	raw := samples(t)[0]
	if !bytes.Contains(raw, []byte(old)) {
		t.Fatalf("sample has no %q", old)
	}
	raw = bytes.Replace(raw, []byte(old), []byte(new), 1)
	return bytes.Replace(raw, []byte(sampleID), fmt.Appendf(nil, "fb-hostile-%d", id), 1)
}

// repeat returns open, then item n times separated by commas, then close.
func repeat(open, item, close string, n int) []byte {
	var b bytes.Buffer
	b.Grow(len(open) + n*(len(item)+1) + len(close))
	b.WriteString(open)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(item)
	}
	b.WriteString(close)
	return b.Bytes()
}

// checkUnharmed checks that the gateway still takes a normal request.
func checkUnharmed(t *testing.T, url string, seed int64) {
	t.Helper()
	a := post(t, url, array(events(2, seed)...))
	if a.Status != http.StatusAccepted || a.Result.Accepted != 2 {
		t.Fatalf("normal request afterwards: got %d %s; want 202 with 2 accepted", a.Status, a.Body)
	}
}

// hostileMaxBody is the body limit of the hostile tests: room for a 10 MB
// field, small enough to exceed cheaply.
const hostileMaxBody = 16 << 20

func TestWebhookHostileBodies(t *testing.T) {
	ns := natstest.Start(t)
	opts := testOptions(t, ns.ClientURL())
	opts.MaxBodyBytes = hostileMaxBody
	g := startGateway(t, opts)

	valid := func() []byte { return events(1, 700)[0] }
	tests := []struct {
		name   string
		body   func(t *testing.T) []byte
		chunk  bool // send without a Content-Length
		status int
		code   string // the response's error code; "" for none
		// accepted and rejected are checked on answers with the result
		// shape; want is in the body.
		accepted, rejected int
		want               string
	}{
		{
			name:   "over the limit, announced",
			body:   func(*testing.T) []byte { return repeat("[", "1", "]", hostileMaxBody/2+1) },
			status: http.StatusRequestEntityTooLarge, code: codeTooLarge, want: "larger than 16777216 bytes",
		},
		{
			name:   "over the limit, chunked",
			body:   func(*testing.T) []byte { return []byte(`["` + strings.Repeat("x", hostileMaxBody) + `"]`) },
			chunk:  true,
			status: http.StatusRequestEntityTooLarge, code: codeTooLarge, want: "larger than 16777216 bytes",
		},
		{
			name:   "100,000-deep array",
			body:   func(*testing.T) []byte { return bytes.Repeat([]byte("["), 100000) },
			status: http.StatusBadRequest, code: codeInvalidBody, want: "exceeded max depth 10000",
		},
		{
			name: "100,000-deep value inside an event",
			body: func(t *testing.T) []byte {
				deep := strings.Repeat(`{"a":`, 100000) + "1" + strings.Repeat("}", 100000)
				return array(hostileEvent(t, 1, `"age":57`, `"age":57,"deep":`+deep))
			},
			status: http.StatusBadRequest, code: codeInvalidBody, want: "exceeded max depth 10000",
		},
		{
			name: "5,000-deep value inside an event, under the body's depth limit",
			body: func(t *testing.T) []byte {
				deep := strings.Repeat("[", 5000) + strings.Repeat("]", 5000)
				return array(valid(), hostileEvent(t, 2, `"age":57`, `"age":57,"deep":`+deep))
			},
			status: http.StatusAccepted, accepted: 1, rejected: 1, want: `"index":1`,
		},
		{
			name: "invalid UTF-8 in a string",
			body: func(t *testing.T) []byte {
				return array(valid(), hostileEvent(t, 3, "Henry Auer", "Henry \xff\xfe Auer"))
			},
			status: http.StatusAccepted, accepted: 1, rejected: 1, want: "UTF-8",
		},
		{
			name:   "invalid UTF-8 between events",
			body:   func(t *testing.T) []byte { return []byte("[" + string(valid()) + ",\xff]") },
			status: http.StatusBadRequest, code: codeInvalidBody, accepted: 1, want: "at event index 1",
		},
		{
			// JSON forbids raw control characters in strings: the body
			// is malformed from that event on.
			name:   "raw NUL in a string",
			body:   func(t *testing.T) []byte { return array(valid(), hostileEvent(t, 4, "Henry Auer", "Henry \x00 Auer")) },
			status: http.StatusBadRequest, code: codeInvalidBody, accepted: 1, want: "at event index 1",
		},
		{
			name: "escaped NUL in a string",
			body: func(t *testing.T) []byte {
				return array(valid(), hostileEvent(t, 5, "Henry Auer", `Henry \u0000 Auer`))
			},
			status: http.StatusAccepted, accepted: 1, rejected: 1, want: "data.user.name",
		},
		{
			name:   "raw NUL between events",
			body:   func(t *testing.T) []byte { return []byte("[" + string(valid()) + ",\x00]") },
			status: http.StatusBadRequest, code: codeInvalidBody, accepted: 1, want: "at event index 1",
		},
		{
			name: "10 MB string field",
			body: func(t *testing.T) []byte {
				return array(valid(), hostileEvent(t, 6, "Henry Auer", strings.Repeat("x", 10<<20)))
			},
			status: http.StatusAccepted, accepted: 1, rejected: 1, want: "must be at most",
		},
		{
			name:   "age 1e309",
			body:   func(t *testing.T) []byte { return array(valid(), hostileEvent(t, 7, `"age":57`, `"age":1e309`)) },
			status: http.StatusAccepted, accepted: 1, rejected: 1, want: "data.user.age",
		},
		{
			name:   "age -1e309",
			body:   func(t *testing.T) []byte { return array(hostileEvent(t, 8, `"age":57`, `"age":-1e309`)) },
			status: http.StatusBadRequest, code: codeInvalidEvents, rejected: 1, want: "data.user.age",
		},
		{
			name: "duplicated key",
			body: func(t *testing.T) []byte {
				return array(valid(), hostileEvent(t, 9, `"age":57`, `"age":57,"age":30`))
			},
			status: http.StatusAccepted, accepted: 1, rejected: 1, want: "duplicate key",
		},
		{
			name: "duplicated eventId key",
			body: func(t *testing.T) []byte {
				return array(hostileEvent(t, 10, `"source"`, `"eventId":"fb-other","source"`))
			},
			status: http.StatusBadRequest, code: codeInvalidEvents, rejected: 1, want: "duplicate key",
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := tt.body(t)
			var a answer
			if tt.chunk {
				// Hiding the reader's type keeps net/http from setting a
				// Content-Length.
				a = postReader(t, g.url, struct{ io.Reader }{bytes.NewReader(body)}, -1)
			} else {
				a = post(t, g.url, body)
			}
			if a.Status != tt.status {
				t.Fatalf("got %d %.500s; want %d", a.Status, a.Body, tt.status)
			}
			if tt.code != "" && !bytes.Contains(a.Body, []byte(`"code":"`+tt.code+`"`)) {
				t.Errorf("body %.500s: want error code %s", a.Body, tt.code)
			}
			if tt.code == "" && bytes.Contains(a.Body, []byte(`"code"`)) {
				t.Errorf("body %.500s: want no error", a.Body)
			}
			if !bytes.Contains(a.Body, []byte(tt.want)) {
				t.Errorf("body %.500s: want %q in it", a.Body, tt.want)
			}
			if a.Result.Accepted != tt.accepted || a.Result.Rejected != tt.rejected {
				t.Errorf("got %d accepted, %d rejected; want %d, %d", a.Result.Accepted, a.Result.Rejected, tt.accepted, tt.rejected)
			}
			if n := len(a.Result.Errors); n > opts.MaxErrorsReported {
				t.Errorf("response lists %d errors; want at most MAX_ERRORS_REPORTED %d", n, opts.MaxErrorsReported)
			}
			checkUnharmed(t, g.url, int64(800+i))
		})
	}
}

// heapPeak samples the heap in use until stop is closed and then returns
// the largest value seen.
func heapPeak(stop <-chan struct{}) <-chan uint64 {
	out := make(chan uint64, 1)
	go func() {
		var peak uint64
		var ms runtime.MemStats
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapAlloc)
			select {
			case <-stop:
				out <- peak
				return
			case <-tick.C:
			}
		}
	}()
	return out
}

func TestWebhookMillionItemsMemory(t *testing.T) {
	ns := natstest.Start(t)
	g := startGateway(t, testOptions(t, ns.ClientURL()))

	for _, item := range []string{"1", "{}"} {
		t.Run(item, func(t *testing.T) {
			body := repeat("[", item, "]", 1000000)
			// Collecting often keeps garbage out of the peak, so it shows
			// what is live.
			defer debug.SetGCPercent(debug.SetGCPercent(10))
			runtime.GC()
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			stop := make(chan struct{})
			peak := heapPeak(stop)
			a := post(t, g.url, body)
			close(stop)
			if a.Status != http.StatusBadRequest || a.Result.Rejected != 1000000 || a.Result.Accepted != 0 {
				t.Fatalf("got %d %.300s; want 400 with 1000000 rejected", a.Status, a.Body)
			}
			if a.Result.Error == nil || a.Result.Error.Code != codeInvalidEvents || a.Result.Error.Message != "every event is invalid" {
				t.Errorf("error got %+v; want invalid_events, every event is invalid", a.Result.Error)
			}
			if len(a.Result.Errors) != 100 || a.Result.Errors[99].Index != 99 {
				t.Errorf("response lists %d errors; want the first 100 (MAX_ERRORS_REPORTED)", len(a.Result.Errors))
			}
			// The body is streamed and every rejection is dead-lettered
			// with at most PUBLISH_MAX_PENDING in flight, so the heap
			// grows by a bounded amount, not per item: keeping even 40
			// bytes per item would exceed the limit. The 32 MiB are room
			// for the in-process NATS server's block caches.
			growth := int64(<-peak) - int64(before.HeapAlloc)
			if limit := int64(4*len(body)) + 32<<20; growth > limit {
				t.Errorf("heap grew by %d bytes for a %d-byte body; want at most %d", growth, len(body), limit)
			}
			t.Logf("body %d bytes, heap growth %d bytes", len(body), growth)
			checkUnharmed(t, g.url, 900)
		})
	}
}

func TestWebhookSlowHeaders(t *testing.T) {
	ns := natstest.Start(t)
	g := startGateway(t, testOptions(t, ns.ClientURL()))

	conn, err := net.Dial("tcp", strings.TrimPrefix(g.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "POST /webhook HTTP/1.1\r\nHost: x\r\n"); err != nil {
		t.Fatal(err)
	}
	// A header line a second, never ending the headers: the server's
	// ReadHeaderTimeout (10s, httpserver.Start) must close the connection.
	closed := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, conn)
		closed <- err
	}()
	deadline := time.After(60 * time.Second)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case err := <-closed:
			// EOF (nil from io.Copy) or a reset: either way the server
			// hung up.
			t.Logf("server closed the connection after %d header lines (read: %v)", i, err)
			checkUnharmed(t, g.url, 901)
			return
		case <-deadline:
			t.Fatal("the server kept a connection trickling headers open for a minute")
		case <-tick.C:
			if _, err := fmt.Fprintf(conn, "X-Trickle-%d: x\r\n", i); err != nil {
				var ne net.Error
				if errors.As(err, &ne) || errors.Is(err, io.ErrClosedPipe) || strings.Contains(err.Error(), "reset") || strings.Contains(err.Error(), "broken pipe") {
					continue // the read side reports the close
				}
				t.Fatalf("write: %v", err)
			}
		}
	}
}

func TestWebhookManyConnections(t *testing.T) {
	ns := natstest.Start(t)
	opts := testOptions(t, ns.ClientURL())
	g := startGateway(t, opts)

	const n = 500
	// One connection per request: the default transport would otherwise
	// reuse a few.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, MaxConnsPerHost: 0}, Timeout: 2 * time.Minute}
	defer client.CloseIdleConnections()
	var wg sync.WaitGroup
	var accepted, unavailable atomic.Int64
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			body := array(events(1, int64(10000+i))...)
			req, err := http.NewRequest(http.MethodPost, g.url+"/webhook", bytes.NewReader(body))
			if err != nil {
				errs <- err
				return
			}
			req.Header.Set("Content-Type", "application/json")
			resp, err := client.Do(req)
			if err != nil {
				errs <- err
				return
			}
			_, _ = io.Copy(io.Discard, bufio.NewReader(resp.Body))
			resp.Body.Close()
			switch resp.StatusCode {
			case http.StatusAccepted:
				accepted.Add(1)
			case http.StatusServiceUnavailable:
				unavailable.Add(1)
			default:
				errs <- fmt.Errorf("request %d: got %d; want 202 or 503", i, resp.StatusCode)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := accepted.Load() + unavailable.Load(); got != n {
		t.Errorf("answered 202 or 503: got %d; want %d", got, n)
	}
	t.Logf("%d accepted, %d unavailable", accepted.Load(), unavailable.Load())
	checkUnharmed(t, g.url, 902)
}
