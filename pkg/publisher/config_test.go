package publisher

import (
	"errors"
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/eventpipe/eventpipe/pkg/config"
)

func TestLoadConfigDefaults(t *testing.T) {
	c, err := LoadConfig(nil, config.MapLookup(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.Options.Seed == 0 {
		t.Error("seed: got 0; want one picked from the clock")
	}
	c.Options.Seed = 0
	if want := DefaultOptions(); c.Options != want {
		t.Errorf("options: got %+v; want %+v", c.Options, want)
	}
	if c.LogLevel != "info" || c.LogFormat != "json" {
		t.Errorf("logging: got %s/%s; want info/json", c.LogLevel, c.LogFormat)
	}
}

func TestLoadConfigFromEnvAndFlags(t *testing.T) {
	env := map[string]string{
		"EVENT_ENDPOINT":   "https://gw.example:8443/webhook",
		"PUBLISH_INTERVAL": "250ms",
		"MIN_BATCH":        "10",
		"MAX_BATCH":        "100",
		"TOTAL_EVENTS":     "5000",
		"DUPLICATE_RATIO":  "0.05",
		"OUT_OF_ORDER":     "10m",
		"SEED":             "42",
		"CORRUPT_EVERY":    "0",
		"REQUEST_TIMEOUT":  "30s",
		"MAX_IN_FLIGHT":    "8",
		"SHUTDOWN_GRACE":   "5s",
		"LOG_LEVEL":        "debug",
		"LOG_FORMAT":       "text",
	}
	want := Options{
		Endpoint: "https://gw.example:8443/webhook", Interval: 250 * time.Millisecond,
		MinBatch: 10, MaxBatch: 100, Total: 5000, DuplicateRatio: 0.05,
		OutOfOrder: 10 * time.Minute, Seed: 42, CorruptEvery: 0, Timeout: 30 * time.Second,
		MaxInFlight: 8, ShutdownGrace: 5 * time.Second,
	}

	c, err := LoadConfig(nil, config.MapLookup(env))
	if err != nil {
		t.Fatal(err)
	}
	if c.Options != want || c.LogLevel != "debug" || c.LogFormat != "text" {
		t.Errorf("from env: got %+v %s/%s; want %+v debug/text", c.Options, c.LogLevel, c.LogFormat, want)
	}

	args := []string{"-min-batch", "1", "-max-batch=2", "-seed=7", "-log-format=json", "-out-of-order", "0s"}
	c, err = LoadConfig(args, config.MapLookup(env))
	if err != nil {
		t.Fatal(err)
	}
	want.MinBatch, want.MaxBatch, want.Seed, want.OutOfOrder = 1, 2, 7, 0
	if c.Options != want || c.LogFormat != "json" {
		t.Errorf("flags over env: got %+v %s; want %+v json", c.Options, c.LogFormat, want)
	}
}

func TestLoadConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string // the error's start
	}{
		{"not a number", map[string]string{"MIN_BATCH": "abc"}, nil, `MIN_BATCH: must be an integer from 1 to 1000000, got "abc"`},
		{"zero batch", map[string]string{"MAX_BATCH": "0"}, nil, "MAX_BATCH: "},
		{"min above max", map[string]string{"MIN_BATCH": "500", "MAX_BATCH": "100"}, nil, "MIN_BATCH: must not exceed MAX_BATCH"},
		{"min above default max", map[string]string{"MIN_BATCH": "60000"}, nil, "MIN_BATCH: "},
		{"flag", nil, []string{"-min-batch=x"}, "MIN_BATCH: "},
		{"endpoint", map[string]string{"EVENT_ENDPOINT": "localhost:3000"}, nil, "EVENT_ENDPOINT: "},
		{"interval zero", map[string]string{"PUBLISH_INTERVAL": "0s"}, nil, "PUBLISH_INTERVAL: "},
		{"interval no unit", map[string]string{"PUBLISH_INTERVAL": "1"}, nil, "PUBLISH_INTERVAL: "},
		{"negative total", map[string]string{"TOTAL_EVENTS": "-1"}, nil, `TOTAL_EVENTS: must be a non-negative integer, got "-1"`},
		{"ratio", map[string]string{"DUPLICATE_RATIO": "1.5"}, nil, "DUPLICATE_RATIO: "},
		{"out of order", map[string]string{"OUT_OF_ORDER": "-1s"}, nil, "OUT_OF_ORDER: "},
		{"seed", map[string]string{"SEED": "x"}, nil, "SEED: "},
		{"corrupt every", map[string]string{"CORRUPT_EVERY": "-1"}, nil, "CORRUPT_EVERY: "},
		{"timeout", map[string]string{"REQUEST_TIMEOUT": "soon"}, nil, "REQUEST_TIMEOUT: "},
		{"in flight", map[string]string{"MAX_IN_FLIGHT": "-2"}, nil, "MAX_IN_FLIGHT: "},
		{"log level", map[string]string{"LOG_LEVEL": "loud"}, nil, "LOG_LEVEL: "},
		{"log format", map[string]string{"LOG_FORMAT": "xml"}, nil, "LOG_FORMAT: "},
		{"unknown flag", nil, []string{"-bogus"}, "flag provided but not defined: -bogus"},
		{"argument", nil, []string{"extra"}, `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadConfig(tt.args, config.MapLookup(tt.env))
			if err == nil {
				t.Fatalf("got no error; want %q", tt.want)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, tt.want) || strings.Contains(msg, "\n") {
				t.Errorf("got %q; want one line starting %q", msg, tt.want)
			}
		})
	}
}

func TestLoadConfigHelp(t *testing.T) {
	_, err := LoadConfig([]string{"-h"}, config.MapLookup(nil))
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("got %v; want flag.ErrHelp", err)
	}
	var b strings.Builder
	Usage(&b)
	for _, s := range settings {
		if want := "-" + flagName(s.env) + ", " + s.env; !strings.Contains(b.String(), want) {
			t.Errorf("usage: got\n%s\nwant it to list %q", b.String(), want)
		}
	}
}
