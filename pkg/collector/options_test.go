package collector

import (
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/eventpipe/eventpipe/pkg/config"
	"github.com/eventpipe/eventpipe/pkg/event"
)

const testDB = "postgres://u@db:5432/events"

func TestLoadOptionsDefaults(t *testing.T) {
	tests := []struct {
		source                        event.Source
		service, addr, prefix, filter string
	}{
		{event.Facebook, "fb-collector", ":3001", "fb_collector_", "events.facebook.>"},
		{event.TikTok, "ttk-collector", ":3002", "ttk_collector_", "events.tiktok.>"},
	}
	for _, tt := range tests {
		t.Run(string(tt.source), func(t *testing.T) {
			o, err := LoadOptions(tt.source, config.MapLookup(map[string]string{"DATABASE_URL": testDB}))
			if err != nil {
				t.Fatal(err)
			}
			checks := []struct {
				name      string
				got, want any
			}{
				{"Source", o.Source, tt.source},
				{"Service", o.Service, tt.service},
				{"ConsumerName", o.ConsumerName, tt.service},
				{"MetricPrefix", o.MetricPrefix, tt.prefix},
				{"Addr", o.Addr, tt.addr},
				{"NATSURL", o.NATSURL, "nats://127.0.0.1:4222"},
				{"DatabaseURL", o.DatabaseURL, testDB},
				{"DBMaxConns", o.DBMaxConns, int32(4)},
				{"LogLevel", o.LogLevel, "info"},
				{"LogFormat", o.LogFormat, "json"},
				{"ShutdownTimeout", o.ShutdownTimeout, 20 * time.Second},
				{"BatchSize", o.BatchSize, 1000},
				{"BatchWait", o.BatchWait, 100 * time.Millisecond},
				{"AckWait", o.AckWait, 30 * time.Second},
				{"MaxAckPending", o.MaxAckPending, 4000},
				{"MaxDeliver", o.MaxDeliver, 5},
				{"RetryMin", o.RetryMin, 200 * time.Millisecond},
				{"RetryMax", o.RetryMax, 10 * time.Second},
				{"filter", event.SourceFilter(o.Source), tt.filter},
				{"Stream.DuplicateWindow", o.Stream.DuplicateWindow, 2 * time.Minute},
			}
			for _, c := range checks {
				if c.got != c.want {
					t.Errorf("%s: got %v; want %v", c.name, c.got, c.want)
				}
			}
		})
	}
}

func TestLoadOptionsOverrides(t *testing.T) {
	o, err := LoadOptions(event.TikTok, config.MapLookup(map[string]string{
		"DATABASE_URL":    testDB,
		"PORT":            "9002",
		"NATS_URL":        "nats://a:4222,nats://b:4222",
		"CONSUMER_NAME":   "ttk-collector-blue",
		"BATCH_SIZE":      "250",
		"BATCH_WAIT":      "1s",
		"ACK_WAIT":        "5s",
		"MAX_DELIVER":     "3",
		"RETRY_MIN":       "1s",
		"RETRY_MAX":       "1s",
		"DB_MAX_CONNS":    "8",
		"LOG_LEVEL":       "debug",
		"LOG_FORMAT":      "text",
		"STREAM_REPLICAS": "3",
	}))
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"Addr", o.Addr, ":9002"},
		{"NATSURL", o.NATSURL, "nats://a:4222,nats://b:4222"},
		{"ConsumerName", o.ConsumerName, "ttk-collector-blue"},
		{"Service", o.Service, "ttk-collector"},
		{"BatchSize", o.BatchSize, 250},
		{"MaxAckPending follows BATCH_SIZE", o.MaxAckPending, 1000},
		{"BatchWait", o.BatchWait, time.Second},
		{"AckWait", o.AckWait, 5 * time.Second},
		{"MaxDeliver", o.MaxDeliver, 3},
		{"RetryMin", o.RetryMin, time.Second},
		{"RetryMax", o.RetryMax, time.Second},
		{"DBMaxConns", o.DBMaxConns, int32(8)},
		{"LogLevel", o.LogLevel, "debug"},
		{"LogFormat", o.LogFormat, "text"},
		{"Stream.Replicas", o.Stream.Replicas, 3},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %v; want %v", c.name, c.got, c.want)
		}
	}
}

func TestLoadOptionsRejects(t *testing.T) {
	tests := []struct {
		name     string
		settings map[string]string
		wantVar  string
	}{
		{"database url missing", map[string]string{"DATABASE_URL": ""}, "DATABASE_URL"},
		{"database url not postgres", map[string]string{"DATABASE_URL": "mysql://db/x"}, "DATABASE_URL"},
		{"port out of range", map[string]string{"PORT": "70000"}, "PORT"},
		{"nats url not a url", map[string]string{"NATS_URL": "localhost"}, "NATS_URL"},
		{"log level", map[string]string{"LOG_LEVEL": "loud"}, "LOG_LEVEL"},
		{"batch size zero", map[string]string{"BATCH_SIZE": "0"}, "BATCH_SIZE"},
		{"batch size not a number", map[string]string{"BATCH_SIZE": "many"}, "BATCH_SIZE"},
		{"batch wait negative", map[string]string{"BATCH_WAIT": "-1s"}, "BATCH_WAIT"},
		{"ack wait not a duration", map[string]string{"ACK_WAIT": "30"}, "ACK_WAIT"},
		{"ack wait too short", map[string]string{"ACK_WAIT": "100ms"}, "ACK_WAIT"},
		{"max ack pending below batch size", map[string]string{"BATCH_SIZE": "100", "MAX_ACK_PENDING": "50"}, "MAX_ACK_PENDING"},
		{"max deliver zero", map[string]string{"MAX_DELIVER": "0"}, "MAX_DELIVER"},
		{"retry max below retry min", map[string]string{"RETRY_MIN": "2s", "RETRY_MAX": "1s"}, "RETRY_MAX"},
		{"consumer name with a dot", map[string]string{"CONSUMER_NAME": "fb.collector"}, "CONSUMER_NAME"},
		{"consumer name with a space", map[string]string{"CONSUMER_NAME": "fb collector"}, "CONSUMER_NAME"},
		{"db max conns", map[string]string{"DB_MAX_CONNS": "1"}, "DB_MAX_CONNS"},
		{"shutdown timeout", map[string]string{"SHUTDOWN_TIMEOUT": "soon"}, "SHUTDOWN_TIMEOUT"},
		{"stream setting", map[string]string{"STREAM_MAX_AGE": "forever"}, "STREAM_MAX_AGE"},
	}
	for _, tt := range tests {
		for _, src := range []event.Source{event.Facebook, event.TikTok} {
			t.Run(tt.name+"/"+string(src), func(t *testing.T) {
				settings := map[string]string{"DATABASE_URL": testDB}
				maps.Copy(settings, tt.settings)
				_, err := LoadOptions(src, config.MapLookup(settings))
				if err == nil {
					t.Fatalf("got nil error; want one naming %s", tt.wantVar)
				}
				if !strings.HasPrefix(err.Error(), tt.wantVar+": ") {
					t.Errorf("got %q; want it to start with %q", err, tt.wantVar+": ")
				}
			})
		}
	}
}

func TestLoadOptionsUnknownSource(t *testing.T) {
	if _, err := LoadOptions("myspace", config.MapLookup(map[string]string{"DATABASE_URL": testDB})); err == nil {
		t.Fatal("got nil error for an unknown source; want one")
	}
}
