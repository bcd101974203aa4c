package report

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eventpipe/eventpipe/pkg/event"
	"github.com/eventpipe/eventpipe/pkg/eventgen"
	"github.com/eventpipe/eventpipe/pkg/logtest"
)

// reporter is one in-process reporter under test.
type reporter struct {
	url  string
	logs *logtest.Buffer
	// stop cancels Run and returns what it returned.
	stop func() error
}

// startReporter runs Run in-process on 127.0.0.1:0 against databaseURL and
// stops it when the test ends.
func startReporter(t testing.TB, databaseURL string, modify ...func(*Options)) *reporter {
	t.Helper()
	opts := Options{
		Addr:            "127.0.0.1:0",
		DatabaseURL:     databaseURL,
		QueryTimeout:    30 * time.Second,
		DBMaxConns:      4,
		ShutdownTimeout: 10 * time.Second,
	}
	started := make(chan string, 1)
	opts.Started = func(addr string) { started <- addr }
	for _, m := range modify {
		m(&opts)
	}
	logs := &logtest.Buffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, opts, logger, prometheus.NewRegistry()) }()

	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(time.Minute):
				runErr = fmt.Errorf("Run did not return within a minute of cancel")
			}
		})
		return runErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("Run: got %v; want nil", err)
		}
	})
	select {
	case addr := <-started:
		return &reporter{url: "http://" + addr, logs: logs, stop: stop}
	case err := <-done:
		t.Fatalf("Run returned before listening: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("reporter did not start listening within a minute")
	}
	return nil
}

// response is one HTTP answer, body read.
type response struct {
	status int
	header http.Header
	body   []byte
}

func get(t testing.TB, url string, header ...string) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: body}
}

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The test data spans three UTC days from day0.
func day0() time.Time { return time.Date(2025, 6, 10, 0, 0, 0, 0, time.UTC) }

func at(s string) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, s)
	return t
}

// generated returns n valid events from eventgen spread over three days in
// random order, so timestamps arrive out of order.
func generated(seed int64, n int) []event.Event {
	g := eventgen.New(seed)
	r := rand.New(rand.NewPCG(uint64(seed), 7))
	out := make([]event.Event, n)
	for i := range out {
		out[i] = g.Next(day0().Add(time.Duration(r.Int64N(int64(72 * time.Hour)))))
	}
	return out
}

func facebookEvent(id string, ts time.Time, eventType string, u event.User) event.Event {
	stage, _ := event.StageOf(event.Facebook, eventType)
	e := event.Event{ID: id, Timestamp: ts, Source: event.Facebook, FunnelStage: stage, Type: eventType, User: u}
	if stage == event.Top {
		e.Engagement.ActionTime, e.Engagement.Referrer = ts, "newsfeed"
	} else {
		e.Engagement.AdID, e.Engagement.CampaignID = "ad-edge", "camp-edge"
		e.Engagement.ClickPosition, e.Engagement.Device, e.Engagement.Browser = "center", "mobile", "Chrome"
	}
	return e
}

func tiktokEvent(id string, ts time.Time, eventType string, u event.User) event.Event {
	stage, _ := event.StageOf(event.TikTok, eventType)
	e := event.Event{ID: id, Timestamp: ts, Source: event.TikTok, FunnelStage: stage, Type: eventType, User: u}
	if stage == event.Top {
		vid := "vid-edge"
		e.Engagement.WatchTime, e.Engagement.PercentageWatched = 10, 50
		e.Engagement.Device, e.Engagement.Country, e.Engagement.VideoID = "iOS", "Mongolia", &vid
	} else {
		e.Engagement.ActionTime = ts
	}
	return e
}

func withAmount(e event.Event, amount, campaign string) event.Event {
	e.Engagement.PurchaseAmount = &amount
	if campaign != "" {
		e.Engagement.CampaignID = campaign
	}
	return e
}

func fbUser(id string, age int, gender, country, city string) event.User {
	return event.User{ID: id, Name: "Edge Case", Age: age, Gender: gender, Country: country, City: city}
}

func ttUser(id string, followers int64) event.User {
	return event.User{ID: id, Username: "edge", Followers: followers}
}

