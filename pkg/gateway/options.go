package gateway

import (
	"strconv"
	"time"

	"github.com/eventpipe/eventpipe/pkg/config"
	"github.com/eventpipe/eventpipe/pkg/stream"
)

// DefaultPort is the gateway's PORT when unset (api.md).
const DefaultPort = 3000

// Options configures the gateway.
type Options struct {
	// Addr is where the HTTP server listens; ":"+PORT by default, tests use
	// "127.0.0.1:0".
	Addr      string
	Port      int
	NATSURL   string
	LogLevel  string
	LogFormat string
	// ShutdownTimeout bounds the whole graceful stop, pending publishes
	// included.
	ShutdownTimeout time.Duration

	// MaxBodyBytes is the largest request body; a larger one gets 413.
	MaxBodyBytes int64
	// PublishMaxPending caps the publishes awaiting a JetStream ack across
	// all requests; a request that finds the cap reached waits for a slot,
	// which is what bounds the gateway's memory under load.
	PublishMaxPending int
	// PublishTimeout bounds the wait for each ack, and for a free slot
	// under PublishMaxPending.
	PublishTimeout time.Duration
	// MaxDeadLettersPerRequest caps the rejected events of one request
	// that are dead-lettered; the rest are only counted, so a body of a
	// million tiny invalid items cannot turn into a million messages.
	MaxDeadLettersPerRequest int
	// MaxErrorsReported caps the per-event errors listed in a response;
	// the counts stay exact.
	MaxErrorsReported int

	// WebhookToken, when set, is the shared token every webhook request
	// must carry (Authorization: Bearer, or X-Webhook-Token).
	WebhookToken string
	// WebhookHMACSecret, when set, is the key of the HMAC-SHA256 signature
	// of the body every webhook request must carry in X-Signature-256.
	WebhookHMACSecret string

	// Stream is the streams' configuration, which the gateway owns.
	Stream stream.Options

	// Started, when set, is called with the bound address once the HTTP
	// server listens, so in-process tests learn the port.
	Started func(addr string)
}

// LoadOptions reads the gateway's settings (api.md and README) through
// lookup; the error names the first bad setting.
func LoadOptions(lookup config.Lookup) (Options, error) {
	r := config.NewReader(lookup)
	common := r.ReadCommon(DefaultPort)
	o := Options{
		Port:                     common.Port,
		LogLevel:                 common.LogLevel,
		LogFormat:                common.LogFormat,
		ShutdownTimeout:          common.ShutdownTimeout,
		NATSURL:                  r.URL("NATS_URL", "nats://127.0.0.1:4222", true, "nats", "tls", "ws", "wss"),
		MaxBodyBytes:             r.Bytes("MAX_BODY_BYTES", 64<<20, false),
		PublishMaxPending:        r.Int("PUBLISH_MAX_PENDING", 4096, 1, 1<<16),
		PublishTimeout:           r.Duration("PUBLISH_TIMEOUT", 10*time.Second),
		MaxErrorsReported:        r.Int("MAX_ERRORS_REPORTED", 100, 0, 10000),
		MaxDeadLettersPerRequest: r.Int("DEADLETTER_MAX_PER_REQUEST", 1000, 0, 1_000_000),
		WebhookToken:             r.String("WEBHOOK_TOKEN", ""),
		WebhookHMACSecret:        r.String("WEBHOOK_HMAC_SECRET", ""),
		Stream:                   stream.ReadOptions(r),
	}
	checkSecret(r, "WEBHOOK_TOKEN", o.WebhookToken, true)
	checkSecret(r, "WEBHOOK_HMAC_SECRET", o.WebhookHMACSecret, false)
	o.Addr = ":" + strconv.Itoa(o.Port)
	// A request waiting for its acknowledgements must be able to finish
	// inside a graceful stop.
	if o.PublishTimeout >= o.ShutdownTimeout {
		r.Fail("PUBLISH_TIMEOUT", "must be shorter than SHUTDOWN_TIMEOUT (%s), so requests in flight can finish during a graceful stop", o.ShutdownTimeout)
	}
	if err := r.Err(); err != nil {
		return Options{}, err
	}
	return o, nil
}
