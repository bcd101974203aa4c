package event

import (
	"bytes"
	"encoding/json"
	"reflect"
	"slices"
	"testing"
	"time"
)

// The publisher's own field order is what AppendJSON writes, so these
// samples come back byte for byte.
func TestAppendJSONVerbatim(t *testing.T) {
	s := samples(t)
	for _, i := range []int{fbTop, ttBottom, ttTop} {
		t.Run(baseNames[i], func(t *testing.T) {
			e := checkParse(t, s[i], "")
			if got := e.AppendJSON(nil); !bytes.Equal(got, s[i]) {
				t.Fatalf("got %s; want %s", got, s[i])
			}
		})
	}
}

func TestAppendJSONAppends(t *testing.T) {
	e := checkParse(t, samples(t)[ttTop], "")
	got := e.AppendJSON([]byte("prefix\n"))
	rest, ok := bytes.CutPrefix(got, []byte("prefix\n"))
	if !ok || !json.Valid(rest) {
		t.Fatalf("got %q; want prefix\\n followed by the event", got)
	}
}

func TestAppendJSONEscaping(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"plain", "Henry Auer", "Henry Auer"},
		{"quote and backslash", `a"b\c`, `a"b\c`},
		{"newline, tab, CR", "a\nb\tc\rd", "a\nb\tc\rd"},
		{"other controls", "\x00\x01\x1f\x7f", "\x00\x01\x1f\x7f"},
		{"non-ASCII", "Zoë 山田 😀", "Zoë 山田 😀"},
		{"line separators", "a\u2028b\u2029c", "a\u2028b\u2029c"},
		{"HTML stays as is", "<a href='x'>&</a>", "<a href='x'>&</a>"},
		{"invalid UTF-8", "a\xffb\xc3", "a\ufffdb\ufffd"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := Event{Source: TikTok, FunnelStage: Top, ID: tc.in, User: User{Username: tc.in}}
			out := e.AppendJSON(nil)
			var got struct {
				EventID string
				Data    struct{ User struct{ Username string } }
			}
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("got invalid JSON %q: %v", out, err)
			}
			if got.EventID != tc.want || got.Data.User.Username != tc.want {
				t.Fatalf("got %q and %q; want %q", got.EventID, got.Data.User.Username, tc.want)
			}
			if bytes.Contains(out, []byte("\u2028")) {
				t.Fatalf("got a raw U+2028 in %q; want it escaped", out)
			}
		})
	}
}

func TestAppendJSONTimes(t *testing.T) {
	kyiv := time.FixedZone("EEST", 3*3600)
	tests := []struct {
		name string
		in   time.Time
		want string
	}{
		{"milliseconds", time.Date(2025, 6, 10, 18, 1, 44, 759e6, time.UTC), "2025-06-10T18:01:44.759Z"},
		{"whole second", time.Date(2025, 6, 10, 18, 1, 44, 0, time.UTC), "2025-06-10T18:01:44.000Z"},
		{"other zone", time.Date(2025, 6, 10, 21, 1, 44, 759e6, kyiv), "2025-06-10T18:01:44.759Z"},
		{"nanoseconds kept", time.Date(2025, 6, 10, 18, 1, 44, 123456789, time.UTC), "2025-06-10T18:01:44.123456789Z"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := Event{Source: Facebook, FunnelStage: Top, Timestamp: tc.in, Engagement: Engagement{ActionTime: tc.in}}
			var got struct {
				Timestamp string
				Data      struct{ Engagement struct{ ActionTime string } }
			}
			if err := json.Unmarshal(e.AppendJSON(nil), &got); err != nil {
				t.Fatal(err)
			}
			if got.Timestamp != tc.want || got.Data.Engagement.ActionTime != tc.want {
				t.Fatalf("got %s and %s; want %s", got.Timestamp, got.Data.Engagement.ActionTime, tc.want)
			}
		})
	}
}

