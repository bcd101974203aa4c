package main

import "testing"

func TestRunInvalidSetting(t *testing.T) {
	tests := []struct{ name, value string }{
		{"PORT", "70000"},
		{"PUBLISH_TIMEOUT", "soon"},
		{"NATS_URL", "localhost"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(tt.name, tt.value)
			if got := run(); got != 2 {
				t.Errorf("run with %s=%s: got exit code %d; want 2", tt.name, tt.value, got)
			}
		})
	}
}
