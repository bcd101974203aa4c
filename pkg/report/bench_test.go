package report

import (
	"context"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/eventpipe/eventpipe/pkg/pgtest"
)

// BenchmarkReports times each report over HTTP, end to end, on 100,000
// stored events spread over three days, and reports the median latency:
//
//	go test -run '^$' -bench BenchmarkReports -benchtime 200x ./pkg/report/
func BenchmarkReports(b *testing.B) {
	dbURL := pgtest.Migrated(b)
	insertEvents(b, dbURL, generated(1, 100_000))
	analyze(b, dbURL)
	r := startReporter(b, dbURL)

	reports := []struct{ name, path string }{
		{"events", "/reports/events"},
		{"events_hourly", "/reports/events?interval=hour"},
		{"events_one_day_facebook", "/reports/events?from=2025-06-11&to=2025-06-11&source=facebook"},
		{"revenue", "/reports/revenue"},
		{"revenue_one_day", "/reports/revenue?from=2025-06-11&to=2025-06-11"},
		{"demographics", "/reports/demographics"},
		{"demographics_one_day", "/reports/demographics?from=2025-06-11&to=2025-06-11"},
	}
	for _, rep := range reports {
		b.Run(rep.name, func(b *testing.B) {
			var took []time.Duration
			for b.Loop() {
				start := time.Now()
				resp, err := http.Get(r.url + rep.path)
				if err != nil {
					b.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Fatalf("got status %d; want 200", resp.StatusCode)
				}
				took = append(took, time.Since(start))
			}
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "p50-ms")
		})
	}
}

// analyze refreshes the planner's statistics, as autovacuum would after a
// bulk load.
func analyze(b *testing.B, dbURL string) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "ANALYZE events"); err != nil {
		b.Fatal(err)
	}
}
