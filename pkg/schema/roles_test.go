package schema_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/eventpipe/eventpipe/pkg/event"
	"github.com/eventpipe/eventpipe/pkg/eventgen"
	"github.com/eventpipe/eventpipe/pkg/pgtest"
	"github.com/eventpipe/eventpipe/pkg/schema"
	"github.com/eventpipe/eventpipe/pkg/store"
)

// TestRoles applies every migration, makes a reporter and a collector
// login role as migrate does, and runs the real statements as each: the
// reader runs every report and nothing else, the writer stores a batch
// through InsertEvents (rollups included) and nothing else, and both pass
// the readiness check.
func TestRoles(t *testing.T) {
	ctx := context.Background()
	ownerURL := pgtest.Migrated(t)
	owner := pgtest.Connect(t, ownerURL)
	reporterURL := loginRole(t, owner, ownerURL, schema.ReaderRole, "reporter")
	collectorURL := loginRole(t, owner, ownerURL, schema.WriterRole, "collector")
	want, err := schema.Want()
	if err != nil {
		t.Fatal(err)
	}

	writer := openStore(t, collectorURL)
	from := time.Date(2025, 6, 10, 0, 0, 0, 0, time.UTC)
	recs := records(t, 500, from)
	for _, pass := range []struct {
		name string
		want int64
	}{{"new batch", 500}, {"redelivered batch", 0}} {
		got, err := writer.InsertEvents(ctx, recs)
		if err != nil {
			t.Fatalf("writer: %s: InsertEvents: %v", pass.name, err)
		}
		if got != pass.want {
			t.Errorf("writer: %s: inserted got %d; want %d", pass.name, got, pass.want)
		}
	}
	var counted int64
	err = owner.QueryRow(ctx, `SELECT coalesce(sum(events), 0) FROM event_counts WHERE granularity = 'day' AND rolled_up = 7`).Scan(&counted)
	if err != nil {
		t.Fatal(err)
	}
	if counted != 500 {
		t.Errorf("the writer's inserts counted %d in the rollups; want 500", counted)
	}

	reader := openStore(t, reporterURL)
	// Ranges with uneven edges read events as well as the rollups.
	r := store.TimeRange{From: from.Add(-90*time.Minute + 17*time.Second), To: from.Add(49*time.Hour + 3*time.Minute)}
	whole := store.TimeRange{From: from.AddDate(0, 0, -1), To: from.AddDate(0, 0, 3)}
	var total int64
	for _, q := range []store.EventsQuery{
		{TimeRange: r}, {TimeRange: whole, Interval: "day"}, {TimeRange: r, Interval: "minute", Source: "facebook"},
		{TimeRange: r, Interval: "hour", Source: "tiktok", FunnelStage: "top", EventType: "video.view"},
	} {
		rep, err := reader.ReportEvents(ctx, q)
		if err != nil {
			t.Errorf("reader: ReportEvents %+v: %v", q, err)
		}
		if q.TimeRange == whole && q.Source == "" {
			total = rep.Total
		}
	}
	if total != 500 {
		t.Errorf("reader: events report total got %d; want 500", total)
	}
	for _, q := range []store.RevenueQuery{
		{TimeRange: r, Limit: 10}, {TimeRange: whole, Source: "facebook", Limit: 5}, {TimeRange: r, CampaignID: "camp-1", Limit: 1},
	} {
		if _, err := reader.ReportRevenue(ctx, q); err != nil {
			t.Errorf("reader: ReportRevenue %+v: %v", q, err)
		}
	}
	for _, q := range []store.DemographicsQuery{
		{TimeRange: r, Limit: 10}, {TimeRange: whole, Source: "facebook", Limit: 3}, {TimeRange: r, Source: "tiktok", Limit: 3},
	} {
		if _, err := reader.ReportDemographics(ctx, q); err != nil {
			t.Errorf("reader: ReportDemographics %+v: %v", q, err)
		}
	}

	for _, s := range []struct {
		name string
		st   *store.Store
	}{{"reader", reader}, {"writer", writer}} {
		if err := s.st.Check(want)(ctx); err != nil {
			t.Errorf("%s: readiness check: %v", s.name, err)
		}
	}

	insert := `INSERT INTO events (event_id, occurred_at, source, funnel_stage, event_type, user_id, payload)
		VALUES ('x', now(), 'facebook', 'top', 'ad.view', 'u', '{}')`
	forbidden := map[string][]string{
		"reader": {
			insert,
			`UPDATE events SET user_id = 'x'`,
			`DELETE FROM events`,
			`TRUNCATE events`,
			`INSERT INTO event_counts (granularity, rolled_up, bucket, events) VALUES ('day', 7, now(), 1)`,
			`UPDATE audience_users SET hours = hours`,
			`DELETE FROM revenue_sums`,
			`CREATE TABLE intruder (id int)`,
			`CREATE FUNCTION intruder() RETURNS int LANGUAGE sql RETURN 1`,
			`DROP TABLE audience_counts`,
			`ALTER TABLE events ADD COLUMN intruder int`,
			`DELETE FROM schema_migrations`,
			`SELECT events_rollup()`,
		},
		"writer": {
			`SELECT payload FROM events`,
			`SELECT user_id, purchase_amount FROM events`,
			`UPDATE events SET user_id = 'x'`,
			`DELETE FROM events`,
			`TRUNCATE events`,
			`SELECT count(*) FROM event_counts`,
			`INSERT INTO event_counts (granularity, rolled_up, bucket, events) VALUES ('day', 7, now(), 1)`,
			`UPDATE event_counts SET events = 0`,
			`DELETE FROM audience_users`,
			`TRUNCATE revenue_sums`,
			`UPDATE schema_migrations SET version = 1`,
			`CREATE TABLE intruder (id int)`,
			`DROP TABLE events`,
			`DROP TRIGGER events_rollup ON events`,
			`ALTER TABLE events DISABLE TRIGGER events_rollup`,
			`SELECT events_rollup()`,
		},
	}
	for name, s := range map[string]*store.Store{"reader": reader, "writer": writer} {
		for _, stmt := range forbidden[name] {
			_, err := s.Pool().Exec(ctx, stmt)
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
				t.Errorf("%s: %s: got %v; want permission denied (42501)", name, stmt, err)
			}
		}
	}
}

