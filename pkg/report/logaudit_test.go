package report

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eventpipe/eventpipe/pkg/logtest"
	"github.com/eventpipe/eventpipe/pkg/pgtest"
)

// dbPassword is the password of the DATABASE_URLs below; it must show up
// in no error and no log line.
const dbPassword = "hunter2-db-password"

func TestDatabasePasswordNotLogged(t *testing.T) {
	t.Run("unparsable DATABASE_URL", func(t *testing.T) {
		logs := &logtest.Buffer{}
		err := Run(context.Background(), Options{
			Addr:        "127.0.0.1:0",
			DatabaseURL: "postgres://eventpipe:" + dbPassword + "@127.0.0.1:5432/eventpipe?sslmode=bogus",
		}, slog.New(slog.NewJSONHandler(logs, nil)), prometheus.NewRegistry())
		if err == nil || !strings.Contains(err.Error(), "DATABASE_URL") {
			t.Fatalf("Run: got %v; want an error naming DATABASE_URL", err)
		}
		if strings.Contains(err.Error()+logs.String(), dbPassword) {
			t.Errorf("the password is in the error %q or the log:\n%s", err, logs)
		}
	})

	t.Run("unreachable database", func(t *testing.T) {
		port, err := pgtest.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		r := startReporter(t, "postgres://eventpipe:"+dbPassword+"@127.0.0.1:"+strconv.Itoa(port)+"/eventpipe?sslmode=disable")
		resp := get(t, r.url+"/reports/events")
		if resp.status != http.StatusServiceUnavailable {
			t.Fatalf("got %d %s; want 503", resp.status, truncate(resp.body))
		}
		waitFor(t, "the request's log line", func() bool { return strings.Contains(r.logs.String(), `"path":"/reports/events"`) })
		if logs := r.logs.String(); strings.Contains(logs+string(resp.body), dbPassword) {
			t.Errorf("the password is in the answer %s or the log:\n%s", resp.body, logs)
		}
	})
}
