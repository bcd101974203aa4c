package logging

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// jsonLines decodes every line of out as one JSON object.
func jsonLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %q: got %v; want JSON", l, err)
		}
		lines = append(lines, m)
	}
	return lines
}

func TestFormats(t *testing.T) {
	cases := []struct {
		format string
		check  func(t *testing.T, out string)
	}{
		{"json", checkJSON},
		{"", checkJSON},
		{"text", func(t *testing.T, out string) {
			for _, want := range []string{"level=INFO", "msg=hello", "service=gateway", "n=7"} {
				if !strings.Contains(out, want) {
					t.Errorf("text line: got %q; want it to contain %q", out, want)
				}
			}
			if strings.HasPrefix(out, "{") {
				t.Errorf("text line: got %q; want key=value, not JSON", out)
			}
		}},
	}
	for _, tc := range cases {
		t.Run("format="+tc.format, func(t *testing.T) {
			var buf bytes.Buffer
			logger, err := New(&buf, "gateway", "info", tc.format)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			logger.Info("hello", "n", 7)
			tc.check(t, buf.String())
		})
	}
}

func checkJSON(t *testing.T, out string) {
	t.Helper()
	lines := jsonLines(t, out)
	if len(lines) != 1 {
		t.Fatalf("lines: got %d; want 1", len(lines))
	}
	want := map[string]any{"level": "INFO", "msg": "hello", "service": "gateway", "n": float64(7)}
	for k, v := range want {
		if got := lines[0][k]; got != v {
			t.Errorf("%s: got %v; want %v", k, got, v)
		}
	}
}

func TestLevels(t *testing.T) {
	cases := []struct {
		level string
		want  []string // the messages that must come out, in order
	}{
		{"debug", []string{"debug", "info", "warn", "error"}},
		{"info", []string{"info", "warn", "error"}},
		{"warn", []string{"warn", "error"}},
		{"error", []string{"error"}},
		{"DEBUG", []string{"debug", "info", "warn", "error"}},
		{"WARN", []string{"warn", "error"}},
	}
	for _, tc := range cases {
		t.Run(tc.level, func(t *testing.T) {
			var buf bytes.Buffer
			logger, err := New(&buf, "gateway", tc.level, "json")
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			logger.Debug("debug")
			logger.Info("info")
			logger.Warn("warn")
			logger.Error("error")
			var got []string
			for _, l := range jsonLines(t, buf.String()) {
				got = append(got, l["msg"].(string))
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("messages: got %v; want %v", got, tc.want)
			}
		})
	}
}

func TestServiceOnEveryLine(t *testing.T) {
	var buf bytes.Buffer
	logger, err := New(&buf, "fb-collector", "debug", "json")
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	logger.Debug("one")
	logger.With("component", "worker").Info("two")
	logger.WithGroup("batch").Warn("three", "size", 10)
	logger.Error("four")
	lines := jsonLines(t, buf.String())
	if len(lines) != 4 {
		t.Fatalf("lines: got %d; want 4", len(lines))
	}
	for _, l := range lines {
		if got := l["service"]; got != "fb-collector" {
			t.Errorf("line %q: service got %v; want fb-collector", l["msg"], got)
		}
	}
}

func TestBadSettings(t *testing.T) {
	cases := []struct {
		name          string
		level, format string
		wantPrefix    string
		wantValue     string
	}{
		{"unknown level", "verbose", "json", "LOG_LEVEL: ", "verbose"},
		{"empty level", "", "json", "LOG_LEVEL: ", ""},
		{"unknown format", "info", "xml", "LOG_FORMAT: ", "xml"},
		{"format case differs", "info", "JSON", "LOG_FORMAT: ", "JSON"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			logger, err := New(&bytes.Buffer{}, "gateway", tc.level, tc.format)
			if err == nil {
				t.Fatalf("New: got nil error; want one starting with %q", tc.wantPrefix)
			}
			if logger != nil {
				t.Errorf("logger: got %v; want nil with an error", logger)
			}
			if !strings.HasPrefix(err.Error(), tc.wantPrefix) {
				t.Errorf("error: got %q; want it to start with %q", err, tc.wantPrefix)
			}
			if !strings.Contains(err.Error(), tc.wantValue) {
				t.Errorf("error: got %q; want it to quote %q", err, tc.wantValue)
			}
		})
	}
}
