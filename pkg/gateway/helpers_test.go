package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/eventpipe/eventpipe/pkg/eventgen"
	"github.com/eventpipe/eventpipe/pkg/natstest"
	"github.com/eventpipe/eventpipe/pkg/stream"
)

// TestMain checks that no test leaves a goroutine behind: an ack waiter,
// a NATS connection or an HTTP server.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testOptions are the gateway's defaults with a loopback port, and a
// duplicate window wide enough for any test.
func testOptions(t testing.TB, natsURL string) Options {
	t.Helper()
	opts, err := LoadOptions(func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatalf("LoadOptions: %v", err)
	}
	opts.Addr = "127.0.0.1:0"
	opts.NATSURL = natsURL
	opts.ShutdownTimeout = 30 * time.Second
	opts.Stream.DuplicateWindow = 10 * time.Minute
	return opts
}

// gw is a gateway running in-process.
type gw struct {
	url  string
	reg  *prometheus.Registry
	stop context.CancelFunc
	done chan error
}

func quietLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.DiscardHandler)
}

// startGateway runs Run with opts until the test ends, and waits until it
// is ready. The cleanup checks that Run returned nil.
func startGateway(t testing.TB, opts Options) *gw {
	t.Helper()
	addr := make(chan string, 1)
	opts.Started = func(a string) { addr <- a }
	ctx, cancel := context.WithCancel(context.Background())
	g := &gw{reg: prometheus.NewRegistry(), stop: cancel, done: make(chan error, 1)}
	go func() { g.done <- Run(ctx, opts, quietLogger(), g.reg) }()
	select {
	case a := <-addr:
		g.url = "http://" + a
	case err := <-g.done:
		cancel()
		t.Fatalf("Run returned before listening: %v", err)
	}
	t.Cleanup(func() {
		if err := g.shutdown(); err != nil {
			t.Errorf("Run: got %v; want nil", err)
		}
	})
	waitFor(t, "gateway ready", func() bool {
		resp, err := http.Get(g.url + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return g
}

// shutdown cancels Run and returns its result; it may be called more than
// once.
func (g *gw) shutdown() error {
	g.stop()
	err, ok := <-g.done
	if !ok {
		return nil
	}
	close(g.done)
	return err
}

// waitFor polls cond until it holds, failing the test after a generous
// deadline: the machine is shared and slow at times.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// answer is a decoded webhook response.
type answer struct {
	Status int
	Header http.Header
	Body   []byte
	Result result // zero unless the body has the result shape
}

// post sends body to the gateway's webhook with the given headers
// (Content-Type application/json unless set).
func post(t testing.TB, url string, body []byte, headers ...string) answer {
	t.Helper()
	return postReader(t, url, bytes.NewReader(body), int64(len(body)), headers...)
}

func postReader(t testing.TB, url string, body io.Reader, length int64, headers ...string) answer {
	t.Helper()
	a, err := doPost(url, body, length, headers...)
	if err != nil {
		t.Fatalf("POST /webhook: %v", err)
	}
	return a
}

// doPost is postReader for goroutines other than the test's.
func doPost(url string, body io.Reader, length int64, headers ...string) (answer, error) {
	req, err := http.NewRequest(http.MethodPost, url+"/webhook", body)
	if err != nil {
		return answer{}, err
	}
	req.ContentLength = length
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
			continue
		}
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	a := answer{Status: resp.StatusCode, Header: resp.Header}
	if a.Body, err = io.ReadAll(resp.Body); err != nil {
		return answer{}, fmt.Errorf("read response: %w", err)
	}
	_ = json.Unmarshal(a.Body, &a.Result)
	return a, nil
}

// events returns n valid encoded events, distinct for each seed.
func events(n int, seed int64) [][]byte {
	g := eventgen.New(seed)
	ts := time.Date(2025, 6, 10, 18, 0, 0, 0, time.UTC)
	out := make([][]byte, n)
	for i := range out {
		e := g.Next(ts.Add(time.Duration(i) * time.Millisecond))
		out[i] = e.AppendJSON(nil)
	}
	return out
}

// array encodes raw events as a JSON array body.
func array(raws ...[]byte) []byte {
	var b bytes.Buffer
	b.WriteByte('[')
	for i, r := range raws {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(r)
	}
	b.WriteByte(']')
	return b.Bytes()
}

// samples returns the events.md samples from testdata, one per line.
func samples(t testing.TB) [][]byte {
	t.Helper()
	f, err := os.Open("testdata/samples.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out [][]byte
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := bytes.TrimSpace(sc.Bytes()); len(line) > 0 {
			out = append(out, bytes.Clone(line))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// eventID returns the eventId of an encoded event.
func eventID(t testing.TB, raw []byte) string {
	t.Helper()
	var e struct {
		EventID string `json:"eventId"`
	}
	if err := json.Unmarshal(raw, &e); err != nil {
		t.Fatalf("decode event: %v", err)
	}
	return e.EventID
}

// natsClient connects a test client to s, closed when the test ends.
func natsClient(t testing.TB, s *server.Server) jetstream.JetStream {
	t.Helper()
	return natstest.Client(t, s)
}

// streamMsgs returns every message stored in the named stream, in order.
func streamMsgs(t testing.TB, js jetstream.JetStream, name string) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatalf("stream %s: %v", name, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatalf("stream %s info: %v", name, err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatalf("stream %s message %d: %v", name, seq, err)
		}
		out = append(out, m)
	}
	return out
}

// streamCount returns how many messages the named stream holds.
func streamCount(t testing.TB, js jetstream.JetStream, name string) uint64 {
	t.Helper()
	s, err := js.Stream(context.Background(), name)
	if err != nil {
		t.Fatalf("stream %s: %v", name, err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatalf("stream %s info: %v", name, err)
	}
	return info.State.Msgs
}

// scrape returns the gateway's /metrics samples as "name{labels}" -> value,
// labels as Prometheus writes them (sorted by name).
func scrape(t testing.TB, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	out := make(map[string]float64)
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// ensureStreams creates the streams on s the way the gateway does, for
// tests that drive the webhook without Run.
func ensureStreams(t testing.TB, js jetstream.JetStream, o stream.Options) {
	t.Helper()
	if err := stream.Ensure(context.Background(), js, o, true); err != nil {
		t.Fatal(err)
	}
}
