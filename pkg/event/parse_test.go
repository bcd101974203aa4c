package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestParseSamples(t *testing.T) {
	str := func(s string) *string { return &s }
	ms := func(s string) time.Time {
		tm, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	want := []Event{
		fbBottom: {
			ID: "fb-3e8f395a-661a-4dc5-b868-1b571b78e33f", Timestamp: ms("2025-05-14T10:46:28.214Z"),
			Source: Facebook, FunnelStage: Bottom, Type: "checkout.complete",
			User:       User{ID: "dcc79054-7a44-458d-b8a1-b01ee0ba5db6", Name: "Henry Auer", Age: 57, Gender: "non-binary", Country: "Mongolia", City: "Lorenland"},
			Engagement: Engagement{AdID: "ad-DPFSHszH", CampaignID: "camp-Mn15k", ClickPosition: "center", Device: "desktop", Browser: "Firefox", PurchaseAmount: str("414.29")},
		},
		fbTop: {
			ID: "fb-fa3e4d6c-7062-4e6f-8f55-f8f41f7425cb", Timestamp: ms("2025-06-10T18:01:43.455Z"),
			Source: Facebook, FunnelStage: Top, Type: "ad.view",
			User:       User{ID: "81ac3c92-30ad-4290-974c-1d5273b230af", Name: "Gregory Zulauf", Age: 58, Gender: "male", Country: "Ukraine", City: "Kyiv"},
			Engagement: Engagement{ActionTime: ms("2025-06-10T18:01:43.455Z"), Referrer: "newsfeed"},
		},
		ttBottom: {
			ID: "ttk-cf30e5ff-a2a5-4854-9a92-9d99e3f4da67", Timestamp: ms("2025-06-10T18:01:44.759Z"),
			Source: TikTok, FunnelStage: Bottom, Type: "profile.visit",
			User:       User{ID: "55e08dd7-e088-451a-b80e-2639138a6f99", Username: "Eliza92", Followers: 423769},
			Engagement: Engagement{ActionTime: ms("2025-06-10T18:01:44.759Z"), ProfileID: str("profile-I6SF6J")},
		},
		ttTop: {
			ID: "ttk-0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d", Timestamp: ms("2025-06-10T18:01:45.002Z"),
			Source: TikTok, FunnelStage: Top, Type: "video.view",
			User:       User{ID: "9a8b7c6d-5e4f-4a3b-2c1d-0e9f8a7b6c5d", Username: "rob_k", Followers: 1520},
			Engagement: Engagement{WatchTime: 42, PercentageWatched: 87, Device: "iOS", Country: "Mongolia", VideoID: str("vid-Ab12Cd34")},
		},
	}
	for i, raw := range samples(t) {
		t.Run(baseNames[i], func(t *testing.T) {
			e := checkParse(t, raw, "")
			if !reflect.DeepEqual(e, want[i]) {
				t.Fatalf("got %+v; want %+v", e, want[i])
			}
			out := e.AppendJSON(nil)
			var gotJSON, wantJSON any
			if err := json.Unmarshal(out, &gotJSON); err != nil {
				t.Fatalf("AppendJSON output %s: %v", out, err)
			}
			if err := json.Unmarshal(raw, &wantJSON); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(gotJSON, wantJSON) {
				t.Fatalf("got %s; want %s", out, raw)
			}
			again := checkParse(t, out, "")
			if !reflect.DeepEqual(again, e) {
				t.Fatalf("got %+v after a round trip; want %+v", again, e)
			}
		})
	}
}

func TestParseEveryType(t *testing.T) {
	seen := map[string]bool{}
	for _, raw := range readLines(t, "types.jsonl") {
		var head struct{ Source, EventType string }
		if err := json.Unmarshal(raw, &head); err != nil {
			t.Fatal(err)
		}
		key := head.Source + " " + head.EventType
		t.Run(key, func(t *testing.T) {
			e := checkParse(t, raw, "")
			if string(e.Source) != head.Source || e.Type != head.EventType {
				t.Fatalf("got %s %s; want %s", e.Source, e.Type, key)
			}
			if st, _ := StageOf(e.Source, e.Type); e.FunnelStage != st {
				t.Fatalf("got stage %s; want %s", e.FunnelStage, st)
			}
			again := checkParse(t, e.AppendJSON(nil), "")
			if !reflect.DeepEqual(again, e) {
				t.Fatalf("got %+v after a round trip; want %+v", again, e)
			}
		})
		seen[key] = true
	}
	for _, s := range Sources {
		for _, st := range Stages {
			for _, typ := range Types(s, st) {
				if !seen[string(s)+" "+typ] {
					t.Errorf("got no fixture for %s %s; want one", s, typ)
				}
			}
		}
	}
}

// corruption is one of "The corruptions seen" of events.md, with the error
// it must give on each kind of event; "" means the event stays valid.
type corruption struct {
	name  string
	apply func(e obj)
	want  map[int]string
}

func corruptions() []corruption {
	all := func(msg string) map[int]string {
		return map[int]string{fbTop: msg, fbBottom: msg, ttTop: msg, ttBottom: msg}
	}
	return []corruption{
		{"timestamp invalid", func(e obj) { e["timestamp"] = "invalid-timestamp" },
			all("timestamp: must be an RFC 3339 timestamp")},
		{"eventId removed", func(e obj) { delete(e, "eventId") },
			all("eventId: is required")},
		{"user.name removed", func(e obj) { delete(user(e), "name") },
			map[int]string{fbTop: "data.user.name: is required", fbBottom: "data.user.name: is required", ttTop: "", ttBottom: ""}},
		{"user.username removed", func(e obj) { delete(user(e), "username") },
			map[int]string{fbTop: "", fbBottom: "", ttTop: "data.user.username: is required", ttBottom: "data.user.username: is required"}},
		{"user removed", func(e obj) { delete(data(e), "user") },
			all("data.user: is required")},
		{"funnelStage invalid", func(e obj) { e["funnelStage"] = "invalid-stage" },
			all("funnelStage: must be one of top, bottom")},
		{"eventType array", func(e obj) { e["eventType"] = []any{e["eventType"]} },
			all("eventType: must be a string")},
		{"actionTime -1", func(e obj) { eng(e)["actionTime"] = -1 },
			map[int]string{fbTop: "data.engagement.actionTime: must be a string", fbBottom: "", ttTop: "", ttBottom: "data.engagement.actionTime: must be a string"}},
		{"watchTime -1", func(e obj) { eng(e)["watchTime"] = -1 },
			map[int]string{fbTop: "", fbBottom: "", ttTop: "data.engagement.watchTime: must not be negative", ttBottom: ""}},
		{"adId removed", func(e obj) { delete(eng(e), "adId") },
			map[int]string{fbTop: "", fbBottom: "data.engagement.adId: is required", ttTop: "", ttBottom: ""}},
		{"purchasedItem removed", func(e obj) { delete(eng(e), "purchasedItem") },
			map[int]string{fbTop: "", fbBottom: "", ttTop: "", ttBottom: "data.engagement.purchasedItem: is required"}},
		{"gender alien", func(e obj) { user(e)["gender"] = "alien" },
			map[int]string{fbTop: "data.user.gender: must be one of male, female, non-binary", fbBottom: "data.user.gender: must be one of male, female, non-binary", ttTop: "", ttBottom: ""}},
		{"followers not a number", func(e obj) { user(e)["followers"] = "not-a-number" },
			map[int]string{fbTop: "", fbBottom: "", ttTop: "data.user.followers: must be an integer", ttBottom: "data.user.followers: must be an integer"}},
	}
}

func TestParseCorruptions(t *testing.T) {
	base := samples(t)
	for _, c := range corruptions() {
		for b := range base {
			want, ok := c.want[b]
			if !ok {
				t.Fatalf("corruption %q has no expectation for %s", c.name, baseNames[b])
			}
			t.Run(c.name+"/"+baseNames[b], func(t *testing.T) {
				checkParse(t, mutate(t, base[b], c.apply), want)
			})
		}
	}
}

// ruleCase is one input and the error it must give; "" means valid.
type ruleCase struct {
	name string
	raw  []byte
	want string
}

func ruleCases(tb testing.TB) []ruleCase {
	s := samples(tb)
	fbt, fbb, ttt, ttb := s[fbTop], s[fbBottom], s[ttTop], s[ttBottom]
	set := func(raw []byte, f func(e obj)) []byte { return mutate(tb, raw, f) }
	rep := func(raw []byte, old, new string) []byte { return replace(tb, raw, old, new) }
	nested := strings.Repeat("[", 400) + strings.Repeat("]", 400)
	bigObject := `{` + strings.Repeat(`"k":1,`, 20) + `"k":2}`
	id256 := strings.Repeat("a", 256)

	const (
		oneOfSource  = "source: must be one of facebook, tiktok"
		oneOfStage   = "funnelStage: must be one of top, bottom"
		notObject    = "must be a JSON object"
		badJSON      = "must be valid JSON: *"
		notUTF8      = "must be valid UTF-8"
		surrogate    = "must not contain an unpaired UTF-16 surrogate escape"
		eventIDSpace = "eventId: must not contain whitespace or control characters"
		amountFormat = `data.engagement.purchaseAmount: must be a non-negative decimal string such as "414.29"`
	)
	return []ruleCase{
		// The event as a whole.
		{"empty", []byte(""), notObject},
		{"whitespace only", []byte(" \n"), notObject},
		{"array of events", append(append([]byte("["), fbt...), ']'), notObject},
		{"empty array", []byte("[]"), notObject},
		{"string", []byte(`"event"`), notObject},
		{"number", []byte(`42`), notObject},
		{"null", []byte(`null`), notObject},
		{"leading whitespace", append([]byte(" \t\r\n"), fbt...), ""},
		{"truncated", fbt[:len(fbt)-1], badJSON},
		{"trailing data", append(append([]byte{}, fbt...), " {}"...), badJSON},
		{"NaN literal", rep(fbt, `"eventId"`, `"x":NaN,"eventId"`), badJSON},
		{"bad escape", rep(fbt, `Gregory`, `Greg\ory`), badJSON},
		{"raw control character", rep(fbt, `Gregory`, "Greg\tory"), badJSON},
		{"too deep", rep(fbt, `"eventId"`, `"x":`+nested+`,"eventId"`), badJSON},
		{"invalid UTF-8 in a known field", rep(fbt, "Gregory", "Greg\xffory"), notUTF8},
		{"invalid UTF-8 in an unknown field", rep(fbt, `"eventId"`, "\"x\":\"\xc3\x28\",\"eventId\""), notUTF8},
		{"invalid UTF-8 in a key", rep(fbt, `"eventId"`, "\"\xed\xa0\x80\":1,\"eventId\""), notUTF8},
		{"lone high surrogate escape", rep(fbt, "Gregory", `Greg\ud800ory`), surrogate},
		{"lone low surrogate escape", rep(fbt, `"eventId"`, `"x":"\udc00","eventId"`), surrogate},
		{"high surrogate at the end of a string", rep(fbt, "Gregory", `Gregory\ud83d`), surrogate},
		{"high surrogate then a non-surrogate", rep(fbt, "Gregory", `Greg\ud83d\u0041`), surrogate},
		{"surrogate pair", rep(fbt, "Gregory", `Greg\ud83d\ude00`), ""},
		{"escaped backslash before u", rep(fbt, "Gregory", `Greg\\ud800`), ""},
		{"escapes in keys and values", rep(fbt, `"name":"Gregory Zulauf"`, `"na\u006De":"Gr\u00e9gory \"G\" Zulauf\n"`), ""},

		// eventId.
		{"eventId null", set(fbt, func(e obj) { e["eventId"] = nil }), "eventId: must be a string"},
		{"eventId number", set(fbt, func(e obj) { e["eventId"] = 7 }), "eventId: must be a string"},
		{"eventId empty", set(fbt, func(e obj) { e["eventId"] = "" }), "eventId: must not be empty"},
		{"eventId 256 bytes", set(fbt, func(e obj) { e["eventId"] = id256 }), ""},
		{"eventId 257 bytes", set(fbt, func(e obj) { e["eventId"] = id256 + "b" }), "eventId: must be at most 256 bytes"},
		{"eventId non-ASCII", set(fbt, func(e obj) { e["eventId"] = "fb-é-42" }), ""},
		{"eventId space", set(fbt, func(e obj) { e["eventId"] = "fb 42" }), eventIDSpace},
		{"eventId tab", set(fbt, func(e obj) { e["eventId"] = "fb\t42" }), eventIDSpace},
		{"eventId CR LF", set(fbt, func(e obj) { e["eventId"] = "fb\r\nX-Evil: 1" }), eventIDSpace},
		{"eventId DEL", set(fbt, func(e obj) { e["eventId"] = "fb\x7f42" }), eventIDSpace},
		{"eventId NEL", set(fbt, func(e obj) { e["eventId"] = "fb\u008542" }), eventIDSpace},
		{"eventId no-break space", set(fbt, func(e obj) { e["eventId"] = "fb\u00a042" }), eventIDSpace},
		{"eventId NUL", set(fbt, func(e obj) { e["eventId"] = "fb\x0042" }), "eventId: must not contain U+0000"},

		// timestamp.
		{"timestamp missing", set(fbt, func(e obj) { delete(e, "timestamp") }), "timestamp: is required"},
		{"timestamp number", set(fbt, func(e obj) { e["timestamp"] = 1749578503455 }), "timestamp: must be a string"},
		{"timestamp date only", set(fbt, func(e obj) { e["timestamp"] = "2025-06-10" }), "timestamp: must be an RFC 3339 timestamp"},
		{"timestamp without zone", set(fbt, func(e obj) { e["timestamp"] = "2025-06-10T18:01:43.455" }), "timestamp: must be an RFC 3339 timestamp"},
		{"timestamp month 13", set(fbt, func(e obj) { e["timestamp"] = "2025-13-10T18:01:43.455Z" }), "timestamp: must be an RFC 3339 timestamp"},
		{"timestamp without milliseconds", set(fbt, func(e obj) { e["timestamp"] = "2025-06-10T18:01:43Z" }), ""},
		{"timestamp with offset", set(fbt, func(e obj) { e["timestamp"] = "2025-06-10T20:01:43.455+02:00" }), ""},
		{"timestamp year -1 in UTC", set(fbt, func(e obj) { e["timestamp"] = "0000-01-01T00:00:00+01:00" }), "timestamp: must be an RFC 3339 timestamp with a UTC year from 0000 to 9999"},
		{"timestamp year 10000 in UTC", set(fbt, func(e obj) { e["timestamp"] = "9999-12-31T23:30:00-01:00" }), "timestamp: must be an RFC 3339 timestamp with a UTC year from 0000 to 9999"},

		// source, funnelStage, eventType.
		{"source missing", set(fbt, func(e obj) { delete(e, "source") }), "source: is required"},
		{"source unknown", set(fbt, func(e obj) { e["source"] = "instagram" }), oneOfSource},
		{"source wrong case", set(fbt, func(e obj) { e["source"] = "Facebook" }), oneOfSource},
		{"source number", set(fbt, func(e obj) { e["source"] = 1 }), "source: must be a string"},
		{"funnelStage missing", set(fbt, func(e obj) { delete(e, "funnelStage") }), "funnelStage: is required"},
		{"funnelStage wrong case", set(fbt, func(e obj) { e["funnelStage"] = "TOP" }), oneOfStage},
		{"eventType missing", set(fbt, func(e obj) { delete(e, "eventType") }), "eventType: is required"},
		{"eventType empty", set(fbt, func(e obj) { e["eventType"] = "" }), "eventType: must not be empty"},
		{"eventType unknown", set(fbb, func(e obj) { e["eventType"] = "ad.hover" }), `eventType: "ad.hover" is not a facebook bottom event type`},
		{"eventType of the other source", set(fbb, func(e obj) { e["eventType"] = "purchase" }), `eventType: "purchase" is not a facebook bottom event type (it is a tiktok bottom one)`},
		{"eventType of the other stage", set(fbt, func(e obj) { e["eventType"] = "ad.click" }), `eventType: "ad.click" is not a facebook top event type (it is a facebook bottom one)`},
		{"eventType of the other stage on tiktok", set(ttb, func(e obj) { e["eventType"] = "video.view" }), `eventType: "video.view" is not a tiktok bottom event type (it is a tiktok top one)`},
		{"source swapped", set(fbb, func(e obj) { e["source"] = "tiktok" }), `eventType: "checkout.complete" is not a tiktok bottom event type (it is a facebook bottom one)`},
		{"funnelStage swapped", set(ttt, func(e obj) { e["funnelStage"] = "bottom" }), `eventType: "video.view" is not a tiktok bottom event type (it is a tiktok top one)`},
		{"shared type, other source's shape", set(ttt, func(e obj) { e["source"] = "facebook" }), "data.user.name: is required"},
		{"long eventType is cut in the error", set(fbt, func(e obj) { e["eventType"] = strings.Repeat("x", 100) }), `eventType: "` + strings.Repeat("x", 64) + `"... is not a facebook top event type`},

		// data, user, engagement objects.
		{"data missing", set(fbt, func(e obj) { delete(e, "data") }), "data: is required"},
		{"data array", set(fbt, func(e obj) { e["data"] = []any{} }), "data: must be an object"},
		{"data null", set(fbt, func(e obj) { e["data"] = nil }), "data: must be an object"},
		{"user string", set(fbt, func(e obj) { data(e)["user"] = "u" }), "data.user: must be an object"},
		{"engagement missing", set(fbt, func(e obj) { delete(data(e), "engagement") }), "data.engagement: is required"},
		{"engagement array", set(ttt, func(e obj) { data(e)["engagement"] = []any{1} }), "data.engagement: must be an object"},
		{"location missing", set(fbt, func(e obj) { delete(user(e), "location") }), "data.user.location: is required"},
		{"location string", set(fbt, func(e obj) { user(e)["location"] = "Kyiv, Ukraine" }), "data.user.location: must be an object"},

		// data.user, facebook.
		{"userId missing", set(fbt, func(e obj) { delete(user(e), "userId") }), "data.user.userId: is required"},
		{"userId number", set(ttt, func(e obj) { user(e)["userId"] = 42 }), "data.user.userId: must be a string"},
		{"userId empty", set(fbb, func(e obj) { user(e)["userId"] = "" }), "data.user.userId: must not be empty"},
		{"name number", set(fbt, func(e obj) { user(e)["name"] = 42 }), "data.user.name: must be a string"},
		{"name empty", set(fbt, func(e obj) { user(e)["name"] = "" }), "data.user.name: must not be empty"},
		{"name NUL", set(fbt, func(e obj) { user(e)["name"] = "Greg\x00" }), "data.user.name: must not contain U+0000"},
		{"age missing", set(fbt, func(e obj) { delete(user(e), "age") }), "data.user.age: is required"},
		{"age fraction", set(fbt, func(e obj) { user(e)["age"] = json.Number("57.5") }), "data.user.age: must be an integer"},
		{"age 57.0", set(fbt, func(e obj) { user(e)["age"] = json.Number("57.0") }), "data.user.age: must be an integer"},
		{"age exponent", set(fbt, func(e obj) { user(e)["age"] = json.Number("5.7e1") }), "data.user.age: must be an integer"},
		{"age string", set(fbt, func(e obj) { user(e)["age"] = "57" }), "data.user.age: must be an integer"},
		{"age null", set(fbt, func(e obj) { user(e)["age"] = nil }), "data.user.age: must be an integer"},
		{"age negative", set(fbt, func(e obj) { user(e)["age"] = -1 }), "data.user.age: must not be negative"},
		{"age hugely negative", set(fbt, func(e obj) { user(e)["age"] = json.Number("-99999999999999999999") }), "data.user.age: must not be negative"},
		{"age 1e309", set(fbt, func(e obj) { user(e)["age"] = json.Number("1e309") }), "data.user.age: must be a finite number"},
		{"age above the column", set(fbt, func(e obj) { user(e)["age"] = 2147483648 }), "data.user.age: must be at most 2147483647"},
		{"age 16", set(fbt, func(e obj) { user(e)["age"] = 16 }), ""},
		{"age 70", set(fbt, func(e obj) { user(e)["age"] = 70 }), ""},
		{"age 0", set(fbt, func(e obj) { user(e)["age"] = 0 }), ""},
		{"age -0", set(fbt, func(e obj) { user(e)["age"] = json.Number("-0") }), ""},
		{"gender wrong case", set(fbb, func(e obj) { user(e)["gender"] = "Male" }), "data.user.gender: must be one of male, female, non-binary"},
		{"gender null", set(fbb, func(e obj) { user(e)["gender"] = nil }), "data.user.gender: must be a string"},
		{"gender missing", set(fbb, func(e obj) { delete(user(e), "gender") }), "data.user.gender: is required"},
		{"gender female", set(fbb, func(e obj) { user(e)["gender"] = "female" }), ""},
		{"country missing", set(fbt, func(e obj) { delete(user(e)["location"].(obj), "country") }), "data.user.location.country: is required"},
		{"country empty", set(fbt, func(e obj) { user(e)["location"].(obj)["country"] = "" }), "data.user.location.country: must not be empty"},
		{"city number", set(fbt, func(e obj) { user(e)["location"].(obj)["city"] = 3 }), "data.user.location.city: must be a string"},

		// data.user, tiktok.
		{"username empty", set(ttb, func(e obj) { user(e)["username"] = "" }), "data.user.username: must not be empty"},
		{"followers missing", set(ttb, func(e obj) { delete(user(e), "followers") }), "data.user.followers: is required"},
		{"followers negative", set(ttb, func(e obj) { user(e)["followers"] = -5 }), "data.user.followers: must not be negative"},
		{"followers fraction", set(ttb, func(e obj) { user(e)["followers"] = 1.5 }), "data.user.followers: must be an integer"},
		{"followers 1e309", set(ttb, func(e obj) { user(e)["followers"] = json.Number("1e309") }), "data.user.followers: must be a finite number"},
		{"followers 1.5M", set(ttb, func(e obj) { user(e)["followers"] = 1500000 }), ""},
		{"followers max int64", set(ttb, func(e obj) { user(e)["followers"] = json.Number("9223372036854775807") }), ""},
		{"followers above int64", set(ttb, func(e obj) { user(e)["followers"] = json.Number("9223372036854775808") }), "data.user.followers: must be at most 9223372036854775807"},

		// data.engagement, facebook top.
		{"actionTime missing", set(fbt, func(e obj) { delete(eng(e), "actionTime") }), "data.engagement.actionTime: is required"},
		{"actionTime invalid", set(fbt, func(e obj) { eng(e)["actionTime"] = "yesterday" }), "data.engagement.actionTime: must be an RFC 3339 timestamp"},
		{"referrer unknown", set(fbt, func(e obj) { eng(e)["referrer"] = "twitter" }), "data.engagement.referrer: must be one of newsfeed, marketplace, groups"},
		{"referrer groups", set(fbt, func(e obj) { eng(e)["referrer"] = "groups" }), ""},
		{"videoId missing", set(fbt, func(e obj) { delete(eng(e), "videoId") }), "data.engagement.videoId: is required"},
		{"videoId number", set(fbt, func(e obj) { eng(e)["videoId"] = 42 }), "data.engagement.videoId: must be a string or null"},
		{"videoId empty", set(fbt, func(e obj) { eng(e)["videoId"] = "" }), "data.engagement.videoId: must not be empty"},
		{"videoId set", set(fbt, func(e obj) { eng(e)["videoId"] = "vid-1" }), ""},

		// data.engagement, facebook bottom.
		{"adId empty", set(fbb, func(e obj) { eng(e)["adId"] = "" }), "data.engagement.adId: must not be empty"},
		{"campaignId missing", set(fbb, func(e obj) { delete(eng(e), "campaignId") }), "data.engagement.campaignId: is required"},
		{"clickPosition unknown", set(fbb, func(e obj) { eng(e)["clickPosition"] = "middle" }), "data.engagement.clickPosition: must be one of top_left, bottom_right, center"},
		{"device of tiktok", set(fbb, func(e obj) { eng(e)["device"] = "iOS" }), "data.engagement.device: must be one of mobile, desktop"},
		{"browser unknown", set(fbb, func(e obj) { eng(e)["browser"] = "Edge" }), "data.engagement.browser: must be one of Chrome, Firefox, Safari"},
		{"purchaseAmount missing", set(fbb, func(e obj) { delete(eng(e), "purchaseAmount") }), "data.engagement.purchaseAmount: is required"},
		{"purchaseAmount null", set(fbb, func(e obj) { eng(e)["purchaseAmount"] = nil }), ""},
		{"purchaseAmount number", set(fbb, func(e obj) { eng(e)["purchaseAmount"] = json.Number("414.29") }), "data.engagement.purchaseAmount: must be a string or null"},
		{"purchaseAmount negative", set(fbb, func(e obj) { eng(e)["purchaseAmount"] = "-1" }), amountFormat},
		{"purchaseAmount exponent", set(fbb, func(e obj) { eng(e)["purchaseAmount"] = "1e3" }), amountFormat},
		{"purchaseAmount trailing dot", set(fbb, func(e obj) { eng(e)["purchaseAmount"] = "414." }), amountFormat},
		{"purchaseAmount leading dot", set(fbb, func(e obj) { eng(e)["purchaseAmount"] = ".5" }), amountFormat},
		{"purchaseAmount comma", set(fbb, func(e obj) { eng(e)["purchaseAmount"] = "414,29" }), amountFormat},
		{"purchaseAmount space", set(fbb, func(e obj) { eng(e)["purchaseAmount"] = " 414.29" }), amountFormat},
		{"purchaseAmount empty", set(fbb, func(e obj) { eng(e)["purchaseAmount"] = "" }), "data.engagement.purchaseAmount: must not be empty"},
		{"purchaseAmount 32 characters", set(fbb, func(e obj) { eng(e)["purchaseAmount"] = strings.Repeat("9", 29) + ".99" }), ""},
		{"purchaseAmount 33 characters", set(fbb, func(e obj) { eng(e)["purchaseAmount"] = strings.Repeat("9", 30) + ".99" }), "data.engagement.purchaseAmount: must be at most 32 characters"},
		{"purchaseAmount zero", set(fbb, func(e obj) { eng(e)["purchaseAmount"] = "0" }), ""},

		// data.engagement, tiktok top.
		{"watchTime string", set(ttt, func(e obj) { eng(e)["watchTime"] = "42" }), "data.engagement.watchTime: must be a number"},
		{"watchTime 1e309", set(ttt, func(e obj) { eng(e)["watchTime"] = json.Number("1e309") }), "data.engagement.watchTime: must be a finite number"},
		{"watchTime -1e309", set(ttt, func(e obj) { eng(e)["watchTime"] = json.Number("-1e309") }), "data.engagement.watchTime: must be a finite number"},
		{"watchTime zero", set(ttt, func(e obj) { eng(e)["watchTime"] = 0 }), ""},
		{"watchTime long", set(ttt, func(e obj) { eng(e)["watchTime"] = json.Number("86400.5") }), ""},
		{"watchTime underflow", set(ttt, func(e obj) { eng(e)["watchTime"] = json.Number("1e-400") }), ""},
		{"percentageWatched above 100", set(ttt, func(e obj) { eng(e)["percentageWatched"] = 100.5 }), "data.engagement.percentageWatched: must be between 0 and 100"},
		{"percentageWatched negative", set(ttt, func(e obj) { eng(e)["percentageWatched"] = -0.1 }), "data.engagement.percentageWatched: must be between 0 and 100"},
		{"percentageWatched missing", set(ttt, func(e obj) { delete(eng(e), "percentageWatched") }), "data.engagement.percentageWatched: is required"},
		{"percentageWatched 100", set(ttt, func(e obj) { eng(e)["percentageWatched"] = 100 }), ""},
		{"percentageWatched 0", set(ttt, func(e obj) { eng(e)["percentageWatched"] = 0 }), ""},
		{"device of facebook", set(ttt, func(e obj) { eng(e)["device"] = "mobile" }), "data.engagement.device: must be one of Android, iOS, Desktop"},
		{"tiktok country missing", set(ttt, func(e obj) { delete(eng(e), "country") }), "data.engagement.country: is required"},
		{"tiktok videoId null", set(ttt, func(e obj) { eng(e)["videoId"] = nil }), "data.engagement.videoId: must be a string"},

		// data.engagement, tiktok bottom.
		{"tiktok actionTime number", set(ttb, func(e obj) { eng(e)["actionTime"] = 0 }), "data.engagement.actionTime: must be a string"},
		{"profileId missing", set(ttb, func(e obj) { delete(eng(e), "profileId") }), "data.engagement.profileId: is required"},
		{"profileId null", set(ttb, func(e obj) { eng(e)["profileId"] = nil }), ""},
		{"purchasedItem number", set(ttb, func(e obj) { eng(e)["purchasedItem"] = 3 }), "data.engagement.purchasedItem: must be a string or null"},
		{"tiktok purchaseAmount missing", set(ttb, func(e obj) { delete(eng(e), "purchaseAmount") }), "data.engagement.purchaseAmount: is required"},
		{"tiktok purchaseAmount word", set(ttb, func(e obj) { eng(e)["purchaseAmount"] = "free" }), amountFormat},

		// Unknown fields: ignored unless they cannot be stored.
		{"unknown fields everywhere", set(fbt, func(e obj) {
			e["correlationId"] = "c-1"
			data(e)["extra"] = []any{1, "two", nil, true, obj{"x": 1.5}}
			user(e)["email"] = nil
			user(e)["location"].(obj)["zip"] = "01001"
			eng(e)["score"] = json.Number("-1e300")
		}), ""},
		{"unknown empty key", rep(fbt, `"eventId"`, `"":{},"eventId"`), ""},
		{"NUL in an unknown value", set(fbt, func(e obj) { e["note"] = "a\x00b" }), "note: must not contain U+0000"},
		{"NUL deep in an unknown array", set(fbt, func(e obj) { user(e)["tags"] = []any{"ok", obj{"x": "\x00"}} }), "data.user.tags[1].x: must not contain U+0000"},
		{"NUL in an unknown key", set(fbt, func(e obj) { e["a\x00b"] = 1 }), `["a\x00b"]: must not contain U+0000 in a key`},
		{"NUL in a nested unknown key", set(ttt, func(e obj) { eng(e)["\x00"] = 1 }), `data.engagement["\x00"]: must not contain U+0000 in a key`},
		{"1e309 in an unknown field", set(fbt, func(e obj) { data(e)["big"] = []any{json.Number("1e309")} }), "data.big[0]: must be a finite number"},
		{"duplicate source", rep(fbt, `"source":"facebook"`, `"source":"facebook","source":"tiktok"`), "source: is a duplicate key"},
		{"duplicate unknown key", rep(ttb, `"followers"`, `"x":1,"x":2,"followers"`), "data.user.x: is a duplicate key"},
		{"duplicate key in a large object", rep(ttb, `"followers"`, `"big":`+bigObject+`,"followers"`), "data.user.big.k: is a duplicate key"},
		{"escaped duplicate key", rep(fbt, `"source":"facebook"`, `"source":"facebook","sour\u0063e":"tiktok"`), "source: is a duplicate key"},
	}
}

func TestParseRules(t *testing.T) {
	for _, tc := range ruleCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			checkParse(t, tc.raw, tc.want)
		})
	}
}

func TestParseValues(t *testing.T) {
	s := samples(t)
	tests := []struct {
		name  string
		raw   []byte
		check func(e Event) (got, want any)
	}{
		{"timestamp offset stored as UTC",
			mutate(t, s[fbTop], func(e obj) { e["timestamp"] = "2025-06-10T20:01:43.455+02:00" }),
			func(e Event) (any, any) {
				return e.Timestamp, time.Date(2025, 6, 10, 18, 1, 43, 455e6, time.UTC)
			}},
		{"nanoseconds kept",
			mutate(t, s[ttBottom], func(e obj) { eng(e)["actionTime"] = "2025-06-10T18:01:44.123456789Z" }),
			func(e Event) (any, any) { return e.Engagement.ActionTime.Nanosecond(), 123456789 }},
		{"escaped name",
			replace(t, s[fbTop], `"Gregory Zulauf"`, `"Gr\u00e9gory \"G\" Zulauf"`),
			func(e Event) (any, any) { return e.User.Name, `Grégory "G" Zulauf` }},
		{"escaped key",
			replace(t, s[fbTop], `"name"`, `"na\u006de"`),
			func(e Event) (any, any) { return e.User.Name, "Gregory Zulauf" }},
		{"fractional watchTime",
			mutate(t, s[ttTop], func(e obj) { eng(e)["watchTime"] = json.Number("0.30000000000000004") }),
			func(e Event) (any, any) { return e.Engagement.WatchTime, 0.30000000000000004 }},
		{"purchaseAmount exact",
			mutate(t, s[fbBottom], func(e obj) { eng(e)["purchaseAmount"] = "12345678901234567890.123456789" }),
			func(e Event) (any, any) { return *e.Engagement.PurchaseAmount, "12345678901234567890.123456789" }},
		{"nulls are nil",
			mutate(t, s[ttBottom], func(e obj) { eng(e)["profileId"] = nil }),
			func(e Event) (any, any) {
				g := e.Engagement
				return g.ProfileID == nil && g.PurchasedItem == nil && g.PurchaseAmount == nil, true
			}},
		{"canonical enum strings",
			s[fbBottom],
			func(e Event) (any, any) { return e.User.Gender + e.Engagement.Browser, "non-binaryFirefox" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := checkParse(t, tc.raw, "")
			if got, want := tc.check(e); !reflect.DeepEqual(got, want) {
				t.Fatalf("got %v; want %v", got, want)
			}
		})
	}
}

