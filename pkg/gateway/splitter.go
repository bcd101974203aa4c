package gateway

import (
	"bytes"
	"errors"
	"io"
	"strconv"

	"github.com/valyala/fastjson"

	"github.com/eventpipe/eventpipe/pkg/event"
)

// minRead is the least room a read is given.
const minRead = 16 << 10

// maxDepth bounds the nesting of the whole body, the array around the
// events included, as encoding/json does; it also bounds the recursion of
// fastjson's validator.
const maxDepth = 10000

// syntaxError is JSON that is not well formed.
type syntaxError struct{ msg string }

func (e *syntaxError) Error() string { return e.msg }

// splitter reads a body one top-level JSON value at a time (the body
// itself, or each element of the array it is) without decoding anything: it
// finds where a value ends by tracking strings and nesting only, then has
// fastjson check the value's syntax. That is several times cheaper than
// encoding/json's scanner, which reads each event twice to hand out a
// json.RawMessage, and for a 50,000-event body it was a third of the
// gateway's CPU.
//
// Only the value being read is in memory; buf grows to the largest value.
type splitter struct {
	r   io.Reader
	buf []byte // buf[pos:] is read but not consumed
	pos int
	err error // the read error that ended the input, io.EOF included
}

func (s *splitter) reset(r io.Reader) {
	s.r, s.buf, s.pos, s.err = r, s.buf[:0], 0, nil
}

// more reads more input behind what is unconsumed, making room first by
// moving the unconsumed bytes to the front when that frees at least half
// of buf, and by doubling buf otherwise; so each byte is copied a bounded
// number of times however small the reads and however large the value. It
// returns false once the input has ended, with the reason in s.err.
func (s *splitter) more() bool {
	if s.err != nil {
		return false
	}
	if cap(s.buf)-len(s.buf) < minRead {
		if s.pos > 0 && s.pos >= len(s.buf)/2 {
			n := copy(s.buf, s.buf[s.pos:])
			s.buf, s.pos = s.buf[:n], 0
		}
		if cap(s.buf)-len(s.buf) < minRead {
			grown := make([]byte, len(s.buf)-s.pos, max(2*cap(s.buf), 4*minRead))
			copy(grown, s.buf[s.pos:])
			s.buf, s.pos = grown, 0
		}
	}
	for {
		n, err := s.r.Read(s.buf[len(s.buf):cap(s.buf)])
		s.buf = s.buf[:len(s.buf)+n]
		if err != nil {
			s.err = err
			return n > 0
		}
		if n > 0 {
			return true
		}
	}
}

// peek skips whitespace and returns the next byte without consuming it;
// at the end of the input it returns s.err (io.EOF for a clean end).
func (s *splitter) peek() (byte, error) {
	for {
		for ; s.pos < len(s.buf); s.pos++ {
			switch c := s.buf[s.pos]; c {
			case ' ', '\t', '\n', '\r':
			default:
				return c, nil
			}
		}
		if !s.more() {
			return 0, s.err
		}
	}
}

// skip consumes the byte peek returned.
func (s *splitter) skip() { s.pos++ }

// element reads the next element of an array whose '[' has been consumed,
// i being the number of elements read before; done reports the closing
// ']' instead. The bytes are valid until the next call.
func (s *splitter) element(i int) (v []byte, done bool, err error) {
	c, err := s.peek()
	if err != nil {
		return nil, false, err
	}
	if c == ']' {
		s.skip()
		return nil, true, nil
	}
	if i > 0 {
		if c != ',' {
			return nil, false, &syntaxError{msg: "invalid character " + strconv.QuoteRune(rune(c)) + " after an event; want ',' or ']'"}
		}
		s.skip()
		if _, err := s.peek(); err != nil {
			return nil, false, err
		}
	}
	v, err = s.value(1)
	return v, false, err
}