// TestAppendJSONFields checks that each source and stage writes exactly its
// own fields, whatever else the Event holds.
func TestAppendJSONFields(t *testing.T) {
	str := func(s string) *string { return &s }
	full := Event{
		ID: "id", Timestamp: time.Unix(0, 0), Type: "t",
		User: User{ID: "u", Name: "n", Age: 1, Gender: "male", Country: "c", City: "k", Username: "un", Followers: 2},
		Engagement: Engagement{
			ActionTime: time.Unix(0, 0), Referrer: "groups", VideoID: str("v"),
			AdID: "a", CampaignID: "c", ClickPosition: "center", Device: "d", Browser: "b", PurchaseAmount: str("1.5"),
			WatchTime: 1.5, PercentageWatched: 50, Country: "c", ProfileID: str("p"), PurchasedItem: str("i"),
		},
	}
	envelope := []string{"data", "eventId", "eventType", "funnelStage", "source", "timestamp"}
	tests := []struct {
		source     Source
		stage      Stage
		user, engm []string
	}{
		{Facebook, Top, []string{"age", "gender", "location", "name", "userId"}, []string{"actionTime", "referrer", "videoId"}},
		{Facebook, Bottom, []string{"age", "gender", "location", "name", "userId"}, []string{"adId", "browser", "campaignId", "clickPosition", "device", "purchaseAmount"}},
		{TikTok, Top, []string{"followers", "userId", "username"}, []string{"country", "device", "percentageWatched", "videoId", "watchTime"}},
		{TikTok, Bottom, []string{"followers", "userId", "username"}, []string{"actionTime", "profileId", "purchaseAmount", "purchasedItem"}},
		{"", "", []string{"userId"}, nil},
	}
	keys := func(m any) []string {
		var ks []string
		for k := range m.(obj) {
			ks = append(ks, k)
		}
		slices.Sort(ks)
		return ks
	}
	for _, tc := range tests {
		t.Run(string(tc.source)+" "+string(tc.stage), func(t *testing.T) {
			e := full
			e.Source, e.FunnelStage = tc.source, tc.stage
			var got obj
			if err := json.Unmarshal(e.AppendJSON(nil), &got); err != nil {
				t.Fatal(err)
			}
			if k := keys(got); !reflect.DeepEqual(k, envelope) {
				t.Fatalf("got envelope %v; want %v", k, envelope)
			}
			if k := keys(user(got)); !reflect.DeepEqual(k, tc.user) {
				t.Fatalf("got user %v; want %v", k, tc.user)
			}
			if k := keys(eng(got)); !reflect.DeepEqual(k, tc.engm) {
				t.Fatalf("got engagement %v; want %v", k, tc.engm)
			}
		})
	}
}

func TestAppendJSONNulls(t *testing.T) {
	e := Event{Source: TikTok, FunnelStage: Bottom}
	const want = `"engagement":{"actionTime":"0001-01-01T00:00:00.000Z","profileId":null,"purchasedItem":null,"purchaseAmount":null}`
	if got := e.AppendJSON(nil); !bytes.Contains(got, []byte(want)) {
		t.Fatalf("got %s; want it to contain %s", got, want)
	}
	// A tiktok top event without its videoId still encodes to valid JSON.
	e = Event{Source: TikTok, FunnelStage: Top}
	if got := e.AppendJSON(nil); !json.Valid(got) || !bytes.Contains(got, []byte(`"videoId":null`)) {
		t.Fatalf("got %s; want valid JSON with a null videoId", got)
	}
}

func TestAppendJSONAllocs(t *testing.T) {
	for i, raw := range samples(t) {
		t.Run(baseNames[i], func(t *testing.T) {
			e := checkParse(t, raw, "")
			buf := make([]byte, 0, 1024)
			got := testing.AllocsPerRun(100, func() { buf = e.AppendJSON(buf[:0]) })
			if got != 0 {
				t.Fatalf("got %v allocations; want 0", got)
			}
		})
	}
}

func BenchmarkAppendJSON(b *testing.B) {
	lines := readLines(b, "types.jsonl")
	events := make([]Event, len(lines))
	size := 0
	for i, l := range lines {
		e, err := Parse(l)
		if err != nil {
			b.Fatal(err)
		}
		events[i] = e
		size += len(l)
	}
	b.SetBytes(int64(size / len(lines)))
	b.ReportAllocs()
	buf := make([]byte, 0, 1024)
	i := 0
	for b.Loop() {
		buf = events[i%len(events)].AppendJSON(buf[:0])
		i++
	}
}
