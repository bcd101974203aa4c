package collector

import (
	"fmt"
	"testing"
	"time"

	"github.com/eventpipe/eventpipe/pkg/event"
)

// BenchmarkDrainBacklog measures how fast one collector with the default
// settings stores a backlog of 100,000 events published before it starts,
// from its start until every event is committed and acknowledged.
func BenchmarkDrainBacklog(b *testing.B) {
	const backlog = 100_000
	evs := events(b, 11, event.Facebook, backlog)
	var total time.Duration
	for range b.N {
		b.StopTimer()
		env := newEnv(b)
		env.publishAsync(evs)
		b.StartTimer()
		start := time.Now()
		c := env.start(env.options(event.Facebook, nil))
		eventually(b, 10*time.Minute, func() string {
			if got := c.metric("fb_collector_events_processed_total"); got < backlog {
				return fmt.Sprintf("processed: got %v; want %d", got, backlog)
			}
			return ""
		})
		total += time.Since(start)
		b.StopTimer()
		if got := env.count(""); got != backlog {
			b.Fatalf("rows: got %d; want %d", got, backlog)
		}
		if err := c.stop(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*backlog)/total.Seconds(), "events/s")
}
