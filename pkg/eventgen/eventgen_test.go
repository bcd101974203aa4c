package eventgen

import (
	"bytes"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/eventpipe/eventpipe/pkg/event"
)

var testTime = time.Date(2025, 6, 10, 18, 1, 43, 455_678_000, time.UTC)

func generate(seed int64, n int) []event.Event {
	g := New(seed)
	evs := make([]event.Event, n)
	for i := range evs {
		evs[i] = g.Next(testTime.Add(time.Duration(i) * time.Millisecond))
	}
	return evs
}

func encodeAll(evs []event.Event) []byte {
	var b []byte
	for i := range evs {
		b = evs[i].AppendJSON(b)
		b = append(b, '\n')
	}
	return b
}

func TestDeterministic(t *testing.T) {
	a := encodeAll(generate(42, 2000))
	b := encodeAll(generate(42, 2000))
	if !bytes.Equal(a, b) {
		t.Fatal("two generators with seed 42 produced different events")
	}
	c := encodeAll(generate(43, 2000))
	if bytes.Equal(a, c) {
		t.Fatal("seeds 42 and 43 produced the same events")
	}

	raw := []byte(`{"eventId":"x","data":{"user":{},"engagement":{}}}`)
	g1, g2 := New(7), New(7)
	for i := range 100 {
		if got, want := g1.Corrupt(raw), g2.Corrupt(raw); !bytes.Equal(got, want) {
			t.Fatalf("corruption %d: got %s; want %s", i, got, want)
		}
	}
}

func TestEveryEventIsValid(t *testing.T) {
	evs := generate(1, 20000)
	var buf []byte
	for i := range evs {
		buf = evs[i].AppendJSON(buf[:0])
		got, err := event.Parse(buf)
		if err != nil {
			t.Fatalf("event %d %s: %v", i, buf, err)
		}
		// The round trip must be lossless, or the generator produces values
		// the wire format cannot carry.
		if again := got.AppendJSON(nil); !bytes.Equal(again, buf) {
			t.Fatalf("event %d: round trip got %s; want %s", i, again, buf)
		}
	}
}

func TestDistribution(t *testing.T) {
	const n = 20000
	evs := generate(2, n)
	bySource := map[event.Source]int{}
	byType := map[string]int{}
	users := map[event.Source]map[string]bool{event.Facebook: {}, event.TikTok: {}}
	campaigns := map[string]bool{}
	for _, e := range evs {
		bySource[e.Source]++
		byType[string(e.Source)+"/"+e.Type]++
		users[e.Source][e.User.ID] = true
		if e.Engagement.CampaignID != "" {
			campaigns[e.Engagement.CampaignID] = true
		}
	}
	for _, s := range event.Sources {
		if got := bySource[s]; got < n*45/100 || got > n*55/100 {
			t.Errorf("%s events: got %d of %d; want about half", s, got, n)
		}
		for _, st := range event.Stages {
			for _, typ := range event.Types(s, st) {
				if byType[string(s)+"/"+typ] == 0 {
					t.Errorf("%s %s: got no event; want some", s, typ)
				}
			}
		}
		// 10,000 draws from a pool of 20,000 repeat about a fifth of the
		// time; without a pool every user would be new.
		if got := len(users[s]); got >= bySource[s]*9/10 || got > UsersPerSource {
			t.Errorf("%s distinct users: got %d for %d events; want repeats from a pool of %d",
				s, got, bySource[s], UsersPerSource)
		}
	}
	if got := len(campaigns); got < 2 || got > Campaigns {
		t.Errorf("campaigns: got %d; want 2..%d", got, Campaigns)
	}
}

// TestUsersAreStable checks that a user keeps its attributes from one event
// to the next, so demographics count it in one bucket.
func TestUsersAreStable(t *testing.T) {
	seen := map[string]event.User{}
	countries := map[string]string{}
	repeats := 0
	for _, e := range generate(3, 40000) {
		prev, ok := seen[e.User.ID]
		if !ok {
			seen[e.User.ID] = e.User
		} else {
			repeats++
			if prev != e.User {
				t.Fatalf("user %s: got %+v; want %+v", e.User.ID, e.User, prev)
			}
		}
		if e.Source == event.TikTok && e.FunnelStage == event.Top {
			if c, ok := countries[e.User.ID]; ok && c != e.Engagement.Country {
				t.Fatalf("tiktok user %s: got country %q; want %q", e.User.ID, e.Engagement.Country, c)
			}
			countries[e.User.ID] = e.Engagement.Country
		}
	}
	if repeats == 0 {
		t.Fatal("got no repeated user in 40,000 events; want some")
	}
}

