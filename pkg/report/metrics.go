package report

import (
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// The report label values.
const (
	reportEvents       = "events"
	reportRevenue      = "revenue"
	reportDemographics = "demographics"
)

// metrics are the reporter's Prometheus series (api.md "Metrics"), built
// per instance so tests can run several reporters in one process.
type metrics struct {
	// generated counts reports answered 200.
	generated *prometheus.CounterVec
	// duration times the database work of every report that reached the
	// database, failed ones included: a timeout is exactly the latency an
	// operator needs to see.
	duration *prometheus.HistogramVec
	// errors counts reports not answered 200, by error code
	// (invalid_parameter, timeout, unavailable, internal, canceled).
	errors *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		generated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reporter_reports_generated_total",
			Help: "Reports generated and answered successfully, by report.",
		}, []string{"report"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "reporter_report_generation_duration_seconds",
			Help: "Time spent generating a report in the database, by report.",
			// From a cached sub-millisecond answer to a scan of months of
			// events cut by QUERY_TIMEOUT.
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"report"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reporter_report_errors_total",
			Help: "Report requests that failed, by report and error code.",
		}, []string{"report", "code"}),
	}
	for _, c := range []prometheus.Collector{m.generated, m.duration, m.errors} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	// Every report shows up at zero from the start, so dashboards and rate()
	// see the series before the first request.
	for _, r := range []string{reportEvents, reportRevenue, reportDemographics} {
		m.generated.WithLabelValues(r)
		m.duration.WithLabelValues(r)
		for _, code := range []string{codeInvalidParameter, codeTimeout, codeUnavailable, codeInternal, codeCanceled} {
			m.errors.WithLabelValues(r, code)
		}
	}
	return m, nil
}

// registerPool registers the metrics of the PostgreSQL pool's saturation,
// read from the pool at scrape time.
func registerPool(reg prometheus.Registerer, pool *pgxpool.Pool) error {
	for _, c := range []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "reporter_db_pool_acquired_conns",
			Help: "PostgreSQL connections in use.",
		}, func() float64 { return float64(pool.Stat().AcquiredConns()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "reporter_db_pool_max_conns",
			Help: "Size limit of the PostgreSQL pool (DB_MAX_CONNS).",
		}, func() float64 { return float64(pool.Stat().MaxConns()) }),
		// Its rate is the average number of reports waiting for a
		// connection: above zero, the pool is saturated.
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "reporter_db_pool_acquire_wait_seconds_total",
			Help: "Time spent waiting for a PostgreSQL connection because the pool had none idle.",
		}, func() float64 { return pool.Stat().EmptyAcquireWaitTime().Seconds() }),
	} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register pool metrics: %w", err)
		}
	}
	return nil
}
