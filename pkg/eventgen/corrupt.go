package eventgen

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// corruption is one of the mutations the real publisher applies to the
// event it appends to about one POST in ten (events.md, "The corruptions
// seen"). Each works on the decoded JSON object so it can remove fields and
// change their types, which an event.Event cannot express.
type corruption struct {
	name  string
	apply func(ev map[string]any)
}

// corruptions is a read-only table. The publisher picks among them without
// looking at the event's source, so a facebook-only corruption applied to a
// tiktok event removes nothing or adds a stray field, and the event stays
// valid: the gateway must cope with both outcomes.
var corruptions = [...]corruption{
	{"invalid-timestamp", func(ev map[string]any) { ev["timestamp"] = "invalid-timestamp" }},
	{"missing-event-id", func(ev map[string]any) { delete(ev, "eventId") }},
	{"missing-user-name", func(ev map[string]any) { delete(object(ev, "data", "user"), "name") }},
	{"missing-username", func(ev map[string]any) { delete(object(ev, "data", "user"), "username") }},
	{"missing-user", func(ev map[string]any) { delete(object(ev, "data"), "user") }},
	{"invalid-stage", func(ev map[string]any) { ev["funnelStage"] = "invalid-stage" }},
	{"event-type-array", func(ev map[string]any) { ev["eventType"] = []any{ev["eventType"]} }},
	{"negative-action-time", func(ev map[string]any) { set(ev, "actionTime", -1, "data", "engagement") }},
	{"negative-watch-time", func(ev map[string]any) { set(ev, "watchTime", -1, "data", "engagement") }},
	{"missing-ad-id", func(ev map[string]any) { delete(object(ev, "data", "engagement"), "adId") }},
	{"missing-purchased-item", func(ev map[string]any) { delete(object(ev, "data", "engagement"), "purchasedItem") }},
	{"alien-gender", func(ev map[string]any) { set(ev, "gender", "alien", "data", "user") }},
	{"followers-not-a-number", func(ev map[string]any) { set(ev, "followers", "not-a-number", "data", "user") }},
}

// Corruptions returns the names of the corruptions Corrupt picks from, for
// Apply.
func Corruptions() []string {
	names := make([]string, len(corruptions))
	for i, c := range corruptions {
		names[i] = c.name
	}
	return names
}

// Corrupt returns raw, one encoded event, with one corruption picked at
// random applied. A raw that is not a JSON object cannot be corrupted the
// publisher's way and is returned unchanged.
func (g *Generator) Corrupt(raw []byte) []byte {
	c := corruptions[g.rng.IntN(len(corruptions))]
	out, err := applyTo(c, raw)
	if err != nil {
		return raw
	}
	return out
}

// Apply returns raw, one encoded event, with the named corruption applied.
func Apply(name string, raw []byte) ([]byte, error) {
	for _, c := range corruptions {
		if c.name == name {
			return applyTo(c, raw)
		}
	}
	return nil, fmt.Errorf("unknown corruption %q", name)
}

func applyTo(c corruption, raw []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	// Numbers stay json.Number so a re-encoded amount or count is written
	// exactly as it came.
	dec.UseNumber()
	var ev map[string]any
	if err := dec.Decode(&ev); err != nil {
		return nil, fmt.Errorf("decode event: %w", err)
	}
	if ev == nil {
		return nil, fmt.Errorf("decode event: not an object")
	}
	c.apply(ev)
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(ev); err != nil {
		return nil, fmt.Errorf("encode event: %w", err)
	}
	return bytes.TrimSuffix(out.Bytes(), []byte("\n")), nil
}

// object returns the object at path below ev, or nil (which delete accepts)
// when some step is missing or not an object.
func object(ev map[string]any, path ...string) map[string]any {
	m := ev
	for _, k := range path {
		next, ok := m[k].(map[string]any)
		if !ok {
			return nil
		}
		m = next
	}
	return m
}

// set writes key=v in the object at path below ev, creating missing objects
// on the way so the corruption always shows; a step that holds something
// other than an object is left alone rather than replaced wholesale.
func set(ev map[string]any, key string, v any, path ...string) {
	m := ev
	for _, k := range path {
		switch next := m[k].(type) {
		case map[string]any:
			m = next
		case nil:
			created := map[string]any{}
			m[k] = created
			m = created
		default:
			return
		}
	}
	m[key] = v
}
