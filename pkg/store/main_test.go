package store

import (
	"os"
	"testing"

	"github.com/eventpipe/eventpipe/pkg/pgtest"
)

// TestMain shares one private PostgreSQL among the package's tests.
func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }
