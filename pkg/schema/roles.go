package schema

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
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
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1)`, group).Scan(&exists); err != nil {
			return fmt.Errorf("look up role %s: %w", group, err)
		}
		if !exists {
			return fmt.Errorf("role %s does not exist: the migrations could not create it (see the migrate log's warning)", group)
		}
		var self, powerful bool
		err := tx.QueryRow(ctx, `
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
