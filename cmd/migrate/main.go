// Command migrate applies the embedded schema migrations to DATABASE_URL
// and exits: a compose one-shot service and a Helm hook Job. It then grants
// the read-only and the insert-only group roles their rights, and, given
// the reporter's and the collectors' own URLs, makes their login roles (the
// URLs' users and passwords) members of those groups.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/eventpipe/eventpipe/pkg/config"
	"github.com/eventpipe/eventpipe/pkg/logging"
	"github.com/eventpipe/eventpipe/pkg/schema"
	"github.com/eventpipe/eventpipe/pkg/stream"
)

func main() { os.Exit(run()) }

func run() int {
	r := config.NewReader(os.LookupEnv)
	databaseURL := r.URL("DATABASE_URL", "", false, "postgres", "postgresql")
	if databaseURL == "" {
		r.Fail("DATABASE_URL", "is required")
	}
	logins := readLogins(r, databaseURL)
	// Where migrate may not create the group roles, an operator or an
	// administrator does: required waits for them (within MIGRATE_WAIT),
	// optional grants only what exists.
	rolesRequired := r.Enum("DATABASE_ROLES", "optional", "optional", "required") == "required"
	level := r.Enum("LOG_LEVEL", "info", "debug", "info", "warn", "error")
	format := r.Enum("LOG_FORMAT", "json", "json", "text")
	// The database may still be starting (compose, a fresh cluster): wait
	// for it this long before giving up.
	wait := r.Duration("MIGRATE_WAIT", 60*time.Second)
	if err := r.Err(); err != nil {
		fmt.Fprintf(os.Stderr, "migrate: invalid setting %v\n", err)
		return 2
	}
	logger, err := logging.New(os.Stderr, "migrate", level, format)
	if err != nil {
		fmt.Fprintf(os.Stderr, "migrate: invalid setting %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()

	want, err := schema.Want()
	if err != nil {
		logger.Error("read embedded migrations", "error", err)
		return 1
	}
	// Only reaching the database is retried; a failing migration is not.
	err = stream.Retry(ctx, logger, "connect to database", 5*time.Second, func(ctx context.Context) error {
		conn, err := pgx.Connect(ctx, databaseURL)
		if err != nil {
			return err
		}
		return conn.Close(ctx)
	})
	if err != nil {
		logger.Error("database unreachable", "error", err)
		return 1
	}
	version, err := schema.Up(databaseURL)
	if err != nil {
		logger.Error("migration failed", "error", err)
		return 1
	}
	logger.Info("schema up to date", "version", version, "want", want)
	conn, err := pgx.Connect(ctx, databaseURL)
	if err != nil {
		logger.Error("database unreachable", "error", err)
		return 1
	}
	defer conn.Close(context.Background())
	if err := grant(ctx, logger, conn, rolesRequired); err != nil {
		logger.Error("group roles not granted", "setting", "DATABASE_ROLES", "error", err)
		return 1
	}
	for _, l := range logins {
		if err := schema.EnsureLogin(ctx, conn, l.group, l.user, l.password); err != nil {
			logger.Error("login role not set up", "setting", l.setting, "error", err)
			return 1
		}
		logger.Info("login role set up", "role", l.user, "group", l.group)
	}
	return 0
}

// grant gives the group roles their rights (schema.Grant). A group that
// migrate may not create and that does not exist is skipped with a
// warning, or, when required, waited for: an operator such as
// CloudNativePG creates the roles it declares once the database is up,
// which may be after this run has started.
func grant(ctx context.Context, logger *slog.Logger, conn *pgx.Conn, required bool) error {
	for waited := false; ; waited = true {
		missing, err := schema.Grant(ctx, conn)
		if err != nil {
			return err
		}
		switch {
		case len(missing) == 0:
			logger.Info("group roles granted", "roles", []string{schema.ReaderRole, schema.WriterRole})
			return nil
		case !required:
			logger.Warn("group roles missing, and this role may not create them: no grants for them",
				"roles", missing, "hint", "create them (NOLOGIN) as an administrator; the next migrate run grants them")
			return nil
		case !waited:
			logger.Info("waiting for the group roles to be created", "roles", missing)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("roles %s still missing after MIGRATE_WAIT: %w", strings.Join(missing, ", "), ctx.Err())
		case <-time.After(time.Second):
		}
	}
}

// login is a service's login role, from the URL the service uses.
type login struct {
	setting, group, user, password string
}

// readLogins reads REPORTER_DATABASE_URL and COLLECTOR_DATABASE_URL, both
// optional: each must log in as a user of its own, with a password.
func readLogins(r *config.Reader, ownerURL string) []login {
	var owner string
	if u, err := url.Parse(ownerURL); err == nil && u.User != nil {
		owner = u.User.Username()
	}
	var logins []login
	for _, s := range []struct{ setting, group string }{
		{"REPORTER_DATABASE_URL", schema.ReaderRole},
		{"COLLECTOR_DATABASE_URL", schema.WriterRole},
	} {
		v := r.URL(s.setting, "", false, "postgres", "postgresql")
		if v == "" {
			continue
		}
		u, err := url.Parse(v)
		if err != nil {
			continue // r.URL has failed already
		}
		user := u.User.Username()
		password, _ := u.User.Password()
		switch {
		case user == "" || password == "":
			r.Fail(s.setting, "must name a user and its password: postgres://user:password@host:port/database")
		case user == owner:
			r.Fail(s.setting, "logs in as %s, DATABASE_URL's owner: give the service a role of its own", user)
		case slices.ContainsFunc(logins, func(l login) bool { return l.user == user }):
			r.Fail(s.setting, "logs in as %s, as %s does: give each its own role", user, logins[0].setting)
		}
		logins = append(logins, login{s.setting, s.group, user, password})
	}
	return logins
}
