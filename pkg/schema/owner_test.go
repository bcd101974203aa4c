package schema_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/eventpipe/eventpipe/pkg/pgserver"
	"github.com/eventpipe/eventpipe/pkg/pgtest"
	"github.com/eventpipe/eventpipe/pkg/schema"
)

// TestMigrateAsPlainOwner migrates as a database owner that may not create
// roles (a managed database's owner, CloudNativePG's app): on a fresh
// server, where the group roles do not exist yet, the migrations succeed
// without their grants; once an administrator has created the roles, a new
// database gets them.
func TestMigrateAsPlainOwner(t *testing.T) {
	if !pgserver.Available() {
		t.Skipf("skipping: needs PostgreSQL binaries for a server of its own: %v", pgserver.ErrNoBinaries)
	}
	ctx := context.Background()
	// Not t.TempDir: its parent is private, and the server may run as the
	// postgres user, which must get through.
	dir, err := os.MkdirTemp("", "eventpipe-schema-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	port, err := pgtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	pg, err := pgserver.Start(ctx, pgserver.Options{DataDir: filepath.Join(dir, "data"), Port: port, Fast: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := pg.Stop(); err != nil {
			t.Error(err)
		}
	})
	admin := connect(t, pg.AdminURL())
	if _, err := admin.Exec(ctx, `CREATE ROLE app LOGIN NOCREATEROLE`); err != nil {
		t.Fatal(err)
	}
	appURL := func(db string) string {
		return "postgres://app@127.0.0.1:" + strconv.Itoa(port) + "/" + db + "?sslmode=disable"
	}
	want, err := schema.Want()
	if err != nil {
		t.Fatal(err)
	}
	groups := func(db string) []string {
		t.Helper()
		var got []string
		c := connect(t, appURL(db))
		err := c.QueryRow(ctx, `
			SELECT coalesce(array_agg(DISTINCT grantee ORDER BY grantee), '{}')
			FROM information_schema.role_table_grants WHERE grantee LIKE 'eventpipe\_%'`).Scan(&got)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}

	if _, err := admin.Exec(ctx, `CREATE DATABASE before OWNER app`); err != nil {
		t.Fatal(err)
	}
	if v, err := schema.Up(appURL("before")); err != nil || v != want {
		t.Fatalf("migrate without the roles: version %d, %v; want %d, nil", v, err, want)
	}
	if got := groups("before"); len(got) != 0 {
		t.Errorf("without the roles, grants to %v; want none", got)
	}

	for _, stmt := range []string{
		`CREATE ROLE ` + pgx.Identifier{schema.ReaderRole}.Sanitize() + ` NOLOGIN`,
		`CREATE ROLE ` + pgx.Identifier{schema.WriterRole}.Sanitize() + ` NOLOGIN`,
		`CREATE DATABASE after OWNER app`,
	} {
		if _, err := admin.Exec(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	if v, err := schema.Up(appURL("after")); err != nil || v != want {
		t.Fatalf("migrate with the roles: version %d, %v; want %d, nil", v, err, want)
	}
	if got, want := groups("after"), []string{schema.ReaderRole, schema.WriterRole}; len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("with the roles, grants to %v; want %v", got, want)
	}
}