// edgeCases are the hand-made events whose handling a random sample might
// not exercise.
func edgeCases() []event.Event {
	nomad := fbUser("edge-nomad", 30, "female", "Mongolia", "Ulaanbaatar")
	moved := nomad
	moved.Country, moved.City = "Ukraine", "Kyiv"
	tiers := ttUser("edge-tiers", 1000)
	grown := tiers
	grown.Followers = 1_000_000
	return []event.Event{
		// One user in two countries: once in each, once in total.
		facebookEvent("fb-edge-nomad-1", at("2025-06-10T06:00:00Z"), "ad.view", nomad),
		facebookEvent("fb-edge-nomad-2", at("2025-06-11T06:00:00Z"), "page.like", moved),
		// The ends of the age groups.
		facebookEvent("fb-edge-age-17", at("2025-06-12T01:00:00Z"), "ad.view", fbUser("edge-17", 17, "male", "Kenya", "Nairobi")),
		facebookEvent("fb-edge-age-65", at("2025-06-12T02:00:00Z"), "comment", fbUser("edge-65", 65, "non-binary", "Kenya", "Mombasa")),
		facebookEvent("fb-edge-age-18", at("2025-06-12T03:00:00Z"), "video.view", fbUser("edge-18", 18, "male", "Kenya", "Kisumu")),
		facebookEvent("fb-edge-age-64", at("2025-06-12T04:00:00Z"), "ad.view", fbUser("edge-64", 64, "female", "Kenya", "Nairobi")),
		// The sample amount of events.md, and an amount on an event that
		// is not a transaction: it is no revenue.
		withAmount(facebookEvent("fb-edge-414", at("2025-06-10T18:01:44.759Z"), "checkout.complete",
			fbUser("edge-buyer", 57, "non-binary", "Mongolia", "Lorenland")), "414.29", "camp-Mn15k"),
		withAmount(facebookEvent("fb-edge-click", at("2025-06-10T18:02:00Z"), "ad.click",
			fbUser("edge-buyer", 57, "non-binary", "Mongolia", "Lorenland")), "99.99", "camp-Mn15k"),
		// Two campaigns tied at the top: ordered by id, inserted the other
		// way round.
		withAmount(facebookEvent("fb-edge-tie-b", at("2025-06-11T12:00:00Z"), "checkout.complete",
			fbUser("edge-tie", 40, "male", "Chile", "Santiago")), "50000.00", "camp-tie-b"),
		withAmount(facebookEvent("fb-edge-tie-a", at("2025-06-11T12:00:01Z"), "checkout.complete",
			fbUser("edge-tie", 40, "male", "Chile", "Santiago")), "50000.00", "camp-tie-a"),
		// Either side of a day boundary.
		facebookEvent("fb-edge-midnight", at("2025-06-11T00:00:00Z"), "ad.view", fbUser("edge-night", 33, "female", "Chile", "Santiago")),
		facebookEvent("fb-edge-before-midnight", at("2025-06-10T23:59:59.999Z"), "ad.view", fbUser("edge-night", 33, "female", "Chile", "Santiago")),
		// Follower tier boundaries; one user in two tiers.
		tiktokEvent("ttk-edge-1000", at("2025-06-10T08:00:00Z"), "video.view", tiers),
		tiktokEvent("ttk-edge-1m", at("2025-06-12T08:00:00Z"), "like", grown),
		tiktokEvent("ttk-edge-999", at("2025-06-11T08:00:00Z"), "share", ttUser("edge-999", 999)),
		tiktokEvent("ttk-edge-999999", at("2025-06-11T09:00:00Z"), "comment", ttUser("edge-999999", 999_999)),
		tiktokEvent("ttk-edge-0", at("2025-06-11T10:00:00Z"), "follow", ttUser("edge-0", 0)),
		withAmount(tiktokEvent("ttk-edge-cent", at("2025-06-11T11:00:00Z"), "purchase", ttUser("edge-0", 0)), "0.01", ""),
		withAmount(tiktokEvent("ttk-edge-500", at("2025-06-12T23:59:59.999Z"), "purchase", ttUser("edge-999", 999)), "500.00", ""),
	}
}

// dataset is the events every report test reads: generated traffic plus
// the edge cases.
func dataset() []event.Event {
	return append(generated(42, 6000), edgeCases()...)
}

