package main

import (
	"fmt"
	"strings"
)

// The dashboards use only the metrics of api.md "Metrics", the extras each
// service's metrics.go adds for operators, the Go and process collectors'
// metrics, and up. Rates are over one minute: short enough to see a burst,
// long enough for a 10s scrape interval.

// services are the scrape jobs (manifests/compose/prometheus.yml; the
// chart's ServiceMonitor sets the same job names).
const services = `job=~"gateway|fb-collector|ttk-collector|reporter"`

// collector is one of the two collector services.
type collector struct {
	name   string // service and scrape job
	prefix string // of its metric names
}

func collectors() []collector {
	return []collector{
		{name: "fb-collector", prefix: "fb_collector_"},
		{name: "ttk-collector", prefix: "ttk_collector_"},
	}
}

// deadLettered are the collector failure reasons that end on the
// dead-letter stream; the others are retried.
const deadLettered = `reason=~"decode|db_permanent"`

// latency returns the p50, p95 and p99 of a histogram over one minute,
// its buckets selected by matchers.
func latency(histogram, matchers string) []q {
	var qs []q
	for _, p := range []struct{ quantile, legend string }{{"0.5", "p50"}, {"0.95", "p95"}, {"0.99", "p99"}} {
		qs = append(qs, q{
			expr:   fmt.Sprintf("histogram_quantile(%s, sum by (le) (rate(%s_bucket%s[1m])))", p.quantile, histogram, matchers),
			legend: p.legend,
		})
	}
	return qs
}

// collectorsSum returns sum(f(<prefix>metric matchers[window])) of every
// collector, added up.
func collectorsSum(f, metric, matchers, window string) string {
	var parts []string
	for _, c := range collectors() {
		parts = append(parts, fmt.Sprintf("sum(%s(%s%s%s[%s]))", f, c.prefix, metric, matchers, window))
	}
	return strings.Join(parts, " + ")
}

func dashboards() []dashboard {
	return []dashboard{overview(), gateway(), collectorsDashboard(), reporter()}
}

