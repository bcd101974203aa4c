package stack_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// TestHealthcheckSubcommand runs `<binary> healthcheck`, the containers'
// HEALTHCHECK, against a stand-in /readyz on PORT: exit 0 while it answers
// 200, 1 otherwise. Each binary gets a setting that is invalid for the
// service itself, so passing also shows the subcommand never loads the
// service's settings.
func TestHealthcheckSubcommand(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping process-level tests in -short mode")
	}
	var status atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(int(status.Load()))
	}))
	defer srv.Close()
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}

	for _, bin := range []struct{ name, invalid string }{
		{"gateway", "PUBLISH_TIMEOUT=soon"},
		{"fb-collector", "BATCH_SIZE=many"},
		{"ttk-collector", "BATCH_SIZE=many"},
		{"reporter", "DATABASE_URL="},
	} {
		t.Run(bin.name, func(t *testing.T) {
			for _, tt := range []struct{ status, want int }{
				{http.StatusOK, 0}, {http.StatusServiceUnavailable, 1}, {http.StatusOK, 0},
			} {
				status.Store(int32(tt.status))
				cmd := exec.Command(filepath.Join(binDir, bin.name), "healthcheck")
				cmd.Env = append(os.Environ(), "PORT="+u.Port(), bin.invalid)
				out, err := cmd.CombinedOutput()
				code := 0
				if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
					code = ee.ExitCode()
				} else if err != nil {
					t.Fatal(err)
				}
				if code != tt.want {
					t.Errorf("/readyz answering %d: got exit code %d; want %d (%s)", tt.status, code, tt.want, out)
				}
			}
		})
	}
}

// TestInvalidSettingStopsAtStart runs every binary with one bad setting:
// it must exit 2 at once with a single line naming the setting.
func TestInvalidSettingStopsAtStart(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping process-level tests in -short mode")
	}
	for _, tt := range []struct{ bin, setting, value string }{
		{"gateway", "PORT", "abc"},
		{"fb-collector", "BATCH_SIZE", "many"},
		{"ttk-collector", "ACK_WAIT", "forever"},
		{"reporter", "DATABASE_URL", "mysql://db"},
		{"migrate", "DATABASE_URL", ""},
		{"publisher", "MIN_BATCH", "-5"},
	} {
		t.Run(tt.bin, func(t *testing.T) {
			cmd := exec.Command(filepath.Join(binDir, tt.bin))
			cmd.Env = append(os.Environ(), "DATABASE_URL=postgres://u@127.0.0.1:1/db", tt.setting+"="+tt.value)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 {
				t.Fatalf("got %v; want exit code 2 (%s)", err, out)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], tt.setting) {
				t.Errorf("output %q; want one line naming %s", out, tt.setting)
			}
		})
	}
}
