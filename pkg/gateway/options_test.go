package gateway

import (
	"strings"
	"testing"
	"time"

	"github.com/eventpipe/eventpipe/pkg/config"
)

func TestLoadOptionsDefaults(t *testing.T) {
	o, err := LoadOptions(config.MapLookup(nil))
	if err != nil {
		t.Fatalf("LoadOptions: %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"Addr", o.Addr, ":3000"},
		{"Port", o.Port, 3000},
		{"NATSURL", o.NATSURL, "nats://127.0.0.1:4222"},
		{"LogLevel", o.LogLevel, "info"},
		{"LogFormat", o.LogFormat, "json"},
		{"ShutdownTimeout", o.ShutdownTimeout, 20 * time.Second},
		{"MaxBodyBytes", o.MaxBodyBytes, int64(64 << 20)},
		{"PublishMaxPending", o.PublishMaxPending, 4096},
		{"PublishTimeout", o.PublishTimeout, 10 * time.Second},
		{"MaxErrorsReported", o.MaxErrorsReported, 100},
		{"Stream.DuplicateWindow", o.Stream.DuplicateWindow, 2 * time.Minute},
		{"Stream.MaxAge", o.Stream.MaxAge, 7 * 24 * time.Hour},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %v; want %v", c.name, c.got, c.want)
		}
	}
}

func TestLoadOptionsSet(t *testing.T) {
	o, err := LoadOptions(config.MapLookup(map[string]string{
		"PORT":                    "8080",
		"NATS_URL":                "nats://a:4222,nats://b:4222",
		"LOG_LEVEL":               "debug",
		"LOG_FORMAT":              "text",
		"SHUTDOWN_TIMEOUT":        "45s",
		"MAX_BODY_BYTES":          "32MiB",
		"PUBLISH_MAX_PENDING":     "512",
		"PUBLISH_TIMEOUT":         "5s",
		"MAX_ERRORS_REPORTED":     "0",
		"STREAM_DUPLICATE_WINDOW": "5m",
	}))
	if err != nil {
		t.Fatalf("LoadOptions: %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"Addr", o.Addr, ":8080"},
		{"NATSURL", o.NATSURL, "nats://a:4222,nats://b:4222"},
		{"LogLevel", o.LogLevel, "debug"},
		{"LogFormat", o.LogFormat, "text"},
		{"ShutdownTimeout", o.ShutdownTimeout, 45 * time.Second},
		{"MaxBodyBytes", o.MaxBodyBytes, int64(32 << 20)},
		{"PublishMaxPending", o.PublishMaxPending, 512},
		{"PublishTimeout", o.PublishTimeout, 5 * time.Second},
		{"MaxErrorsReported", o.MaxErrorsReported, 0},
		{"Stream.DuplicateWindow", o.Stream.DuplicateWindow, 5 * time.Minute},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %v; want %v", c.name, c.got, c.want)
		}
	}
}

func TestLoadOptionsInvalid(t *testing.T) {
	tests := []struct{ name, value string }{
		{"PORT", "0"},
		{"PORT", "http"},
		{"NATS_URL", "localhost:4222"},
		{"NATS_URL", "http://localhost:4222"},
		{"LOG_LEVEL", "verbose"},
		{"LOG_FORMAT", "xml"},
		{"SHUTDOWN_TIMEOUT", "0s"},
		{"MAX_BODY_BYTES", "-1"},
		{"MAX_BODY_BYTES", "lots"},
		{"PUBLISH_MAX_PENDING", "0"},
		{"PUBLISH_MAX_PENDING", "1000000"},
		{"PUBLISH_TIMEOUT", "30"},
		{"PUBLISH_TIMEOUT", "25s"}, // not shorter than the default SHUTDOWN_TIMEOUT
		{"MAX_ERRORS_REPORTED", "-1"},
		{"STREAM_REPLICAS", "9"},
		{"STREAM_MAX_AGE", "forever"},
	}
	for _, tt := range tests {
		t.Run(tt.name+"="+tt.value, func(t *testing.T) {
			_, err := LoadOptions(config.MapLookup(map[string]string{tt.name: tt.value}))
			if err == nil {
				t.Fatalf("got nil error; want one naming %s", tt.name)
			}
			if !strings.HasPrefix(err.Error(), tt.name+":") {
				t.Errorf("got %q; want it to start with %q", err, tt.name+":")
			}
		})
	}
}