func TestValidationError(t *testing.T) {
	tests := []struct {
		err  *ValidationError
		want string
	}{
		{&ValidationError{Path: "data.user.age", Reason: "must be an integer"}, "data.user.age: must be an integer"},
		{&ValidationError{Reason: "must be a JSON object"}, "must be a JSON object"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			if got := tc.err.Error(); got != tc.want {
				t.Fatalf("got %q; want %q", got, tc.want)
			}
			var err error = tc.err
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("got errors.Is(err, ErrInvalid) false; want true")
			}
			var ve *ValidationError
			if !errors.As(errors.Join(errors.New("batch"), err), &ve) || ve != tc.err {
				t.Fatalf("got errors.As %v; want %v", ve, tc.err)
			}
		})
	}
	if errors.Is(errors.New("other"), ErrInvalid) {
		t.Fatal("got errors.Is(other, ErrInvalid) true; want false")
	}
}

// TestParserReuse makes sure an Event keeps no reference into the buffers a
// Parser reuses for the next event.
func TestParserReuse(t *testing.T) {
	var p Parser
	lines := append(samples(t), readLines(t, "types.jsonl")...)
	want := make([]Event, len(lines))
	for i, raw := range lines {
		e, err := p.Parse(bytes.Clone(raw))
		if err != nil {
			t.Fatal(err)
		}
		want[i] = e
	}
	for i, raw := range lines {
		// Overwrite the parser's buffers with other events, twice.
		for range 2 {
			for _, other := range lines {
				if _, err := p.Parse(other); err != nil {
					t.Fatal(err)
				}
			}
		}
		fresh, err := Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(want[i], fresh) {
			t.Fatalf("got %+v after reuse; want %+v", want[i], fresh)
		}
	}
}

