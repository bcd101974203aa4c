package main

import (
	"context"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/eventpipe/eventpipe/pkg/logtest"
	"github.com/eventpipe/eventpipe/pkg/pgtest"
	"github.com/eventpipe/eventpipe/pkg/schema"
)

// TestGrantWaitsForRequiredRoles migrates as an owner that may not create
// roles, on a server of its own where the group roles do not exist yet, as
// with CloudNativePG, whose operator creates the roles it declares once
// the database is up. Optional, migrate warns and goes on; required, it
// fails when MIGRATE_WAIT ends, naming the roles; and it waits while they
// are missing, then grants them their rights as soon as they exist.
func TestGrantWaitsForRequiredRoles(t *testing.T) {
	ctx := context.Background()
	pg := pgtest.PrivateServer(t)
	admin := pgtest.Connect(t, pg.AdminURL())
	for _, stmt := range []string{`CREATE ROLE app LOGIN NOCREATEROLE`, `CREATE DATABASE app OWNER app`} {
		if _, err := admin.Exec(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	u, err := url.Parse(pg.AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	u.User, u.Path = url.User("app"), "/app"
	if _, err := schema.Up(u.String()); err != nil {
		t.Fatal(err)
	}
	app := pgtest.Connect(t, u.String())
	logs := &logtest.Buffer{}
	logger := slog.New(slog.NewJSONHandler(logs, nil))

	if err := grant(ctx, logger, app, false); err != nil {
		t.Errorf("optional roles, missing: got %v; want nil", err)
	}
	if !strings.Contains(logs.String(), "group roles missing") {
		t.Errorf("optional roles, missing: no warning in %s", logs)
	}

	short, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer cancel()
	err = grant(short, logger, app, true)
	if err == nil || !strings.Contains(err.Error(), "roles eventpipe_reader, eventpipe_writer still missing") {
		t.Errorf("required roles, never created: got %v; want an error naming them", err)
	}

	waiting, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	logs.Reset()
	done := make(chan error, 1)
	go func() { done <- grant(waiting, logger, app, true) }()
	for !strings.Contains(logs.String(), "waiting for the group roles") {
		select {
		case err := <-done:
			t.Fatalf("required roles, missing: grant returned %v instead of waiting", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	for _, group := range []string{schema.ReaderRole, schema.WriterRole} {
		if _, err := admin.Exec(ctx, `CREATE ROLE `+pgx.Identifier{group}.Sanitize()+` NOLOGIN`); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("required roles, created while waiting: got %v; want nil", err)
	}
	var reads, writes bool
	err = app.QueryRow(ctx, `SELECT has_table_privilege($1, 'events', 'SELECT'), has_table_privilege($2, 'events', 'INSERT')`,
		schema.ReaderRole, schema.WriterRole).Scan(&reads, &writes)
	if err != nil {
		t.Fatal(err)
	}
	if !reads || !writes {
		t.Errorf("after the wait: reader SELECT %t, writer INSERT %t; want both", reads, writes)
	}
}