// value consumes the value starting at the next byte (peek was called),
// inside outer open containers, and returns it, well formed. The bytes are
// valid until the next call. A value cut short by the end of the input is
// io.ErrUnexpectedEOF.
func (s *splitter) value(outer int) ([]byte, error) {
	n, err := s.scan(maxDepth - outer)
	if err != nil {
		return nil, err
	}
	v := s.buf[s.pos : s.pos+n]
	s.pos += n
	if err := fastjson.ValidateBytes(v); err != nil {
		return nil, &syntaxError{msg: err.Error()}
	}
	// fastjson misses a raw control character in a string that also holds
	// an escape sequence.
	if i := event.RawControlInString(v); i >= 0 {
		return nil, &syntaxError{msg: "invalid character " + strconv.QuoteRune(rune(v[i])) + " in string literal"}
	}
	return v, nil
}

// scan returns the length of the value at s.pos. It only finds the
// value's end: a string, a scalar, or a container up to its matching
// closing bracket; the syntax in between is checked by the caller.
func (s *splitter) scan(limit int) (int, error) {
	switch c := s.buf[s.pos]; {
	case c == '{' || c == '[' || c == '"':
		return s.scanComposite(limit)
	case scalarByte(c):
		return s.scanScalar()
	default:
		return 0, &syntaxError{msg: "invalid character " + strconv.QuoteRune(rune(c)) + " looking for beginning of value"}
	}
}

// scanScalar finds the end of a number, true, false or null: the first byte
// that cannot be part of one. fastjson then says whether it is one.
func (s *splitter) scanScalar() (int, error) {
	for k := 0; ; k++ {
		if s.pos+k == len(s.buf) && !s.more() {
			if errors.Is(s.err, io.EOF) {
				return k, nil
			}
			return 0, s.err
		}
		if !scalarByte(s.buf[s.pos+k]) {
			return k, nil
		}
	}
}

// scanComposite finds the end of a string or a container. Its state
// survives refills, so a huge value is scanned once, not once per read.
// Containers nested deeper than limit are an error.
func (s *splitter) scanComposite(limit int) (int, error) {
	depth, inString, k := 0, false, 0
	for {
		v := s.buf[s.pos:]
		for k < len(v) {
			if inString {
				end, closed := stringEnd(v[k:])
				k += end
				if !closed {
					break
				}
				inString = false
				if depth == 0 {
					return k, nil
				}
				continue
			}
			switch v[k] {
			case '"':
				inString = true
			case '{', '[':
				if depth++; depth > limit {
					return 0, &syntaxError{msg: "exceeded max depth " + strconv.Itoa(maxDepth)}
				}
			case '}', ']':
				if depth--; depth == 0 {
					return k + 1, nil
				}
			}
			k++
		}
		if !s.more() {
			return 0, s.unexpectedEnd()
		}
	}
}

// stringEnd returns, for b starting inside a string, the length of b up to
// and including the closing quote and true; or, when b holds no closing
// quote, how much of b can be skipped (all but an escape cut short by the
// end of b) and false.
func stringEnd(b []byte) (int, bool) {
	k := 0
	for {
		q := bytes.IndexByte(b[k:], '"')
		if q < 0 {
			break
		}
		e := bytes.IndexByte(b[k:k+q], '\\')
		if e < 0 {
			return k + q + 1, true
		}
		// Skip the escape and what it escapes, which may be this quote.
		k += e + 2
	}
	// A run of backslashes at the end pairs up from its start (k is never
	// inside an escape): an odd one ends with an escape still to be read.
	n, run := len(b), 0
	for n-run > k && b[n-run-1] == '\\' {
		run++
	}
	return n - run%2, false
}

// scalarByte reports whether c can be part of a number, true, false or null.
func scalarByte(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '+' || c == '.'
}

// end checks that nothing but whitespace follows the top-level value.
func (s *splitter) end() error {
	c, err := s.peek()
	switch {
	case errors.Is(err, io.EOF):
		return nil
	case err != nil:
		return err
	}
	return &syntaxError{msg: "unexpected " + strconv.QuoteRune(rune(c))}
}

// unexpectedEnd is the error for input that ends inside a value.
func (s *splitter) unexpectedEnd() error {
	if errors.Is(s.err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return s.err
}
