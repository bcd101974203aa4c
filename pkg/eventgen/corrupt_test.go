package eventgen

import (
	"bytes"
	"encoding/json"
	"reflect"
	"slices"
	"testing"

	"github.com/eventpipe/eventpipe/pkg/event"
)

// fixtures returns one encoded event of each source and stage, by
// "source/stage".
func fixtures(t *testing.T) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	g := New(5)
	for len(out) < 4 {
		e := g.Next(testTime)
		// The richest type of each shape, so every targeted field exists.
		switch e.Type {
		case "video.view", event.FacebookPurchaseType, event.TikTokPurchaseType:
		default:
			continue
		}
		out[string(e.Source)+"/"+string(e.FunnelStage)] = e.AppendJSON(nil)
	}
	return out
}

// absent marks a field the corruption must remove.
type absentField struct{}

var absent absentField

func decode(t *testing.T, raw []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("decode %s: %v", raw, err)
	}
	return m
}

// expect applies to ev what a corruption should do: set path to want, or
// remove it.
func expect(ev map[string]any, path []string, want any) {
	m := ev
	for _, k := range path[:len(path)-1] {
		next, ok := m[k].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[k] = next
		}
		m = next
	}
	last := path[len(path)-1]
	if want == absent {
		delete(m, last)
		return
	}
	m[last] = want
}

func TestApply(t *testing.T) {
	fx := fixtures(t)
	tests := []struct {
		name      string
		on        string
		path      []string
		want      any
		wantValid bool
	}{
		{"invalid-timestamp", "facebook/top", []string{"timestamp"}, "invalid-timestamp", false},
		{"missing-event-id", "tiktok/top", []string{"eventId"}, absent, false},
		{"missing-user-name", "facebook/bottom", []string{"data", "user", "name"}, absent, false},
		{"missing-user-name", "tiktok/top", []string{"data", "user", "name"}, absent, true},
		{"missing-username", "tiktok/bottom", []string{"data", "user", "username"}, absent, false},
		{"missing-username", "facebook/top", []string{"data", "user", "username"}, absent, true},
		{"missing-user", "tiktok/bottom", []string{"data", "user"}, absent, false},
		{"invalid-stage", "facebook/bottom", []string{"funnelStage"}, "invalid-stage", false},
		{"event-type-array", "facebook/bottom", []string{"eventType"}, []any{event.FacebookPurchaseType}, false},
		{"negative-action-time", "facebook/top", []string{"data", "engagement", "actionTime"}, -1.0, false},
		{"negative-action-time", "tiktok/top", []string{"data", "engagement", "actionTime"}, -1.0, true},
		{"negative-watch-time", "tiktok/top", []string{"data", "engagement", "watchTime"}, -1.0, false},
		{"negative-watch-time", "facebook/bottom", []string{"data", "engagement", "watchTime"}, -1.0, true},
		{"missing-ad-id", "facebook/bottom", []string{"data", "engagement", "adId"}, absent, false},
		{"missing-ad-id", "tiktok/bottom", []string{"data", "engagement", "adId"}, absent, true},
		{"missing-purchased-item", "tiktok/bottom", []string{"data", "engagement", "purchasedItem"}, absent, false},
		{"alien-gender", "facebook/top", []string{"data", "user", "gender"}, "alien", false},
		{"alien-gender", "tiktok/top", []string{"data", "user", "gender"}, "alien", true},
		{"followers-not-a-number", "tiktok/top", []string{"data", "user", "followers"}, "not-a-number", false},
		{"followers-not-a-number", "facebook/bottom", []string{"data", "user", "followers"}, "not-a-number", true},
	}
	covered := map[string]bool{}
	for _, tt := range tests {
		covered[tt.name] = true
		t.Run(tt.name+"/"+tt.on, func(t *testing.T) {
			raw := fx[tt.on]
			got, err := Apply(tt.name, raw)
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			want := decode(t, raw)
			expect(want, tt.path, tt.want)
			if g := decode(t, got); !reflect.DeepEqual(g, want) {
				t.Errorf("got %s; want %v", got, want)
			}
			_, perr := event.Parse(got)
			if valid := perr == nil; valid != tt.wantValid {
				t.Errorf("valid: got %v (%v); want %v", valid, perr, tt.wantValid)
			}
		})
	}
	for _, name := range Corruptions() {
		if !covered[name] {
			t.Errorf("corruption %q: got no test; want one", name)
		}
	}
}

func TestApplyKeepsNumbersExact(t *testing.T) {
	raw := []byte(`{"eventId":"x","data":{"user":{"followers":12345678901234567890},"engagement":{"watchTime":0.1}}}`)
	got, err := Apply("missing-event-id", raw)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`12345678901234567890`, `0.1`} {
		if !bytes.Contains(got, []byte(want)) {
			t.Errorf("got %s; want it to contain %s", got, want)
		}
	}
}

func TestApplyErrors(t *testing.T) {
	if _, err := Apply("no-such-corruption", []byte(`{}`)); err == nil {
		t.Error("unknown name: got no error; want one")
	}
	for _, raw := range []string{`[1]`, `null`, `not json`} {
		if _, err := Apply("missing-user", []byte(raw)); err == nil {
			t.Errorf("Apply to %s: got no error; want one", raw)
		}
	}
}

func TestCorruptions(t *testing.T) {
	names := Corruptions()
	if len(names) != 13 {
		t.Errorf("got %d corruptions; want the 13 of events.md", len(names))
	}
	sorted := slices.Clone(names)
	slices.Sort(sorted)
	if len(slices.Compact(sorted)) != len(names) {
		t.Errorf("got duplicate names in %v", names)
	}
}

// TestCorruptPicksEvery checks that Corrupt draws from the whole list
// whatever the source: every distinct outcome of Apply on one event shows
// up, including the ones that leave the event valid.
func TestCorruptPicksEvery(t *testing.T) {
	for on, raw := range fixtures(t) {
		outcomes := map[string][]string{}
		for _, name := range Corruptions() {
			out, err := Apply(name, raw)
			if err != nil {
				t.Fatal(err)
			}
			outcomes[string(out)] = append(outcomes[string(out)], name)
		}
		seen := map[string]int{}
		g := New(6)
		for range 2000 {
			out := g.Corrupt(raw)
			if _, ok := outcomes[string(out)]; !ok {
				t.Fatalf("%s: got %s; want the outcome of one of %v", on, out, Corruptions())
			}
			seen[string(out)]++
		}
		for out, names := range outcomes {
			if seen[out] == 0 {
				t.Errorf("%s: corruption %v never picked in 2000 draws", on, names)
			}
		}
	}
}

func TestCorruptLeavesNonObjectsAlone(t *testing.T) {
	g := New(1)
	raw := []byte(`[1,2]`)
	if got := g.Corrupt(raw); !bytes.Equal(got, raw) {
		t.Errorf("got %s; want %s", got, raw)
	}
}
