package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The samples of events.md, in the order of testdata/samples.jsonl.
const (
	fbBottom = iota // checkout.complete
	fbTop           // ad.view
	ttBottom        // profile.visit
	ttTop           // video.view
)

var baseNames = map[int]string{fbTop: "facebook top", fbBottom: "facebook bottom", ttTop: "tiktok top", ttBottom: "tiktok bottom"}

// readLines returns the non-empty lines of a testdata file.
func readLines(tb testing.TB, name string) [][]byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		tb.Fatal(err)
	}
	var lines [][]byte
	for _, l := range bytes.Split(b, []byte("\n")) {
		if len(bytes.TrimSpace(l)) > 0 {
			lines = append(lines, l)
		}
	}
	return lines
}

func samples(tb testing.TB) [][]byte {
	tb.Helper()
	s := readLines(tb, "samples.jsonl")
	if len(s) != 4 {
		tb.Fatalf("got %d samples; want 4", len(s))
	}
	return s
}

// maxErrorLen bounds error texts in tests: a 64-byte quoted value plus the
// longest reason, or a bounded JSON parser message.
const maxErrorLen = 320

type obj = map[string]any

// mutate decodes raw, lets f change it and encodes it again. Numbers stay
// as written thanks to UseNumber.
func mutate(tb testing.TB, raw []byte, f func(e obj)) []byte {
	tb.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var e obj
	if err := dec.Decode(&e); err != nil {
		tb.Fatal(err)
	}
	f(e)
	out, err := json.Marshal(e)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// replace substitutes new for the first old in raw, failing the test when
// old is absent so a fixture change cannot silently turn a case into a no-op.
func replace(tb testing.TB, raw []byte, old, new string) []byte {
	tb.Helper()
	if !bytes.Contains(raw, []byte(old)) {
		tb.Fatalf("%q not found in %s", old, raw)
	}
	return bytes.Replace(raw, []byte(old), []byte(new), 1)
}

func data(e obj) obj { return e["data"].(obj) }
func user(e obj) obj { return data(e)["user"].(obj) }
func eng(e obj) obj  { return data(e)["engagement"].(obj) }

// checkParse parses raw and compares the outcome with want: "" for a valid
// event, else the expected error text; a want ending in * is a prefix, for
// errors that quote the JSON parser. Error texts stay short whatever the
// input, since they end up in responses and logs.
func checkParse(t *testing.T, raw []byte, want string) Event {
	t.Helper()
	e, err := Parse(raw)
	if want == "" {
		if err != nil {
			t.Fatalf("got error %q; want none (event %s)", err, raw)
		}
		return e
	}
	if err == nil {
		t.Fatalf("got no error; want %q (event %s)", want, raw)
	}
	got := err.Error()
	if prefix, ok := strings.CutSuffix(want, "*"); ok {
		if !strings.HasPrefix(got, prefix) {
			t.Fatalf("got error %q; want one starting with %q", got, prefix)
		}
	} else if got != want {
		t.Fatalf("got error %q; want %q", got, want)
	}
	if len(got) > maxErrorLen {
		t.Fatalf("got an error of %d bytes; want at most %d", len(got), maxErrorLen)
	}
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("got errors.Is(err, ErrInvalid) false for %q; want true", err)
	}
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("got %T; want *ValidationError", err)
	}
	return e
}
