package gateway

import (
	"bytes"
	"net/http"
	"strconv"
	"testing"

	"github.com/eventpipe/eventpipe/pkg/natstest"
)

// idTails returns, for each eventId in body, the offset of its last 12
// characters (the end of its UUID), which stamp rewrites per iteration so
// every iteration sends new events instead of duplicates.
func idTails(b *testing.B, body []byte) []int {
	key := []byte(`"eventId":"`)
	var out []int
	for i := 0; ; {
		j := bytes.Index(body[i:], key)
		if j < 0 {
			return out
		}
		start := i + j + len(key)
		end := start + bytes.IndexByte(body[start:], '"')
		if end-start < 12 {
			b.Fatalf("eventId at %d is too short to stamp", start)
		}
		out = append(out, end-12)
		i = end
	}
}

// stamp writes iteration as 12 hex digits over each eventId's tail.
func stamp(body []byte, tails []int, iteration int) {
	var hex [12]byte
	s := strconv.FormatInt(int64(iteration), 16)
	for i := range hex {
		hex[i] = '0'
	}
	copy(hex[12-len(s):], s)
	for _, at := range tails {
		copy(body[at:at+12], hex[:])
	}
}

// BenchmarkWebhook posts bodies of n valid events through the whole
// gateway (HTTP, validation, JetStream publish and ack) to an embedded
// JetStream server sharing the machine.
func BenchmarkWebhook(b *testing.B) {
	ns := natstest.Start(b)
	g := startGateway(b, testOptions(b, ns.ClientURL()))
	for i, n := range []int{1, 100, 1000, 50000} {
		b.Run("events="+strconv.Itoa(n), func(b *testing.B) {
			body := array(events(n, int64(1000+i))...)
			tails := idTails(b, body)
			if len(tails) != n {
				b.Fatalf("found %d eventIds; want %d", len(tails), n)
			}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			iteration := 0
			for b.Loop() {
				iteration++
				stamp(body, tails, iteration)
				a := post(b, g.url, body)
				if a.Status != http.StatusAccepted || a.Result.Accepted != n || a.Result.Duplicates != 0 {
					b.Fatalf("got %d %.200s; want 202 with %d accepted, no duplicates", a.Status, a.Body, n)
				}
			}
			b.ReportMetric(float64(n*iteration)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
