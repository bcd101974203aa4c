package gateway

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eventpipe/eventpipe/pkg/event"
)

// Why events fail (gateway_events_failed_total's reason), as indexes
// into metrics.failed.
const (
	failValidation = iota // rejected: invalid
	failPublish           // valid, but not acknowledged by JetStream
)

// Source indexes: the per-source counters are resolved once, so the hot
// path adds to a Counter instead of hashing label values per event.
const (
	srcFacebook = iota
	srcTikTok
	srcUnknown
	numSources = srcTikTok + 1
	numLabels  = srcUnknown + 1
)

func sourceLabel(i int) string {
	switch i {
	case srcFacebook:
		return string(event.Facebook)
	case srcTikTok:
		return string(event.TikTok)
	}
	return "unknown"
}

func sourceIndex(s event.Source) int {
	if s == event.TikTok {
		return srcTikTok
	}
	return srcFacebook
}

// durationBuckets run from half a millisecond to about half a minute: a
// one-event request takes under a millisecond, a 50,000-event one seconds.
func durationBuckets() []float64 { return prometheus.ExponentialBuckets(0.0005, 2, 17) }

// metrics are the gateway's instruments, built per instance so tests can
// run several gateways in one process. The names are a contract (api.md,
// "Metrics").
type metrics struct {
	accepted   [numSources]prometheus.Counter
	processed  [numSources]prometheus.Counter
	duplicates [numSources]prometheus.Counter
	failed     [numLabels][2]prometheus.Counter // [source][failValidation or failPublish]

	duration        prometheus.Histogram
	publishDuration prometheus.Histogram
	requests        *prometheus.CounterVec
	deadLetter      *prometheus.CounterVec
	deadLetterLost  prometheus.Counter
	deadLetterSkip  prometheus.Counter
}

// newMetrics registers the gateway's metrics with reg. inFlight reports
// the publishes awaiting an ack; it is read at scrape time so the gauge is
// exact without touching it per event.
func newMetrics(reg prometheus.Registerer, inFlight func() float64) (*metrics, error) {
	accepted := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gateway_events_accepted_total",
		Help: "Valid events received, by source.",
	}, []string{"source"})
	processed := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gateway_events_processed_total",
		Help: "Events acknowledged by JetStream, by source.",
	}, []string{"source"})
	failed := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gateway_events_failed_total",
		Help: "Events not stored: reason validation (rejected) or publish (not acknowledged by JetStream).",
	}, []string{"source", "reason"})
	duplicates := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gateway_events_duplicate_total",
		Help: "Events JetStream acknowledged as duplicates of an eventId it already holds.",
	}, []string{"source"})
	m := &metrics{
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "gateway_event_processing_duration_seconds",
			Help:    "Time to handle one webhook request, from arrival to answer.",
			Buckets: durationBuckets(),
		}),
		publishDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "gateway_publish_duration_seconds",
			Help:    "JetStream publish-to-ack latency, sampled.",
			Buckets: durationBuckets(),
		}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_requests_total",
			Help: "Webhook requests by HTTP status code.",
		}, []string{"code"}),
		deadLetter: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_deadletter_total",
			Help: "Rejected events sent to the dead-letter stream, by the field at fault.",
		}, []string{"reason"}),
		deadLetterLost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gateway_deadletter_failures_total",
			Help: "Rejected events whose dead-letter publish failed; they are only in the response and the log.",
		}),
		deadLetterSkip: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gateway_deadletter_skipped_total",
			Help: "Rejected events not dead-lettered because their request passed DEADLETTER_MAX_PER_REQUEST; counted only.",
		}),
	}
	for i := range numSources {
		m.accepted[i] = accepted.WithLabelValues(sourceLabel(i))
		m.processed[i] = processed.WithLabelValues(sourceLabel(i))
		m.duplicates[i] = duplicates.WithLabelValues(sourceLabel(i))
	}
	for i := range numLabels {
		m.failed[i][failValidation] = failed.WithLabelValues(sourceLabel(i), "validation")
		m.failed[i][failPublish] = failed.WithLabelValues(sourceLabel(i), "publish")
	}
	// Every known label value starts at zero, so dashboards and rate() see
	// the series before the first request, rejection or failure.
	for _, code := range []int{http.StatusAccepted, http.StatusBadRequest, http.StatusUnauthorized, http.StatusRequestEntityTooLarge,
		http.StatusUnsupportedMediaType, http.StatusServiceUnavailable} {
		m.requests.WithLabelValues(strconv.Itoa(code))
	}
	for field := range eventFields {
		m.deadLetter.WithLabelValues(field)
	}
	m.deadLetter.WithLabelValues(reasonLabel(""))
	m.deadLetter.WithLabelValues(reasonLabel("data.unknown"))
	inFlightGauge := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "gateway_publish_in_flight",
		Help: "JetStream publishes awaiting an ack.",
	}, inFlight)
	var errs []error
	for _, c := range []prometheus.Collector{
		accepted, processed, failed, duplicates, m.duration, m.publishDuration,
		m.requests, m.deadLetter, m.deadLetterLost, m.deadLetterSkip, inFlightGauge,
	} {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("register metrics: %w", err)
	}
	return m, nil
}