func overview() dashboard {
	in := `sum(rate(gateway_events_accepted_total[1m]))`
	stored := collectorsSum("rate", "events_processed_total", "", "1m")
	backlog := `max(fb_collector_consumer_pending) + max(ttk_collector_consumer_pending)`
	// Received is every event the gateway read: valid (accepted) or not.
	received := `(sum(rate(gateway_events_accepted_total[1m])) + sum(rate(gateway_events_failed_total{reason="validation"}[1m])))`
	failed := `(sum(rate(gateway_events_failed_total[1m])) + ` + collectorsSum("rate", "events_failed_total", "{"+deadLettered+"}", "1m") + `)`
	errorRatio := failed + " / " + received

	g := &grid{}
	g.row("Overview: events in vs stored, lag, errors")
	g.add(4, 4, single{title: "Events in", unit: "ops", decimals: 1, thresholds: steps(),
		description: "Valid events the gateway accepted per second (1m rate).",
		query:       q{expr: in}}.panel())
	g.add(4, 4, single{title: "Events stored", unit: "ops", decimals: 1, thresholds: steps(),
		description: "Events the collectors committed to PostgreSQL and acknowledged per second (1m rate), repeats included.",
		query:       q{expr: stored}}.panel())
	g.add(4, 4, single{title: "Backlog", unit: "short", decimals: 0,
		thresholds:  steps(level{10000, "orange"}, level{100000, "red"}),
		description: "Events in JetStream not yet delivered to a collector (consumer num_pending), both sources.",
		query:       q{expr: backlog}}.panel())
	g.add(4, 4, single{title: "Error ratio", unit: "percentunit", decimals: 2,
		thresholds:  steps(level{0.01, "orange"}, level{0.05, "red"}),
		description: "Events not stored (rejected or unacknowledged at the gateway, dead-lettered by a collector) over events received (1m rates).",
		query:       q{expr: errorRatio}}.panel())
	g.add(4, 4, single{title: "Dead-lettered", unit: "short", decimals: 0, instant: true,
		thresholds:  steps(level{1, "orange"}),
		description: "Events put on the DEADLETTER stream in the selected range: rejected by the gateway, or poison at a collector.",
		query: q{expr: `sum(increase(gateway_deadletter_total[$__range])) + ` +
			collectorsSum("increase", "events_failed_total", "{"+deadLettered+"}", "$__range")}}.panel())
	g.add(4, 4, single{title: "Instances down", unit: "short", decimals: 0,
		thresholds:  steps(level{1, "red"}),
		description: "Service instances Prometheus cannot scrape.",
		query:       q{expr: `sum(1 - up{` + services + `})`}}.panel())

	g.add(12, 8, series{title: "End to end: events in vs stored", unit: "ops",
		description: "In: accepted at the gateway. Stored: committed by the collectors. Stored trailing in for long means a backlog is building.",
		queries:     []q{{in, "in (accepted at the gateway)"}, {stored, "stored (committed by the collectors)"}}}.panel())
	g.add(12, 8, series{title: "Lag: events waiting in JetStream", unit: "short",
		description: "Consumer num_pending per collector: events not yet delivered. It is the backlog an autoscaler reads.",
		queries: []q{
			{`max(fb_collector_consumer_pending)`, "fb-collector"},
			{`max(ttk_collector_consumer_pending)`, "ttk-collector"},
		}}.panel())
	g.add(12, 8, series{title: "Error ratio over time", unit: "percentunit",
		description: "Events not stored over events received, as in the stat above.",
		queries:     []q{{errorRatio, "failed / received"}}}.panel())
	g.add(12, 8, series{title: "Dead-lettered per minute, by origin", unit: "opm",
		description: "What reaches the DEADLETTER stream. The gateway's share is rejected input; anything from a collector is an event that passed the gateway and still could not be stored.",
		queries: []q{
			{`sum(increase(gateway_deadletter_total[1m]))`, "gateway (rejected)"},
			{`sum(increase(fb_collector_events_failed_total{` + deadLettered + `}[1m]))`, "fb-collector (poison)"},
			{`sum(increase(ttk_collector_events_failed_total{` + deadLettered + `}[1m]))`, "ttk-collector (poison)"},
		}}.panel())

	g.row("Services")
	g.add(8, 7, series{title: "Instances up", unit: "short",
		description: "1 while Prometheus scrapes the instance.",
		queries:     []q{{`up{` + services + `}`, "{{job}} {{instance}}"}}}.panel())
	g.add(8, 7, series{title: "CPU", unit: "short",
		description: "CPU cores used, per service.",
		queries:     []q{{`sum by (job) (rate(process_cpu_seconds_total{` + services + `}[1m]))`, "{{job}}"}}}.panel())
	g.add(8, 7, series{title: "Resident memory", unit: "bytes",
		queries: []q{{`sum by (job) (process_resident_memory_bytes{` + services + `})`, "{{job}}"}}}.panel())
	return newDashboard("overview.json", "eventpipe-overview", "eventpipe / Overview",
		"The pipeline end to end: events in at the gateway vs stored by the collectors, the JetStream backlog, errors and dead letters.", g)
}

