package report

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/eventpipe/eventpipe/pkg/pgtest"
)

// TestMain shares one private PostgreSQL among the package's tests and
// checks that no reporter leaves a goroutine behind (server, pool).
func TestMain(m *testing.M) {
	code := pgtest.Run(m)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}