// TestParseConcurrent exercises the pool; run with -race.
func TestParseConcurrent(t *testing.T) {
	lines := readLines(t, "types.jsonl")
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				raw := lines[(g+i)%len(lines)]
				e, err := Parse(raw)
				if err != nil {
					errs <- err
					return
				}
				if !bytes.Contains(raw, []byte(e.ID)) {
					errs <- errors.New("got an id from another event")
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("got %v; want no error", err)
	}
}

// TestParseAllocs pins the hot path: one allocation per kept string, and
// one more per nullable field that is set.
func TestParseAllocs(t *testing.T) {
	s := samples(t)
	tests := []struct {
		name string
		raw  []byte
		want float64
	}{
		{"facebook bottom", s[fbBottom], 7 + 2}, // id, user id, name, country, city, adId, campaignId; purchaseAmount
		{"facebook top", s[fbTop], 5},           // id, user id, name, country, city
		{"tiktok bottom", s[ttBottom], 3 + 2},   // id, user id, username; profileId
		{"tiktok top", s[ttTop], 4 + 2},         // id, user id, username, country; videoId
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var p Parser
			got := testing.AllocsPerRun(100, func() {
				if _, err := p.Parse(tc.raw); err != nil {
					t.Fatal(err)
				}
			})
			if got > tc.want {
				t.Fatalf("got %v allocations; want at most %v", got, tc.want)
			}
		})
	}
}

