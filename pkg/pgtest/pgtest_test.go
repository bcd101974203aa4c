package pgtest_test

import (
	"context"
	"os"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventpipe/eventpipe/pkg/pgtest"
	"github.com/eventpipe/eventpipe/pkg/schema"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }

func TestMigratedDatabaseIsReady(t *testing.T) {
	url := pgtest.Migrated(t)
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	want, err := schema.Want()
	if err != nil {
		t.Fatal(err)
	}
	if err := schema.Check(context.Background(), pool, want); err != nil {
		t.Fatalf("got %v; want nil", err)
	}
	if err := schema.Check(context.Background(), pool, want+1); err == nil {
		t.Fatal("got nil for a newer wanted version; want ErrNotMigrated")
	}
}

func TestUnmigratedDatabaseIsNotReady(t *testing.T) {
	url := pgtest.NewDatabase(t)
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if err := schema.Check(context.Background(), pool, 1); err == nil {
		t.Fatal("got nil; want ErrNotMigrated")
	}
}

// TestFreePortNeverRepeats asks for many ports in a row, each released at
// once as a caller's would be until it binds: none may come twice.
func TestFreePortNeverRepeats(t *testing.T) {
	seen := map[int]bool{}
	for range 500 {
		p, err := pgtest.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
	}
}
