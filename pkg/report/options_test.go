package report

import (
	"strings"
	"testing"
	"time"

	"github.com/eventpipe/eventpipe/pkg/config"
)

const testDatabaseURL = "postgres://reporter:secret@db.internal:5432/events?sslmode=disable"

func TestLoadOptionsDefaults(t *testing.T) {
	opts, err := LoadOptions(config.MapLookup(map[string]string{"DATABASE_URL": testDatabaseURL}))
	if err != nil {
		t.Fatalf("got error %v; want nil", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"Port", opts.Port, 3003},
		{"Addr", opts.Addr, ":3003"},
		{"DatabaseURL", opts.DatabaseURL, testDatabaseURL},
		{"LogLevel", opts.LogLevel, "info"},
		{"LogFormat", opts.LogFormat, "json"},
		{"ShutdownTimeout", opts.ShutdownTimeout, 20 * time.Second},
		{"QueryTimeout", opts.QueryTimeout, 30 * time.Second},
		{"DBMaxConns", opts.DBMaxConns, int32(10)},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %v; want %v", c.name, c.got, c.want)
		}
	}
}

func TestLoadOptionsSet(t *testing.T) {
	opts, err := LoadOptions(config.MapLookup(map[string]string{
		"DATABASE_URL":     testDatabaseURL,
		"PORT":             "8080",
		"LOG_LEVEL":        "debug",
		"LOG_FORMAT":       "text",
		"SHUTDOWN_TIMEOUT": "5s",
		"QUERY_TIMEOUT":    "1500ms",
		"DB_MAX_CONNS":     "25",
	}))
	if err != nil {
		t.Fatalf("got error %v; want nil", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"Port", opts.Port, 8080},
		{"Addr", opts.Addr, ":8080"},
		{"LogLevel", opts.LogLevel, "debug"},
		{"LogFormat", opts.LogFormat, "text"},
		{"ShutdownTimeout", opts.ShutdownTimeout, 5 * time.Second},
		{"QueryTimeout", opts.QueryTimeout, 1500 * time.Millisecond},
		{"DBMaxConns", opts.DBMaxConns, int32(25)},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %v; want %v", c.name, c.got, c.want)
		}
	}
}

func TestLoadOptionsRejects(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string // the variable the error must start with
	}{
		{"missing DATABASE_URL", map[string]string{}, "DATABASE_URL"},
		{"empty DATABASE_URL", map[string]string{"DATABASE_URL": " "}, "DATABASE_URL"},
		{"malformed DATABASE_URL", map[string]string{"DATABASE_URL": "postgres://u:secret@db:notaport/x"}, "DATABASE_URL"},
		{"PORT", map[string]string{"PORT": "70000"}, "PORT"},
		{"LOG_LEVEL", map[string]string{"LOG_LEVEL": "verbose"}, "LOG_LEVEL"},
		{"LOG_FORMAT", map[string]string{"LOG_FORMAT": "xml"}, "LOG_FORMAT"},
		{"SHUTDOWN_TIMEOUT", map[string]string{"SHUTDOWN_TIMEOUT": "soon"}, "SHUTDOWN_TIMEOUT"},
		{"QUERY_TIMEOUT", map[string]string{"QUERY_TIMEOUT": "0s"}, "QUERY_TIMEOUT"},
		{"QUERY_TIMEOUT negative", map[string]string{"QUERY_TIMEOUT": "-1s"}, "QUERY_TIMEOUT"},
		{"DB_MAX_CONNS zero", map[string]string{"DB_MAX_CONNS": "0"}, "DB_MAX_CONNS"},
		{"DB_MAX_CONNS text", map[string]string{"DB_MAX_CONNS": "many"}, "DB_MAX_CONNS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{"DATABASE_URL": testDatabaseURL}
			if tt.want == "DATABASE_URL" {
				env = map[string]string{}
			}
			for k, v := range tt.env {
				env[k] = v
			}
			_, err := LoadOptions(config.MapLookup(env))
			if err == nil {
				t.Fatalf("got nil error; want one naming %s", tt.want)
			}
			if !strings.HasPrefix(err.Error(), tt.want+": ") {
				t.Fatalf("got %q; want it to start with %q", err, tt.want+": ")
			}
			if strings.Contains(err.Error(), "secret") {
				t.Fatalf("got %q; it leaks the password", err)
			}
		})
	}
}
