package schema_test

import (
	"context"
	"net/url"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/eventpipe/eventpipe/pkg/pgtest"
	"github.com/eventpipe/eventpipe/pkg/schema"
)

// TestMigrateAsPlainOwner migrates as a database owner that may not create
// roles (a managed database's owner, CloudNativePG's app): on a fresh
// server, where the group roles do not exist yet, the migrations succeed
// without their grants and Grant names the missing groups. Once an
// administrator (or an operator) has created the roles, Grant gives the
// already migrated database its rights, and a new database gets them from
// its migrations.
func TestMigrateAsPlainOwner(t *testing.T) {
	ctx := context.Background()
	pg := pgtest.PrivateServer(t)
	admin := pgtest.Connect(t, pg.AdminURL())
	if _, err := admin.Exec(ctx, `CREATE ROLE app LOGIN NOCREATEROLE`); err != nil {
		t.Fatal(err)
	}
	appURL := func(db string) string {
		u, err := url.Parse(pg.AdminURL())
		if err != nil {
			t.Fatal(err)
		}
		u.User, u.Path = url.User("app"), "/"+db
		return u.String()
	}
	want, err := schema.Want()
	if err != nil {
		t.Fatal(err)
	}
	groups := func(db string) []string {
		t.Helper()
		var got []string
		c := pgtest.Connect(t, appURL(db))
		err := c.QueryRow(ctx, `
			SELECT coalesce(array_agg(DISTINCT grantee ORDER BY grantee), '{}')
			FROM information_schema.role_table_grants WHERE grantee LIKE 'eventpipe\_%'`).Scan(&got)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	both := []string{schema.ReaderRole, schema.WriterRole}

	if _, err := admin.Exec(ctx, `CREATE DATABASE before OWNER app`); err != nil {
		t.Fatal(err)
	}
	if v, err := schema.Up(appURL("before")); err != nil || v != want {
		t.Fatalf("migrate without the roles: version %d, %v; want %d, nil", v, err, want)
	}
	if got := groups("before"); len(got) != 0 {
		t.Errorf("without the roles, grants to %v; want none", got)
	}
	if missing, err := schema.Grant(ctx, pgtest.Connect(t, appURL("before"))); err != nil || !slices.Equal(missing, both) {
		t.Errorf("Grant without the roles: missing %v, %v; want %v, nil", missing, err, both)
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
	if got := groups("after"); !slices.Equal(got, both) {
		t.Errorf("with the roles, grants to %v; want %v", got, both)
	}
	// The database migrated before the roles existed gets their rights
	// from Grant, twice over without harm.
	for range 2 {
		if missing, err := schema.Grant(ctx, pgtest.Connect(t, appURL("before"))); err != nil || len(missing) != 0 {
			t.Fatalf("Grant with the roles: missing %v, %v; want none", missing, err)
		}
	}
	if got := groups("before"); !slices.Equal(got, both) {
		t.Errorf("after Grant, grants to %v; want %v", got, both)
	}
	for _, check := range []struct {
		role, table, privilege string
		want                   bool
	}{
		{schema.ReaderRole, "events", "SELECT", true},
		{schema.ReaderRole, "event_counts", "SELECT", true},
		{schema.ReaderRole, "events", "INSERT", false},
		{schema.WriterRole, "events", "INSERT", true},
		{schema.WriterRole, "schema_migrations", "SELECT", true},
		{schema.WriterRole, "events", "SELECT", false},
		{schema.WriterRole, "event_counts", "INSERT", false},
	} {
		var got bool
		err := pgtest.Connect(t, appURL("before")).QueryRow(ctx, `SELECT has_table_privilege($1, $2, $3)`,
			check.role, check.table, check.privilege).Scan(&got)
		if err != nil {
			t.Fatal(err)
		}
		if got != check.want {
			t.Errorf("%s %s on %s: got %t; want %t", check.role, check.privilege, check.table, got, check.want)
		}
	}
}
