package stream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/eventpipe/eventpipe/pkg/config"
	"github.com/eventpipe/eventpipe/pkg/natsembed"
	"github.com/eventpipe/eventpipe/pkg/natstest"
)

// TestMain checks that no test leaves a NATS connection or server behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// jetStream connects to a fresh embedded server.
func jetStream(t *testing.T) jetstream.JetStream {
	t.Helper()
	return natstest.Client(t, natstest.Start(t))
}

func streamConfig(t *testing.T, js jetstream.JetStream, name string) jetstream.StreamConfig {
	t.Helper()
	s, err := js.Stream(t.Context(), name)
	if err != nil {
		t.Fatalf("stream %s: %v", name, err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatalf("stream %s info: %v", name, err)
	}
	return info.Config
}

// small keeps stream limits well below any test machine's disk, since the
// server refuses a MaxBytes it could not hold.
var small = Options{
	MaxAge:          time.Hour,
	MaxBytes:        8 << 20,
	DuplicateWindow: 3 * time.Minute,
	Replicas:        1,
	DeadLetterAge:   2 * time.Hour,
	DeadLetterBytes: 4 << 20,
}

func TestEnsureCreates(t *testing.T) {
	js := jetStream(t)
	if err := Ensure(t.Context(), js, small, true); err != nil {
		t.Fatalf("Ensure: %v", err)
	}

	cases := []struct {
		stream     string
		subjects   []string
		retention  jetstream.RetentionPolicy
		discard    jetstream.DiscardPolicy
		maxAge     time.Duration
		maxBytes   int64
		duplicates time.Duration
	}{
		{Events, []string{"events.>"}, jetstream.WorkQueuePolicy, jetstream.DiscardNew, small.MaxAge, small.MaxBytes, small.DuplicateWindow},
		{DeadLetter, []string{"deadletter.>"}, jetstream.LimitsPolicy, jetstream.DiscardOld, small.DeadLetterAge, small.DeadLetterBytes, 2 * time.Minute},
	}
	for _, tc := range cases {
		t.Run(tc.stream, func(t *testing.T) {
			got := streamConfig(t, js, tc.stream)
			checks := []struct {
				name      string
				got, want any
			}{
				{"Subjects", strings.Join(got.Subjects, ","), strings.Join(tc.subjects, ",")},
				{"Retention", got.Retention, tc.retention},
				{"Storage", got.Storage, jetstream.FileStorage},
				{"Discard", got.Discard, tc.discard},
				{"MaxAge", got.MaxAge, tc.maxAge},
				{"MaxBytes", got.MaxBytes, tc.maxBytes},
				{"Duplicates", got.Duplicates, tc.duplicates},
				{"Replicas", got.Replicas, 1},
			}
			for _, c := range checks {
				if c.got != c.want {
					t.Errorf("%s: got %v; want %v", c.name, c.got, c.want)
				}
			}
		})
	}
}

func TestEnsureRoutesSubjects(t *testing.T) {
	js := jetStream(t)
	if err := Ensure(t.Context(), js, small, true); err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	cases := []struct {
		subject string
		want    string
	}{
		{"events.facebook.top", Events},
		{DeadLetterSubject("gateway"), DeadLetter},
		{DeadLetterSubject("fb-collector"), DeadLetter},
	}
	for _, tc := range cases {
		t.Run(tc.subject, func(t *testing.T) {
			ack, err := js.Publish(t.Context(), tc.subject, []byte("{}"))
			if err != nil {
				t.Fatalf("publish: %v", err)
			}
			if ack.Stream != tc.want {
				t.Errorf("stored in: got %s; want %s", ack.Stream, tc.want)
			}
		})
	}
}

func TestEnsureExisting(t *testing.T) {
	changed := small
	changed.MaxAge = 3 * time.Hour
	changed.MaxBytes = 16 << 20
	changed.DuplicateWindow = 5 * time.Minute
	changed.DeadLetterAge = 4 * time.Hour
	changed.DeadLetterBytes = 2 << 20

	cases := []struct {
		name   string
		update bool
		want   Options
	}{
		{"without update left unchanged", false, small},
		{"with update brought in line", true, changed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			js := jetStream(t)
			if err := Ensure(t.Context(), js, small, true); err != nil {
				t.Fatalf("first Ensure: %v", err)
			}
			if err := Ensure(t.Context(), js, changed, tc.update); err != nil {
				t.Fatalf("second Ensure: got %v; want nil", err)
			}
			events, dead := streamConfig(t, js, Events), streamConfig(t, js, DeadLetter)
			checks := []struct {
				name      string
				got, want any
			}{
				{"EVENTS MaxAge", events.MaxAge, tc.want.MaxAge},
				{"EVENTS MaxBytes", events.MaxBytes, tc.want.MaxBytes},
				{"EVENTS Duplicates", events.Duplicates, tc.want.DuplicateWindow},
				{"DEADLETTER MaxAge", dead.MaxAge, tc.want.DeadLetterAge},
				{"DEADLETTER MaxBytes", dead.MaxBytes, tc.want.DeadLetterBytes},
			}
			for _, c := range checks {
				if c.got != c.want {
					t.Errorf("%s: got %v; want %v", c.name, c.got, c.want)
				}
			}
		})
	}
}

