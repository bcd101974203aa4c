// Package stream holds the JetStream layout every service agrees on (the
// EVENTS and DEADLETTER streams, subjects and headers) and connects to NATS.
package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/eventpipe/eventpipe/pkg/config"
	"github.com/eventpipe/eventpipe/pkg/event"
)

// Stream names and subjects (api.md, "JetStream layout").
const (
	Events         = "EVENTS"
	DeadLetter     = "DEADLETTER"
	deadLetterRoot = "deadletter"
)

// Message headers.
const (
	// HeaderCorrelationID carries the request's correlation id on every
	// message, so a collector's batch log names the requests it stored.
	HeaderCorrelationID = "X-Correlation-ID"
	// HeaderReason says why a message was dead-lettered.
	HeaderReason = "X-Reason"
	// HeaderOrigin names the service that dead-lettered it.
	HeaderOrigin = "X-Origin"
	// HeaderSubject is the subject a dead-lettered message was read from.
	HeaderSubject = "X-Original-Subject"
)

// DeadLetterSubject returns the subject where origin (a service name such
// as "gateway" or "fb-collector") puts what it cannot process.
func DeadLetterSubject(origin string) string {
	return deadLetterRoot + "." + origin
}

// Options configures the streams. The gateway owns their configuration;
// collectors only create them when missing.
type Options struct {
	MaxAge          time.Duration
	MaxBytes        int64
	DuplicateWindow time.Duration
	Replicas        int
	DeadLetterAge   time.Duration
	DeadLetterBytes int64
}

// ReadOptions reads the STREAM_* settings.
func ReadOptions(r *config.Reader) Options {
	return Options{
		MaxAge:          r.Duration("STREAM_MAX_AGE", 7*24*time.Hour),
		MaxBytes:        r.Bytes("STREAM_MAX_BYTES", 10<<30, true),
		DuplicateWindow: r.Duration("STREAM_DUPLICATE_WINDOW", 2*time.Minute),
		Replicas:        r.Int("STREAM_REPLICAS", 1, 1, 5),
		DeadLetterAge:   r.Duration("DEADLETTER_MAX_AGE", 14*24*time.Hour),
		DeadLetterBytes: r.Bytes("DEADLETTER_MAX_BYTES", 1<<30, true),
	}
}

// EventsConfig is the EVENTS stream: a work queue, so a message leaves the
// stream once its collector acknowledged it and the backlog is exactly what
// is not yet stored. DiscardNew makes a full stream refuse publishes (the
// gateway answers 503) rather than silently drop unprocessed events.
func EventsConfig(o Options) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        Events,
		Description: "webhook events awaiting storage",
		Subjects:    []string{event.SubjectPrefix + ".>"},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Discard:     jetstream.DiscardNew,
		MaxAge:      o.MaxAge,
		MaxBytes:    o.MaxBytes,
		Duplicates:  o.DuplicateWindow,
		Replicas:    o.Replicas,
	}
}

// DeadLetterConfig is the DEADLETTER stream: rejected and poison messages,
// kept for inspection by age and size.
func DeadLetterConfig(o Options) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        DeadLetter,
		Description: "rejected and poison events with the reason",
		Subjects:    []string{deadLetterRoot + ".>"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Discard:     jetstream.DiscardOld,
		MaxAge:      o.DeadLetterAge,
		MaxBytes:    o.DeadLetterBytes,
		// Dead-letter publishes carry a message id, so a retried one is
		// kept once.
		Duplicates: 2 * time.Minute,
		Replicas:   o.Replicas,
	}
}

// Ensure creates the streams, and when update is true brings an existing
// stream's configuration in line with o.
func Ensure(ctx context.Context, js jetstream.JetStream, o Options, update bool) error {
	for _, cfg := range []jetstream.StreamConfig{EventsConfig(o), DeadLetterConfig(o)} {
		var err error
		if update {
			_, err = js.CreateOrUpdateStream(ctx, cfg)
		} else {
			_, err = js.CreateStream(ctx, cfg)
			if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
				err = nil
			}
		}
		if err != nil {
			return fmt.Errorf("ensure stream %s: %w", cfg.Name, err)
		}
	}
	return nil
}

// Connect dials NATS. It does not fail when the server is down at start:
// the connection keeps retrying, and readiness reports it until it is up.
func Connect(url, name string, logger *slog.Logger) (*nats.Conn, error) {
	nc, err := nats.Connect(url,
		nats.Name(name),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500*time.Millisecond),
		nats.ReconnectBufSize(-1), // publishes fail fast while down; nothing hides in a buffer
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				logger.Warn("nats disconnected", "error", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			logger.Info("nats reconnected", "url", c.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			logger.Warn("nats async error", "error", err)
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("connect nats: %w", err)
	}
	return nc, nil
}

// Check returns nil while the connection is up; it is a readiness check.
func Check(nc *nats.Conn) func(context.Context) error {
	return func(context.Context) error {
		if s := nc.Status(); s != nats.CONNECTED {
			return fmt.Errorf("nats %s", s)
		}
		return nil
	}
}

// Retry calls fn until it succeeds or ctx ends, waiting between tries with
// a backoff capped at max; every failure is logged once.
func Retry(ctx context.Context, logger *slog.Logger, what string, maxWait time.Duration, fn func(context.Context) error) error {
	wait := 100 * time.Millisecond
	for {
		err := fn(ctx)
		if err == nil {
			return nil
		}
		logger.Warn(what+" failed; retrying", "error", err, "retry_in", wait.String())
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, errors.Join(ctx.Err(), err))
		case <-time.After(wait):
		}
		wait = min(wait*2, maxWait)
	}
}