// TestRoleFromEnvironment connects as the chart connects the services to
// the bundled database: a URL without credentials, the login role and its
// password in PGUSER and PGPASSWORD (from CloudNativePG's role Secret).
func TestRoleFromEnvironment(t *testing.T) {
	ctx := context.Background()
	ownerURL := pgtest.Migrated(t)
	u, err := url.Parse(loginRole(t, pgtest.Connect(t, ownerURL), ownerURL, schema.WriterRole, "collector"))
	if err != nil {
		t.Fatal(err)
	}
	password, _ := u.User.Password()
	t.Setenv("PGUSER", u.User.Username())
	t.Setenv("PGPASSWORD", password)
	role := u.User.Username()
	u.User = nil
	writer := openStore(t, u.String())
	var user string
	if err := writer.Pool().QueryRow(ctx, `SELECT current_user`).Scan(&user); err != nil {
		t.Fatal(err)
	}
	if user != role {
		t.Errorf("connected as %s; want %s, from PGUSER", user, role)
	}
	if n, err := writer.InsertEvents(ctx, records(t, 10, time.Date(2025, 6, 10, 0, 0, 0, 0, time.UTC))); err != nil || n != 10 {
		t.Errorf("InsertEvents: %d, %v; want 10, nil", n, err)
	}
}

// TestEnsureLoginConverges: running it again with a new password, or for
// the other group, leaves the role in exactly one group with the new
// password; the migrating role and powerful roles are refused.
func TestEnsureLoginConverges(t *testing.T) {
	ctx := context.Background()
	ownerURL := pgtest.Migrated(t)
	owner := pgtest.Connect(t, ownerURL)
	name := fmt.Sprintf("svc_%d_moved", os.Getpid())
	dropRole(t, ownerURL, name)
	for _, group := range []string{schema.ReaderRole, schema.ReaderRole, schema.WriterRole} {
		if err := schema.EnsureLogin(ctx, owner, group, name, "pw-"+group); err != nil {
			t.Fatalf("EnsureLogin %s: %v", group, err)
		}
	}
	var groups []string
	err := owner.QueryRow(ctx, `
		SELECT coalesce(array_agg(g.rolname ORDER BY g.rolname), '{}') FROM pg_auth_members m
		JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles u ON u.oid = m.member
		WHERE u.rolname = $1`, name).Scan(&groups)
	if err != nil {
		t.Fatal(err)
	}
	if len(groups) != 1 || groups[0] != schema.WriterRole {
		t.Errorf("groups of %s got %v; want [%s]", name, groups, schema.WriterRole)
	}

	var self string
	if err := owner.QueryRow(ctx, `SELECT current_user`).Scan(&self); err != nil {
		t.Fatal(err)
	}
	powerful := fmt.Sprintf("svc_%d_powerful", os.Getpid())
	dropRole(t, ownerURL, powerful)
	if _, err := owner.Exec(ctx, `CREATE ROLE `+powerful+` LOGIN CREATEROLE`); err != nil {
		t.Fatal(err)
	}
	for _, user := range []string{self, powerful} {
		if err := schema.EnsureLogin(ctx, owner, schema.ReaderRole, user, "pw"); err == nil {
			t.Errorf("EnsureLogin %s: got nil; want a refusal", user)
		}
	}
}

// loginRole makes a login role in group, named for this process so tests
// sharing a server do not collide, and returns ownerURL logged in as it.
func loginRole(t *testing.T, owner *pgx.Conn, ownerURL, group, service string) string {
	t.Helper()
	name := fmt.Sprintf("%s_%d_%s", service, os.Getpid(), t.Name())
	dropRole(t, ownerURL, name)
	if err := schema.EnsureLogin(context.Background(), owner, group, name, "secret-"+service); err != nil {
		t.Fatalf("EnsureLogin %s: %v", name, err)
	}
	u, err := url.Parse(ownerURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(name, "secret-"+service)
	return u.String()
}

// dropRole drops the role once the test is over: roles outlive the
// test's database.
func dropRole(t *testing.T, ownerURL, name string) {
	t.Cleanup(func() {
		ctx := context.Background()
		c, err := pgx.Connect(ctx, ownerURL)
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, `DROP ROLE IF EXISTS `+pgx.Identifier{name}.Sanitize()); err != nil {
			t.Errorf("drop role %s: %v", name, err)
		}
	})
}

func openStore(t *testing.T, dbURL string) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), dbURL, 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// records generates n events over the two days from from, as a collector
// receives them.
func records(t *testing.T, n int, from time.Time) []store.Record {
	t.Helper()
	g := eventgen.New(3)
	recs := make([]store.Record, 0, n)
	for i := range n {
		e := g.Next(from.Add(time.Duration(i) * 2 * 48 * time.Hour / time.Duration(2*n)))
		raw := e.AppendJSON(nil)
		parsed, err := event.Parse(raw)
		if err != nil {
			t.Fatalf("parse %s: %v", raw, err)
		}
		recs = append(recs, store.Record{Event: parsed, Raw: raw, CorrelationID: "c"})
	}
	return recs
}
