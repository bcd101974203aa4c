package main

import (
	"bytes"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/eventpipe/eventpipe/pkg/eventgen"
)

// body returns a JSON array of n valid events drawn from seed, as the
// publisher sends them.
func body(n int, seed int64, ts time.Time) []byte {
	g := eventgen.New(seed)
	b := make([]byte, 0, n*480+2)
	b = append(b, '[')
	for i := range n {
		if i > 0 {
			b = append(b, ',')
		}
		e := g.Next(ts)
		b = e.AppendJSON(b)
	}
	return append(b, ']')
}

// idTails returns, for each eventId in body, the offset of its last 12
// characters (the end of its UUID), which stamp overwrites so that every
// request carries new events rather than repeats JetStream would drop.
func idTails(body []byte) ([]int, error) {
	key := []byte(`"eventId":"`)
	var out []int
	for i := 0; ; {
		j := bytes.Index(body[i:], key)
		if j < 0 {
			return out, nil
		}
		start := i + j + len(key)
		end := start + bytes.IndexByte(body[start:], '"')
		if end-start < 12 {
			return nil, fmt.Errorf("eventId at %d is too short to stamp", start)
		}
		out = append(out, end-12)
		i = end
	}
}

// stamp writes n as 12 hex digits over each eventId's tail.
func stamp(body []byte, tails []int, n uint64) {
	var hex [12]byte
	s := strconv.FormatUint(n, 16)
	for i := range hex {
		hex[i] = '0'
	}
	copy(hex[12-len(s):], s)
	for _, at := range tails {
		copy(body[at:at+12], hex[:])
	}
}

// Latency summarises request times in milliseconds.
type Latency struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50Ms"`
	P95 float64 `json:"p95Ms"`
	P99 float64 `json:"p99Ms"`
	Max float64 `json:"maxMs"`
}

// summarize sorts d in place. Percentiles are nearest-rank: with few
// samples a high percentile is simply the slowest one.
func summarize(d []time.Duration) Latency {
	if len(d) == 0 {
		return Latency{}
	}
	slices.Sort(d)
	ms := func(x time.Duration) float64 { return float64(x.Microseconds()) / 1000 }
	return Latency{
		N:   len(d),
		P50: ms(percentile(d, 50)),
		P95: ms(percentile(d, 95)),
		P99: ms(percentile(d, 99)),
		Max: ms(d[len(d)-1]),
	}
}

// percentile returns the nearest-rank p-th percentile of sorted d.
func percentile(d []time.Duration, p float64) time.Duration {
	rank := int(math.Ceil(float64(len(d))*p/100)) - 1
	return d[min(max(rank, 0), len(d)-1)]
}