func BenchmarkParse(b *testing.B) {
	lines := readLines(b, "types.jsonl")
	size := 0
	for _, l := range lines {
		size += len(l)
	}
	b.Run("Parser", func(b *testing.B) {
		b.SetBytes(int64(size / len(lines)))
		b.ReportAllocs()
		var p Parser
		i := 0
		for b.Loop() {
			if _, err := p.Parse(lines[i%len(lines)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("pooled", func(b *testing.B) {
		b.SetBytes(int64(size / len(lines)))
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if _, err := Parse(lines[i%len(lines)]); err != nil {
					b.Error(err)
					return
				}
				i++
			}
		})
	})
}

// TestRawControlCharacterWithEscape: a raw control character in a string
// that also holds an escape sequence is invalid JSON (and refused by
// PostgreSQL's jsonb), although fastjson's validator lets it pass.
func TestRawControlCharacterWithEscape(t *testing.T) {
	raw := samples(t)[0]
	for _, tt := range []struct{ name, old, new string }{
		{"known field", `"Henry Auer"`, "\"Henry\x1c\\\"Auer\""},
		{"unknown field", `"source":`, "\"note\":\"a\x01\\nb\",\"source\":"},
		{"raw tab", `"Henry Auer"`, "\"Henry\t\\u0041uer\""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			bad := replace(t, raw, tt.old, tt.new)
			_, err := Parse(bad)
			if err == nil || !strings.Contains(err.Error(), "control char") {
				t.Errorf("got %v; want a control character error", err)
			}
		})
	}
	// Escaped control characters are fine.
	ok := replace(t, raw, `"Henry Auer"`, `"Henry\u001c\\Auer"`)
	if _, err := Parse(ok); err != nil {
		t.Errorf("escaped control character: got %v; want nil", err)
	}
}

func TestRawControlInString(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int
	}{
		{`{"a":"b"}`, -1},
		{"{\n\t\"a\": \"b\"\r\n}", -1},
		{"{\"a\":\"\x1c\"}", 6},
		{"{\"a\":\"\\\"\x01\"}", 8},
		{"{\"a\":\"\\\\\",\n\"b\":1}", -1},
	} {
		if got := RawControlInString([]byte(tt.in)); got != tt.want {
			t.Errorf("RawControlInString(%q): got %d; want %d", tt.in, got, tt.want)
		}
	}
}
