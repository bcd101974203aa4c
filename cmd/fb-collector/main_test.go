package main

import (
	"io"
	"os"
	"strings"
	"testing"
)

// TestInvalidSettingExits2 checks that a bad setting stops the service at
// once with exit code 2 and one line naming the setting.
func TestInvalidSettingExits2(t *testing.T) {
	tests := []struct {
		name, env, value, want string
	}{
		{"missing database url", "DATABASE_URL", "", "fb-collector: invalid setting DATABASE_URL: is required\n"},
		{"bad batch size", "BATCH_SIZE", "0", "fb-collector: invalid setting BATCH_SIZE: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("DATABASE_URL", "postgres://u@127.0.0.1:1/db")
			t.Setenv(tt.env, tt.value)
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			stderr := os.Stderr
			os.Stderr = w
			code := run()
			os.Stderr = stderr
			w.Close()
			out, _ := io.ReadAll(r)
			if code != 2 {
				t.Errorf("exit code: got %d; want 2", code)
			}
			if !strings.HasPrefix(string(out), tt.want) || strings.Count(string(out), "\n") != 1 {
				t.Errorf("stderr: got %q; want one line starting %q", out, tt.want)
			}
		})
	}
}