func gateway() dashboard {
	g := &grid{}
	g.row("Events in the selected range")
	g.add(6, 4, single{title: "Accepted", unit: "short", decimals: 0, instant: true, thresholds: steps(),
		description: "Valid events received (gateway_events_accepted_total), repeats included.",
		query:       q{expr: `sum(increase(gateway_events_accepted_total[$__range]))`}}.panel())
	g.add(6, 4, single{title: "Processed", unit: "short", decimals: 0, instant: true, thresholds: steps(),
		description: "Events JetStream acknowledged (gateway_events_processed_total).",
		query:       q{expr: `sum(increase(gateway_events_processed_total[$__range]))`}}.panel())
	g.add(6, 4, single{title: "Failed", unit: "short", decimals: 0, instant: true,
		thresholds:  steps(level{1, "orange"}),
		description: "Events rejected as invalid (reason validation) or not acknowledged by JetStream (reason publish).",
		query:       q{expr: `sum(increase(gateway_events_failed_total[$__range]))`}}.panel())
	g.add(6, 4, single{title: "Duplicates", unit: "short", decimals: 0, instant: true, thresholds: steps(),
		description: "Events JetStream recognised as repeats of an eventId within its duplicate window.",
		query:       q{expr: `sum(increase(gateway_events_duplicate_total[$__range]))`}}.panel())

	g.row("Throughput")
	g.add(12, 8, series{title: "Events per second by source", unit: "ops",
		queries: []q{
			{`sum by (source) (rate(gateway_events_accepted_total[1m]))`, "accepted {{source}}"},
			{`sum by (source) (rate(gateway_events_processed_total[1m]))`, "processed {{source}}"},
		}}.panel())
	g.add(12, 8, series{title: "Failed events per second", unit: "ops",
		description: "validation: rejected and dead-lettered; publish: valid but not acknowledged by JetStream (the request got 503).",
		queries:     []q{{`sum by (source, reason) (rate(gateway_events_failed_total[1m]))`, "{{reason}} {{source}}"}}}.panel())

	g.row("Latency")
	g.add(12, 8, series{title: "Request latency", unit: "s",
		description: "One webhook request from arrival to answer, which waits for every event's JetStream acknowledgement.",
		queries:     latency("gateway_event_processing_duration_seconds", "")}.panel())
	g.add(12, 8, series{title: "JetStream publish latency", unit: "s",
		description: "Publish to acknowledgement, one publish in 64 sampled.",
		queries:     latency("gateway_publish_duration_seconds", "")}.panel())

	g.row("Requests and JetStream")
	g.add(12, 8, series{title: "Requests by status", unit: "reqps",
		queries: []q{{`sum by (code) (rate(gateway_requests_total[1m]))`, "{{code}}"}}}.panel())
	g.add(12, 8, series{title: "Publishes awaiting an ack", unit: "short",
		description: "Asynchronous publishes in flight per instance; at PUBLISH_MAX_PENDING new publishes wait, and requests slow down.",
		queries:     []q{{`sum by (instance) (gateway_publish_in_flight)`, "{{instance}}"}}}.panel())

	g.row("Dead letters")
	g.add(12, 8, series{title: "Dead-lettered per minute, by reason", unit: "opm", stacked: true, legendTable: true,
		description: "Rejected events sent to deadletter.gateway, by the field at fault (event: the event as a whole; other: a field outside events.md).",
		queries:     []q{{`sum by (reason) (increase(gateway_deadletter_total[1m]))`, "{{reason}}"}}}.panel())
	g.add(12, 8, series{title: "Dead-letter publishes lost per minute", unit: "opm",
		description: "Rejected events whose dead-letter publish failed: they are only in the response and the log line.",
		queries:     []q{{`sum(increase(gateway_deadletter_failures_total[1m]))`, "lost"}}}.panel())
	return newDashboard("gateway.json", "eventpipe-gateway", "eventpipe / Gateway",
		"POST /webhook: events accepted, acknowledged by JetStream and failed; request and publish latency; dead letters.", g)
}