func TestEnsureReportsStream(t *testing.T) {
	js := jetStream(t)
	bad := small
	bad.DuplicateWindow = 2 * small.MaxAge // the server refuses a window longer than the age
	err := Ensure(t.Context(), js, bad, true)
	if err == nil || !strings.HasPrefix(err.Error(), "ensure stream EVENTS: ") {
		t.Errorf("Ensure: got %v; want an error starting %q", err, "ensure stream EVENTS: ")
	}
}

func TestReadOptions(t *testing.T) {
	defaults := Options{
		MaxAge:          7 * 24 * time.Hour,
		MaxBytes:        10 << 30,
		DuplicateWindow: 2 * time.Minute,
		Replicas:        1,
		DeadLetterAge:   14 * 24 * time.Hour,
		DeadLetterBytes: 1 << 30,
	}
	cases := []struct {
		name    string
		env     map[string]string
		want    Options
		wantErr string // start of the error, "" for none
	}{
		{name: "defaults", env: nil, want: defaults},
		{
			name: "set",
			env: map[string]string{
				"STREAM_MAX_AGE":          "24h",
				"STREAM_MAX_BYTES":        "-1",
				"STREAM_DUPLICATE_WINDOW": "5m",
				"STREAM_REPLICAS":         "3",
				"DEADLETTER_MAX_AGE":      "72h",
				"DEADLETTER_MAX_BYTES":    "512MiB",
			},
			want: Options{
				MaxAge:          24 * time.Hour,
				MaxBytes:        -1,
				DuplicateWindow: 5 * time.Minute,
				Replicas:        3,
				DeadLetterAge:   72 * time.Hour,
				DeadLetterBytes: 512 << 20,
			},
		},
		{
			name:    "bad max age",
			env:     map[string]string{"STREAM_MAX_AGE": "a week"},
			want:    defaults,
			wantErr: `STREAM_MAX_AGE: must be a positive duration such as 500ms or 30s, got "a week"`,
		},
		{
			name:    "bad replicas",
			env:     map[string]string{"STREAM_REPLICAS": "7"},
			want:    defaults,
			wantErr: `STREAM_REPLICAS: `,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := config.NewReader(config.MapLookup(tc.env))
			if got := ReadOptions(r); got != tc.want {
				t.Errorf("ReadOptions: got %+v; want %+v", got, tc.want)
			}
			err := r.Err()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("Err: got %v; want nil", err)
			case tc.wantErr != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.wantErr)):
				t.Errorf("Err: got %v; want one starting %q", err, tc.wantErr)
			}
		})
	}
}

func TestDeadLetterSubject(t *testing.T) {
	cases := []struct{ origin, want string }{
		{"gateway", "deadletter.gateway"},
		{"fb-collector", "deadletter.fb-collector"},
		{"ttk-collector", "deadletter.ttk-collector"},
	}
	for _, tc := range cases {
		t.Run(tc.origin, func(t *testing.T) {
			if got := DeadLetterSubject(tc.origin); got != tc.want {
				t.Errorf("DeadLetterSubject(%q): got %q; want %q", tc.origin, got, tc.want)
			}
		})
	}
}

// freePort returns a loopback port nothing listens on right now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func TestConnectBeforeServer(t *testing.T) {
	port := freePort(t)
	nc, err := Connect(fmt.Sprintf("nats://127.0.0.1:%d", port), "stream-test", discard())
	if err != nil {
		t.Fatalf("Connect with no server: got %v; want a connection that keeps retrying", err)
	}
	t.Cleanup(nc.Close)
	check := Check(nc)
	if err := check(t.Context()); err == nil || !strings.HasPrefix(err.Error(), "nats ") {
		t.Errorf("Check with no server: got %v; want %q", err, "nats <status>")
	}

	s, err := natsembed.Start(natsembed.Options{Port: port, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatalf("start nats on %d: %v", port, err)
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})

	// The client retries every 500ms; allow many rounds on a loaded machine.
	for range 300 {
		if err = check(t.Context()); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Errorf("Check once the server is up: got %v; want nil", err)
	}
}

func TestCheckAfterClose(t *testing.T) {
	s := natstest.Start(t)
	nc, err := Connect(s.ClientURL(), "stream-test", discard())
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	nc.Close()
	if err := Check(nc)(t.Context()); err == nil {
		t.Errorf("Check on a closed connection: got nil; want an error")
	}
}

var errBoom = errors.New("boom")

func TestRetrySucceeds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		calls := 0
		err := Retry(t.Context(), discard(), "connect", time.Second, func(context.Context) error {
			calls++
			if calls < 4 {
				return errBoom
			}
			return nil
		})
		if err != nil {
			t.Errorf("Retry: got %v; want nil", err)
		}
		if calls != 4 {
			t.Errorf("calls: got %d; want 4 (three failures, then success)", calls)
		}
	})
}

func TestRetryImmediateSuccess(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		calls := 0
		err := Retry(t.Context(), discard(), "connect", time.Second, func(context.Context) error {
			calls++
			return nil
		})
		if err != nil || calls != 1 {
			t.Errorf("Retry: got %v after %d calls; want nil after 1", err, calls)
		}
		if waited := time.Since(start); waited != 0 {
			t.Errorf("waited (fake clock): got %v; want 0", waited)
		}
	})
}

// TestRetryBacksOff runs on synctest's fake clock: the attempts must come
// at a doubling interval capped at maxWait, not in a hot loop.
func TestRetryBacksOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 4*time.Second)
		defer cancel()
		start := time.Now()
		var at []time.Duration
		err := Retry(ctx, discard(), "connect", time.Second, func(context.Context) error {
			at = append(at, time.Since(start))
			return errBoom
		})
		want := []time.Duration{
			0,
			100 * time.Millisecond,
			300 * time.Millisecond,
			700 * time.Millisecond,
			1500 * time.Millisecond, // 800ms wait
			2500 * time.Millisecond, // capped at 1s
			3500 * time.Millisecond,
		}
		if !slices.Equal(at, want) {
			t.Errorf("attempts at (fake clock): got %v; want %v", at, want)
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Retry: got %v; want it to wrap context.DeadlineExceeded", err)
		}
	})
}

func TestRetryContextEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		calls := 0
		err := Retry(ctx, discard(), "set up streams", time.Second, func(context.Context) error {
			calls++
			if calls == 2 {
				cancel()
			}
			return fmt.Errorf("attempt %d: %w", calls, errBoom)
		})
		if calls != 2 {
			t.Errorf("calls: got %d; want 2 (none after the context ended)", calls)
		}
		if err == nil {
			t.Fatalf("Retry: got nil; want an error")
		}
		if !errors.Is(err, context.Canceled) || !errors.Is(err, errBoom) {
			t.Errorf("Retry: got %v; want it to wrap both context.Canceled and the last failure", err)
		}
		for _, want := range []string{"set up streams: ", "attempt 2: boom"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("Retry: got %q; want it to contain %q", err, want)
			}
		}
	})
}

// TestRetryRealClock counts attempts in a short real window: a hot loop
// would make thousands.
func TestRetryRealClock(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 350*time.Millisecond)
	defer cancel()
	calls := 0
	err := Retry(ctx, discard(), "connect", time.Second, func(context.Context) error {
		calls++
		return errBoom
	})
	if calls < 1 || calls > 10 {
		t.Errorf("calls in 350ms: got %d; want a few (backoff from 100ms)", calls)
	}
	if !errors.Is(err, errBoom) {
		t.Errorf("Retry: got %v; want it to wrap the failure", err)
	}
}
