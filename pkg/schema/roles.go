package schema

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The group roles migration 4 creates and grants to: the reporter's login
// role joins ReaderRole, the collectors' WriterRole.
const (
	ReaderRole = "eventpipe_reader"
	WriterRole = "eventpipe_writer"
)

// EnsureLogin makes user a login role with password and a member of group
// (ReaderRole or WriterRole), and of no other of the two: it creates the
// role or updates its password, so running it again, or with a new
// password, converges. It refuses the connection's own role and roles
// with powers of their own (superuser, CREATEROLE, replication, RLS
// bypass): giving one of those a service's password would be an escalation,
// not least privilege.
func EnsureLogin(ctx context.Context, conn *pgx.Conn, group, user, password string) error {
	if group != ReaderRole && group != WriterRole {
		return fmt.Errorf("unknown group role %q", group)
	}
	var other string
	if group == ReaderRole {
		other = WriterRole
	} else {
		other = ReaderRole
	}
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		exists, err := roleExists(ctx, tx, group)
		if err != nil {
			return err
		}
		if !exists {
			return fmt.Errorf("role %s does not exist: migrate could not create it (see its warning)", group)
		}
		var self, powerful bool
		err = tx.QueryRow(ctx, `
			SELECT rolname = current_user, rolsuper OR rolcreaterole OR rolreplication OR rolbypassrls
			FROM pg_roles WHERE rolname = $1`, user).Scan(&self, &powerful)
		found := err == nil
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("look up role %s: %w", user, err)
		}
		if self {
			return fmt.Errorf("role %s is the one migrating: give the service a role of its own", user)
		}
		if powerful {
			return fmt.Errorf("role %s exists with superuser, CREATEROLE, replication or RLS bypass: give the service a role of its own", user)
		}
		// Utility statements take no parameters: the server quotes the
		// password itself.
		tmpl := `CREATE ROLE %I LOGIN PASSWORD %L`
		if found {
			tmpl = `ALTER ROLE %I LOGIN INHERIT PASSWORD %L`
		}
		var setup string
		if err := tx.QueryRow(ctx, `SELECT format($1::text, $2::text, $3::text)`, tmpl, user, password).Scan(&setup); err != nil {
			return fmt.Errorf("quote role %s: %w", user, err)
		}
		if _, err := tx.Exec(ctx, setup); err != nil {
			return fmt.Errorf("set up role %s: %w", user, err)
		}
		if _, err := tx.Exec(ctx, `GRANT `+pgx.Identifier{group}.Sanitize()+` TO `+pgx.Identifier{user}.Sanitize()); err != nil {
			return fmt.Errorf("add role %s to %s: %w", user, group, err)
		}
		// A role moved from the writers to the readers (or back) keeps
		// only its new group's rights.
		var member bool
		err = tx.QueryRow(ctx, `
			SELECT EXISTS (SELECT FROM pg_auth_members m
				JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles u ON u.oid = m.member
				WHERE g.rolname = $1 AND u.rolname = $2)`, other, user).Scan(&member)
		if err != nil {
			return fmt.Errorf("look up %s's groups: %w", user, err)
		}
		if member {
			if _, err := tx.Exec(ctx, `REVOKE `+pgx.Identifier{other}.Sanitize()+` FROM `+pgx.Identifier{user}.Sanitize()); err != nil {
				return fmt.Errorf("take %s out of %s: %w", user, other, err)
			}
		}
		return nil
	})
}

// Grant gives the group roles their rights in the schema of conn's
// database, and returns the groups that do not exist and so got none. It
// creates a missing group when the connection's role may create roles;
// where it may not (a managed database's owner), an operator or an
// administrator creates them. Migration 4 first granted these rights, but
// only to groups that existed when it ran; migrate calls Grant after every
// run, so groups created later get their rights from the next run.
// Granting again what is granted changes nothing.
func Grant(ctx context.Context, conn *pgx.Conn) (missing []string, err error) {
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		missing = nil
		// Concurrent GRANTs on one object can fail ("tuple concurrently
		// updated"): one migrate at a time grants.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('eventpipe grants'))`); err != nil {
			return fmt.Errorf("lock grants: %w", err)
		}
		var (
			schemaName string
			mayCreate  bool
		)
		err := tx.QueryRow(ctx, `SELECT current_schema(), rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user`).
			Scan(&schemaName, &mayCreate)
		if err != nil {
			return fmt.Errorf("look up the current schema and role: %w", err)
		}
		s := pgx.Identifier{schemaName}.Sanitize()
		rights := map[string][]string{
			// Every table, tables created later included.
			ReaderRole: {
				`GRANT USAGE ON SCHEMA ` + s + ` TO ` + ReaderRole,
				`GRANT SELECT ON ALL TABLES IN SCHEMA ` + s + ` TO ` + ReaderRole,
				`ALTER DEFAULT PRIVILEGES IN SCHEMA ` + s + ` GRANT SELECT ON TABLES TO ` + ReaderRole,
			},
			// Inserting events; ON CONFLICT (event_id) reads event_id, and
			// the readiness check reads schema_migrations. The rollups are
			// kept by a SECURITY DEFINER trigger, so no right on them.
			WriterRole: {
				`GRANT USAGE ON SCHEMA ` + s + ` TO ` + WriterRole,
				`GRANT INSERT ON events TO ` + WriterRole,
				`GRANT SELECT (event_id) ON events TO ` + WriterRole,
				`GRANT SELECT ON schema_migrations TO ` + WriterRole,
			},
		}
		for _, group := range []string{ReaderRole, WriterRole} {
			exists, err := roleExists(ctx, tx, group)
			if err != nil {
				return err
			}
			if !exists && mayCreate {
				if err := createGroup(ctx, tx, group); err != nil {
					return err
				}
				exists = true
			}
			if !exists {
				missing = append(missing, group)
				continue
			}
			for _, stmt := range rights[group] {
				if _, err := tx.Exec(ctx, stmt); err != nil {
					return fmt.Errorf("grant to %s: %w", group, err)
				}
			}
		}
		return nil
	})
	return missing, err
}

func roleExists(ctx context.Context, tx pgx.Tx, name string) (bool, error) {
	var exists bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1)`, name).Scan(&exists); err != nil {
		return false, fmt.Errorf("look up role %s: %w", name, err)
	}
	return exists, nil
}

// createGroup creates a NOLOGIN group role, tolerating another database's
// migration creating it first: roles belong to the whole server.
func createGroup(ctx context.Context, tx pgx.Tx, name string) error {
	sp, err := tx.Begin(ctx)
	if err != nil {
		return err
	}
	_, err = sp.Exec(ctx, `CREATE ROLE `+pgx.Identifier{name}.Sanitize()+` NOLOGIN`)
	var pgErr *pgconn.PgError
	// duplicate_object, or unique_violation when the other creation
	// commits while this one runs.
	if errors.As(err, &pgErr) && (pgErr.Code == "42710" || pgErr.Code == "23505") {
		return sp.Rollback(ctx)
	}
	if err != nil {
		_ = sp.Rollback(ctx)
		return fmt.Errorf("create role %s: %w", name, err)
	}
	return sp.Commit(ctx)
}