func collectorsDashboard() dashboard {
	g := &grid{}
	// Each kind of panel is a line with fb-collector on the left and
	// ttk-collector on the right.
	each := func(w, h int, f func(c collector) panel) {
		for _, c := range collectors() {
			g.add(w, h, f(c))
		}
	}
	g.row("Throughput, per minute (1m windows), summed over replicas")
	each(12, 7, func(c collector) panel {
		return series{title: c.name + ": accepted by event type", unit: "opm", stacked: true,
			description: "Messages received from JetStream, redeliveries included.",
			queries:     []q{{`sum by (event_type) (increase(` + c.prefix + `events_accepted_total[1m]))`, "{{event_type}}"}}}.panel()
	})
	each(12, 7, func(c collector) panel {
		return series{title: c.name + ": processed by event type", unit: "opm", stacked: true,
			description: "Events committed to PostgreSQL and acknowledged, duplicates included.",
			queries:     []q{{`sum by (event_type) (increase(` + c.prefix + `events_processed_total[1m]))`, "{{event_type}}"}}}.panel()
	})
	each(12, 7, func(c collector) panel {
		return series{title: c.name + ": failed by reason", unit: "opm", stacked: true,
			description: "decode and db_permanent are dead-lettered; db_rejected is retried later; deadletter means dead-lettering failed and the message comes back.",
			queries:     []q{{`sum by (reason) (increase(` + c.prefix + `events_failed_total[1m]))`, "{{reason}}"}}}.panel()
	})

	g.row("Lag")
	each(12, 8, func(c collector) panel {
		return series{title: c.name + ": lag", unit: "short",
			description: "num_pending: events of the source not yet delivered to any replica. ack pending: delivered, not yet acknowledged (bounded by MAX_ACK_PENDING).",
			queries: []q{
				{`max(` + c.prefix + `consumer_pending)`, "pending (num_pending)"},
				{`max(` + c.prefix + `consumer_ack_pending)`, "delivered, awaiting ack"},
			}}.panel()
	})

	g.row("Duplicates and redeliveries, per minute")
	each(12, 7, func(c collector) panel {
		return series{title: c.name + ": duplicates", unit: "opm",
			description: "Events acknowledged without a new row: their eventId was already stored (repeats past JetStream's duplicate window, or redeliveries of stored events).",
			queries:     []q{{`sum(increase(` + c.prefix + `events_duplicates_total[1m]))`, "duplicates"}}}.panel()
	})
	each(12, 7, func(c collector) panel {
		return series{title: c.name + ": redeliveries", unit: "opm",
			description: "Messages JetStream delivered again: after a crash, an ack timeout or a retry.",
			queries:     []q{{`sum(increase(` + c.prefix + `redeliveries_total[1m]))`, "redeliveries"}}}.panel()
	})

	g.row("Batches")
	each(12, 8, func(c collector) panel {
		return series{title: c.name + ": batch size", unit: "short",
			description: "Messages per insert; BATCH_SIZE caps it. Small batches under load mean BATCH_WAIT ends them.",
			queries: []q{
				{`sum(rate(` + c.prefix + `batch_size_sum[1m])) / sum(rate(` + c.prefix + `batch_size_count[1m]))`, "mean"},
				{`histogram_quantile(0.5, sum by (le) (rate(` + c.prefix + `batch_size_bucket[1m])))`, "p50"},
				{`histogram_quantile(0.99, sum by (le) (rate(` + c.prefix + `batch_size_bucket[1m])))`, "p99"},
			}}.panel()
	})
	each(12, 8, func(c collector) panel {
		return series{title: c.name + ": batch store latency", unit: "s",
			description: "From a batch's last message to its commit and acknowledgement, retries included.",
			queries:     latency(c.prefix+"event_processing_duration_seconds", "")}.panel()
	})

	g.row("Database")
	each(12, 7, func(c collector) panel {
		return series{title: c.name + ": DB pool in use", unit: "percentunit",
			description: "Connections in use over DB_MAX_CONNS, per instance.",
			queries:     []q{{c.prefix + `db_pool_acquired_conns / ` + c.prefix + `db_pool_max_conns`, "{{instance}}"}}}.panel()
	})
	each(12, 7, func(c collector) panel {
		return series{title: c.name + ": DB waits and retries", unit: "short",
			description: "Waiting: average callers waiting for a free connection (above 0, the pool is saturated). Retries: inserts tried again per minute after a failure that may pass (database down or overloaded).",
			queries: []q{
				{`sum(rate(` + c.prefix + `db_pool_acquire_wait_seconds_total[1m]))`, "waiting for a connection"},
				{`sum(increase(` + c.prefix + `db_retries_total[1m]))`, "insert retries per minute"},
			}}.panel()
	})
	return newDashboard("collectors.json", "eventpipe-collectors", "eventpipe / Collectors",
		"fb-collector and ttk-collector side by side: JetStream to PostgreSQL throughput, lag, duplicates, batches and the database.", g)
}

