package schema_test

import (
	"os"
	"testing"

	"github.com/eventpipe/eventpipe/pkg/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }
