package collector

import (
	"errors"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eventpipe/eventpipe/pkg/event"
)

// Reasons of <prefix>events_failed_total: a closed set, so the label stays
// bounded whatever arrives on the stream.
const (
	// reasonDecode: a message that is not a valid event of this source,
	// dead-lettered.
	reasonDecode = "decode"
	// reasonDBRejected: PostgreSQL refused the event for good on a
	// delivery below MAX_DELIVER; it was nak'd to be tried again later.
	reasonDBRejected = "db_rejected"
	// reasonDBPermanent: PostgreSQL refused the event on its last allowed
	// delivery; it was dead-lettered.
	reasonDBPermanent = "db_permanent"
	// reasonDeadLetter: dead-lettering a message failed; it was nak'd and
	// comes back.
	reasonDeadLetter = "deadletter"
)

// unknownType labels messages whose subject names no event type of the
// source.
const unknownType = "unknown"

// metrics are the collector's metrics (api.md, "Metrics", plus extras for
// operating it), built per instance so several collectors can run in one
// process.
type metrics struct {
	accepted     *prometheus.CounterVec // event_type; every delivery received
	processed    *prometheus.CounterVec // event_type; committed and acknowledged
	failed       *prometheus.CounterVec // reason
	duplicates   prometheus.Counter
	duration     prometheus.Histogram
	batchSize    prometheus.Histogram
	redeliveries prometheus.Counter
	dbRetries    prometheus.Counter
	pending      prometheus.Gauge
	ackPending   prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer, prefix string, source event.Source, pool *pgxpool.Pool) (*metrics, error) {
	m := &metrics{
		accepted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: prefix + "events_accepted_total",
			Help: "Event messages received from JetStream, redeliveries included.",
		}, []string{"event_type"}),
		processed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: prefix + "events_processed_total",
			Help: "Events committed to PostgreSQL and acknowledged, duplicates included.",
		}, []string{"event_type"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: prefix + "events_failed_total",
			Help: "Messages that could not be stored, by reason: decode (dead-lettered), " +
				"db_rejected (refused by PostgreSQL, retried later), db_permanent (refused on the last " +
				"allowed delivery, dead-lettered), deadletter (dead-lettering failed, retried later).",
		}, []string{"reason"}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: prefix + "events_duplicates_total",
			Help: "Events acknowledged without a new row: their eventId was already stored.",
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: prefix + "event_processing_duration_seconds",
			Help: "Time to store and acknowledge one batch, from its last message received.",
			// From a sub-millisecond batch to one that waited tens of
			// seconds on the database.
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    prefix + "batch_size",
			Help:    "Messages per batch.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 15),
		}),
		redeliveries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: prefix + "redeliveries_total",
			Help: "Messages received that JetStream had delivered before.",
		}),
		dbRetries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: prefix + "db_retries_total",
			Help: "Inserts tried again after a failure that may pass.",
		}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: prefix + "consumer_pending",
			Help: "Messages of the source not yet delivered to any replica (the lag).",
		}),
		ackPending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: prefix + "consumer_ack_pending",
			Help: "Messages delivered to replicas and not yet acknowledged.",
		}),
	}
	// Every known label value starts at zero, so dashboards and rates see
	// a series before its first event.
	for _, st := range event.Stages {
		for _, t := range event.Types(source, st) {
			m.accepted.WithLabelValues(t)
			m.processed.WithLabelValues(t)
		}
	}
	for _, r := range []string{reasonDecode, reasonDBRejected, reasonDBPermanent, reasonDeadLetter} {
		m.failed.WithLabelValues(r)
	}
	cs := []prometheus.Collector{m.accepted, m.processed, m.failed, m.duplicates, m.duration,
		m.batchSize, m.redeliveries, m.dbRetries, m.pending, m.ackPending,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: prefix + "db_pool_acquired_conns",
			Help: "PostgreSQL connections in use.",
		}, func() float64 { return float64(pool.Stat().AcquiredConns()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: prefix + "db_pool_max_conns",
			Help: "Size limit of the PostgreSQL pool.",
		}, func() float64 { return float64(pool.Stat().MaxConns()) }),
		// Its rate is the average number of callers waiting for a
		// connection: above zero, the pool is saturated.
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: prefix + "db_pool_acquire_wait_seconds_total",
			Help: "Time spent waiting for a PostgreSQL connection because the pool had none idle.",
		}, func() float64 { return pool.Stat().EmptyAcquireWaitTime().Seconds() }),
	}
	var errs []error
	for _, c := range cs {
		errs = append(errs, reg.Register(c))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return m, nil
}

// typeLabel returns the event_type label of a message on subject, given
// the source's subject prefix ("events.facebook."): the type the subject
// names when it is one of the source's, else "unknown".
func typeLabel(source event.Source, prefix, subject string) string {
	t, ok := strings.CutPrefix(subject, prefix)
	if !ok {
		return unknownType
	}
	if _, ok := event.StageOf(source, t); !ok {
		return unknownType
	}
	return t
}