func reporter() dashboard {
	g := &grid{}
	g.row("Reports in the selected range")
	g.add(6, 4, single{title: "Reports served", unit: "short", decimals: 0, instant: true, thresholds: steps(),
		query: q{expr: `sum(increase(reporter_reports_generated_total[$__range]))`}}.panel())
	g.add(6, 4, single{title: "Rejected requests", unit: "short", decimals: 0, instant: true, thresholds: steps(),
		description: "Requests answered 400 (invalid_parameter) or abandoned by their client (canceled).",
		query:       q{expr: `sum(increase(reporter_report_errors_total{code=~"invalid_parameter|canceled"}[$__range]))`}}.panel())
	g.add(6, 4, single{title: "Failed reports", unit: "short", decimals: 0, instant: true,
		thresholds:  steps(level{1, "red"}),
		description: "Reports answered 5xx: timeout (QUERY_TIMEOUT), unavailable (database down) or internal.",
		query:       q{expr: `sum(increase(reporter_report_errors_total{code=~"timeout|unavailable|internal"}[$__range]))`}}.panel())
	g.add(6, 4, single{title: "p95 latency, all reports", unit: "s", decimals: 3, instant: true,
		thresholds: steps(level{1, "orange"}, level{5, "red"}),
		query:      q{expr: `histogram_quantile(0.95, sum by (le) (rate(reporter_report_generation_duration_seconds_bucket[$__range])))`}}.panel())

	g.row("Generation latency by report")
	for _, r := range []string{"events", "revenue", "demographics"} {
		g.add(8, 8, series{title: "/reports/" + r + " latency", unit: "s",
			description: "Time spent generating the report in the database, failed ones included.",
			queries:     latency("reporter_report_generation_duration_seconds", `{report="`+r+`"}`)}.panel())
	}

	g.row("Traffic")
	g.add(12, 8, series{title: "Requests per second by report", unit: "reqps",
		queries: []q{
			{`sum by (report) (rate(reporter_reports_generated_total[1m]))`, "{{report}} ok"},
			{`sum by (report) (rate(reporter_report_errors_total[1m]))`, "{{report}} errors"},
		}}.panel())
	g.add(12, 8, series{title: "Errors per second by code", unit: "reqps", legendTable: true,
		queries: []q{{`sum by (report, code) (rate(reporter_report_errors_total[1m]))`, "{{report}} {{code}}"}}}.panel())

	g.row("Database")
	g.add(12, 7, series{title: "DB pool in use", unit: "percentunit",
		description: "Connections in use over DB_MAX_CONNS, per instance.",
		queries:     []q{{`reporter_db_pool_acquired_conns / reporter_db_pool_max_conns`, "{{instance}}"}}}.panel())
	g.add(12, 7, series{title: "Reports waiting for a connection", unit: "short",
		description: "Average reports waiting for a free connection; above 0 the pool is saturated and latency includes the wait.",
		queries:     []q{{`sum by (instance) (rate(reporter_db_pool_acquire_wait_seconds_total[1m]))`, "{{instance}}"}}}.panel())
	return newDashboard("reporter.json", "eventpipe-reporter", "eventpipe / Reporter",
		"The report API: generation latency per report, request and error rates, the database pool.", g)
}