var (
	amountRE = regexp.MustCompile(`^[0-9]+\.[0-9]{2}$`)
	campRE   = regexp.MustCompile(`^camp-[A-Za-z0-9]{5}$`)
)

func TestRanges(t *testing.T) {
	cities := map[string]map[string]bool{}
	for _, p := range places {
		cities[p.country] = map[string]bool{}
		for _, c := range p.cities {
			cities[p.country][c] = true
		}
	}
	ts := testTime.Truncate(time.Millisecond)
	g := New(4)
	for i := range 20000 {
		e := g.Next(testTime)
		u, en := e.User, e.Engagement
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("event %d %s: "+format, append([]any{i, e.AppendJSON(nil)}, args...)...)
		}

		prefix := map[event.Source]string{event.Facebook: "fb-", event.TikTok: "ttk-"}[e.Source]
		id, ok := strings.CutPrefix(e.ID, prefix)
		if !ok {
			fail("eventId: got %q; want prefix %q", e.ID, prefix)
		}
		for _, s := range []string{id, u.ID} {
			if v, err := uuid.Parse(s); err != nil || v.Version() != 4 || v.Variant() != uuid.RFC4122 || len(s) != 36 {
				fail("got %q; want a version 4 uuid", s)
			}
		}
		if !e.Timestamp.Equal(ts) {
			fail("timestamp: got %s; want %s", e.Timestamp, ts)
		}

		wantAmount := (e.Source == event.Facebook && e.Type == event.FacebookPurchaseType) ||
			(e.Source == event.TikTok && e.Type == event.TikTokPurchaseType)
		if got := en.PurchaseAmount != nil; got != wantAmount {
			fail("purchaseAmount set: got %v; want %v", got, wantAmount)
		}
		if en.PurchaseAmount != nil {
			lo, hi := 10.0, 1000.0
			if e.Source == event.TikTok {
				lo, hi = 5, 500
			}
			a, err := strconv.ParseFloat(*en.PurchaseAmount, 64)
			if !amountRE.MatchString(*en.PurchaseAmount) || err != nil || a < lo || a > hi {
				fail("purchaseAmount: got %q; want two decimals in %g..%g", *en.PurchaseAmount, lo, hi)
			}
		}

		switch {
		case e.Source == event.Facebook:
			if u.Age < 18 || u.Age > 65 {
				fail("age: got %d; want 18..65", u.Age)
			}
			if u.Gender != "male" && u.Gender != "female" && u.Gender != "non-binary" {
				fail("gender: got %q", u.Gender)
			}
			if !cities[u.Country][u.City] {
				fail("location: got %q, %q; want a city of a listed country", u.City, u.Country)
			}
			if u.Name == "" || u.Username != "" || u.Followers != 0 {
				fail("user: got %+v; want facebook fields only", u)
			}
			if e.FunnelStage == event.Top {
				if !en.ActionTime.Equal(ts) {
					fail("actionTime: got %s; want %s", en.ActionTime, ts)
				}
				if got, want := en.VideoID != nil, e.Type == "video.view"; got != want {
					fail("videoId set: got %v; want %v", got, want)
				}
			} else if !campRE.MatchString(en.CampaignID) || !strings.HasPrefix(en.AdID, "ad-") {
				fail("got adId %q, campaignId %q", en.AdID, en.CampaignID)
			}
		case e.FunnelStage == event.Top: // tiktok
			if u.Followers < 0 || u.Followers > 1_000_000 {
				fail("followers: got %d; want 0..1000000", u.Followers)
			}
			if en.WatchTime < 1 || en.WatchTime > 300 {
				fail("watchTime: got %g; want 1..300", en.WatchTime)
			}
			if en.PercentageWatched < 0 || en.PercentageWatched > 100 {
				fail("percentageWatched: got %g; want 0..100", en.PercentageWatched)
			}
			if cities[en.Country] == nil || en.VideoID == nil {
				fail("got country %q, videoId %v; want a listed country and a video", en.Country, en.VideoID)
			}
		default: // tiktok bottom
			if !en.ActionTime.Equal(ts) {
				fail("actionTime: got %s; want %s", en.ActionTime, ts)
			}
			if got, want := en.ProfileID != nil, e.Type == "profile.visit"; got != want {
				fail("profileId set: got %v; want %v", got, want)
			}
			if got, want := en.PurchasedItem != nil, e.Type == event.TikTokPurchaseType; got != want {
				fail("purchasedItem set: got %v; want %v", got, want)
			}
		}
		if e.Source == event.TikTok && (u.Username == "" || u.Name != "") {
			fail("user: got %+v; want tiktok fields only", u)
		}
	}
}

func BenchmarkNext(b *testing.B) {
	g := New(1)
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		e := g.Next(testTime)
		buf = e.AppendJSON(buf[:0])
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
