package event

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

// FuzzParse checks that Parse never panics, that every error is a
// ValidationError, and that every event it accepts encodes to valid JSON
// that parses back to the same Event.
func FuzzParse(f *testing.F) {
	base := samples(f)
	for _, raw := range base {
		f.Add(raw)
	}
	for _, raw := range readLines(f, "types.jsonl") {
		f.Add(raw)
	}
	for _, c := range corruptions() {
		for _, raw := range base {
			f.Add(mutate(f, raw, c.apply))
		}
	}
	for _, tc := range ruleCases(f) {
		f.Add(tc.raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		e, err := Parse(raw)
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("got %T %v; want a *ValidationError", err, err)
			}
			if len(err.Error()) > maxErrorLen {
				t.Fatalf("got an error of %d bytes; want at most %d", len(err.Error()), maxErrorLen)
			}
			return
		}
		out := e.AppendJSON(nil)
		if !json.Valid(out) {
			t.Fatalf("got invalid JSON %q from %q", out, raw)
		}
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("got %v parsing %q (from %q); want no error", err, out, raw)
		}
		if !reflect.DeepEqual(again, e) {
			t.Fatalf("got %+v after a round trip; want %+v", again, e)
		}
	})
}
