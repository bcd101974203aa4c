package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
)

// chunked returns at most n bytes per Read, so values straddle refills.
type chunked struct {
	b []byte
	n int
}

func (c *chunked) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), c.n, len(c.b))
	copy(p, c.b[:n])
	c.b = c.b[n:]
	return n, nil
}

// splitBody reads body the way the webhook does: the values of a top-level
// array, or a top-level object. It returns the values read before the first
// error, and that error.
func splitBody(body []byte, chunk int) ([][]byte, error) {
	var s splitter
	s.reset(&chunked{b: body, n: chunk})
	first, err := s.peek()
	if err != nil {
		return nil, err
	}
	if first == '{' {
		v, err := s.value(0)
		if err != nil {
			return nil, err
		}
		v = bytes.Clone(v)
		return [][]byte{v}, s.end()
	}
	if first != '[' {
		return nil, errors.New("neither an array nor an object")
	}
	s.skip()
	var out [][]byte
	for i := 0; ; i++ {
		v, done, err := s.element(i)
		if err != nil {
			return out, err
		}
		if done {
			return out, s.end()
		}
		out = append(out, bytes.Clone(v))
	}
}

// decodeBody is the reference: the same reading with encoding/json.
func decodeBody(body []byte) ([][]byte, error) {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '[' && trimmed[0] != '{' {
		return nil, errors.New("neither an array nor an object")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	end := func() error {
		if _, err := dec.Token(); err != io.EOF {
			return errors.New("trailing data")
		}
		return nil
	}
	if trimmed[0] == '{' {
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		return [][]byte{v}, end()
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	var out [][]byte
	for dec.More() {
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return out, err
		}
		out = append(out, v)
	}
	if _, err := dec.Token(); err != nil {
		return out, err
	}
	return out, end()
}

// objects keeps the values that are objects: only those can be published.
func objects(vs [][]byte) [][]byte {
	var out [][]byte
	for _, v := range vs {
		if len(v) > 0 && v[0] == '{' {
			out = append(out, v)
		}
	}
	return out
}

func TestSplitter(t *testing.T) {
	ev := events(3, 50)
	valid := []string{
		string(array(ev...)),
		" \n[\t" + string(ev[0]) + " , " + string(ev[1]) + "\r\n]\n",
		string(ev[2]),
		"[]",
		`[1, -0.5e+3, "a\"]b", true, false, null, [], {}, [{"x":["}"]}]]`,
		`[{"k":"\\"}, {"k":"\\\"{"}]`,
		`[{"u":"\u005d\ud83d\ude00"}]`,
		`{"a":[1,2,{"b":"]]]"}]}` + "   ",
	}
	invalid := []string{
		"", "  ", "x", `"str"`, "1", "[", "[1", "[1,", "[1,]", "[,1]", "[1 2]", "[01]", "[1-2]",
		`[{"a":1]`, `[{"a":1}}`, `[{"a" 1}]`, `[{"a":1,}]`, `[{"a":"b}]`, `[{"a":"\x"}]`,
		"[\"a\tb\"]", `[tru]`, `[nul]`, `[1.]`, `[.5]`, `[+1]`, `[1e]`, `{"a":1}x`, `[] []`, `[{}]]`,
		`{"a":1`, `[{"a":"\u12"}]`, string(array(ev...)) + ",",
	}
	for _, chunk := range []int{1, 3, 64, 1 << 20} {
		for _, body := range valid {
			want, err := decodeBody([]byte(body))
			if err != nil {
				t.Fatalf("reference rejects valid body %q: %v", body, err)
			}
			got, err := splitBody([]byte(body), chunk)
			if err != nil || !slices.EqualFunc(got, want, bytes.Equal) {
				t.Errorf("chunk %d, %q:\n got %q, %v\nwant %q", chunk, body, got, err, want)
			}
		}
		for _, body := range invalid {
			if _, err := decodeBody([]byte(body)); err == nil {
				t.Fatalf("reference accepts invalid body %q", body)
			}
			if got, err := splitBody([]byte(body), chunk); err == nil {
				t.Errorf("chunk %d, %q: got %q and no error; want an error", chunk, body, got)
			}
		}
	}
}

func TestSplitterDepth(t *testing.T) {
	// The depth is the whole body's, the array around the events
	// included, as json.Valid counts it.
	for _, depth := range []int{maxDepth - 1, maxDepth, maxDepth + 1} {
		for _, body := range []string{
			strings.Repeat("[", depth) + strings.Repeat("]", depth),
			`{"a":` + strings.Repeat("[", depth-1) + strings.Repeat("]", depth-1) + "}",
		} {
			_, err := splitBody([]byte(body), 4096)
			if want := depth <= maxDepth; (err == nil) != want || json.Valid([]byte(body)) != want {
				t.Errorf("depth %d, %.8s...: got error %v, json.Valid %t; want valid %t", depth, body, err, json.Valid([]byte(body)), want)
			}
		}
	}
	// Nesting deeper than the limit fails fast, before the body ends.
	r := io.MultiReader(strings.NewReader("["+strings.Repeat("[", 2*maxDepth)), neverEnds{})
	var s splitter
	s.reset(r)
	if _, err := s.peek(); err != nil {
		t.Fatal(err)
	}
	s.skip()
	if _, err := s.peek(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.value(0); err == nil || !strings.Contains(err.Error(), "max depth") {
		t.Errorf("got %v; want a max depth error", err)
	}
}

type neverEnds struct{}

func (neverEnds) Read(p []byte) (int, error) { return copy(p, "[[[["), nil }

func TestSplitterLongString(t *testing.T) {
	// A value far larger than the buffer, read in small pieces, ending in
	// escapes split across reads.
	long := `{"a":"` + strings.Repeat(`x\\\"`, 1<<20) + `"}`
	got, err := splitBody([]byte("["+long+"]"), 999)
	if err != nil || len(got) != 1 || string(got[0]) != long {
		t.Fatalf("got %d values, %v; want the one long value", len(got), err)
	}
}

// FuzzSplitter checks the splitter against encoding/json: the same values
// for every body encoding/json accepts, an error for every body it
// refuses, and never an object encoding/json would not have read.
func FuzzSplitter(f *testing.F) {
	for _, ev := range events(3, 51) {
		f.Add(array(ev, ev), uint16(7))
	}
	for _, s := range []string{`[1,"a\"",{"b":[null,true]}]`, `{"a":"\u00e9"}`, `[{"a":1}x]`, `[01]`, `[{"a":"\\"}]`} {
		f.Add([]byte(s), uint16(2))
	}
	f.Fuzz(func(t *testing.T, body []byte, chunk uint16) {
		want, wantErr := decodeBody(body)
		got, gotErr := splitBody(body, int(chunk)+1)
		if (gotErr == nil) != (wantErr == nil) {
			t.Fatalf("%q: got error %v; want %v", body, gotErr, wantErr)
		}
		if wantErr == nil && !slices.EqualFunc(got, want, bytes.Equal) {
			t.Fatalf("%q:\n got %q\nwant %q", body, got, want)
		}
		if !slices.EqualFunc(objects(got), objects(want), bytes.Equal) {
			t.Fatalf("%q: objects read before the error:\n got %q\nwant %q", body, objects(got), objects(want))
		}
	})
}
