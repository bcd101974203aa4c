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