// insertEvents writes events straight into the events table with COPY, one
// row per event, columns filled as the migration's comments say.
func insertEvents(t testing.TB, databaseURL string, events []event.Event) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, databaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows := make([][]any, len(events))
	for i := range events {
		rows[i], err = eventRow(&events[i])
		if err != nil {
			t.Fatal(err)
		}
	}
	columns := []string{"event_id", "occurred_at", "source", "funnel_stage", "event_type", "user_id",
		"age", "gender", "country", "city", "followers", "device", "campaign_id", "purchase_amount",
		"correlation_id", "payload"}
	n, err := conn.CopyFrom(ctx, pgx.Identifier{"events"}, columns, pgx.CopyFromRows(rows))
	if err != nil {
		t.Fatalf("copy events: %v", err)
	}
	if n != int64(len(events)) {
		t.Fatalf("copied %d events; want %d", n, len(events))
	}
}

func eventRow(e *event.Event) ([]any, error) {
	nullable := func(s string) *string {
		if s == "" {
			return nil
		}
		return &s
	}
	var (
		age                   *int32
		gender, country, city *string
		followers             *int64
		amount                pgtype.Numeric
		u, g                  = e.User, e.Engagement
		device, campaign      = nullable(g.Device), nullable(g.CampaignID)
	)
	switch e.Source {
	case event.Facebook:
		a := int32(u.Age)
		age, gender, country, city = &a, &u.Gender, &u.Country, &u.City
	case event.TikTok:
		followers = &u.Followers
		country = nullable(g.Country)
	}
	if g.PurchaseAmount != nil {
		if err := amount.Scan(*g.PurchaseAmount); err != nil {
			return nil, err
		}
	}
	return []any{e.ID, e.Timestamp, string(e.Source), string(e.FunnelStage), e.Type, u.ID,
		age, gender, country, city, followers, device, campaign, amount,
		"test-corr", string(e.AppendJSON(nil))}, nil
}

// assertJSON compares a response body with the expected document, both
// read as generic JSON, so field names, nulls and absent fields all count.
func assertJSON(t testing.TB, body []byte, want any) {
	t.Helper()
	var got any
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("body is not JSON: %v: %s", err, body)
	}
	raw, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	var wantDoc any
	if err := json.Unmarshal(raw, &wantDoc); err != nil {
		t.Fatal(err)
	}
	if path, g, w, ok := firstDiff("$", got, wantDoc); !ok {
		t.Fatalf("at %s: got %s; want %s\nwhole body: %s", path, compact(g), compact(w), truncate(body))
	}
}

func compact(v any) string {
	b, _ := json.Marshal(v)
	return truncate(b)
}

func truncate(b []byte) string {
	if len(b) > 2000 {
		return string(b[:2000]) + "..."
	}
	return string(b)
}

// firstDiff walks two generic JSON documents and returns the first place
// where they differ.
func firstDiff(path string, got, want any) (string, any, any, bool) {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return path, got, want, false
		}
		keys := make([]string, 0, len(w)+len(g))
		for k := range w {
			keys = append(keys, k)
		}
		for k := range g {
			if _, ok := w[k]; !ok {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			gv, gok := g[k]
			wv, wok := w[k]
			if gok != wok {
				return path + "." + k, presence(gv, gok), presence(wv, wok), false
			}
			if p, a, b, ok := firstDiff(path+"."+k, gv, wv); !ok {
				return p, a, b, false
			}
		}
		return "", nil, nil, true
	case []any:
		g, ok := got.([]any)
		if !ok {
			return path, got, want, false
		}
		for i := range min(len(g), len(w)) {
			if p, a, b, ok := firstDiff(fmt.Sprintf("%s[%d]", path, i), g[i], w[i]); !ok {
				return p, a, b, false
			}
		}
		if len(g) != len(w) {
			return path + ".length", len(g), len(w), false
		}
		return "", nil, nil, true
	default:
		if !reflect.DeepEqual(got, want) {
			return path, got, want, false
		}
		return "", nil, nil, true
	}
}

func presence(v any, ok bool) any {
	if !ok {
		return "<absent>"
	}
	return v
}

// nullable is the expected JSON of an optional string: null when "".
func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// metricValue returns the value of one series in a /metrics exposition,
// and false when the series is not there.
func metricValue(exposition, series string) (string, bool) {
	for line := range strings.SplitSeq(exposition, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return v, true
		}
	}
	return "", false
}

// sortedKeys returns a map's keys in the order cmp gives.
func sortedKeys[K comparable, V any](m map[K]V, cmp func(a, b K) int) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, cmp)
	return keys
}
