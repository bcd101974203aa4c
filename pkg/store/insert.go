package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/eventpipe/eventpipe/pkg/event"
)

// Record is one event to store: the parsed event for the typed columns and
// the bytes it arrived as, kept whole in payload.
type Record struct {
	Event         event.Event
	Raw           []byte
	CorrelationID string
}

// insertSQL stores a whole batch in one statement: each column travels as
// one array parameter and unnest turns the arrays back into rows. It was
// measured against COPY into a staging table (BenchmarkInsertEvents) and
// is faster at the collectors' batch sizes, in one round trip. Amounts
// travel as text and are cast by PostgreSQL, so money never passes through
// a float. ON CONFLICT DO NOTHING makes redeliveries and repeats (in the
// table or inside the batch) no-ops, and RowsAffected counts only new rows.
const insertSQL = `
INSERT INTO events (event_id, occurred_at, source, funnel_stage, event_type, user_id,
	age, gender, country, city, followers, device, campaign_id, purchase_amount,
	correlation_id, payload)
SELECT event_id, occurred_at, source, funnel_stage, event_type, user_id,
	age, gender, country, city, followers, device, campaign_id, purchase_amount::numeric,
	correlation_id, payload::jsonb
FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[],
	$7::int4[], $8::text[], $9::text[], $10::text[], $11::int8[], $12::text[], $13::text[],
	$14::text[], $15::text[], $16::text[])
	AS r(event_id, occurred_at, source, funnel_stage, event_type, user_id,
	age, gender, country, city, followers, device, campaign_id, purchase_amount,
	correlation_id, payload)
ON CONFLICT (event_id) DO NOTHING`

// InsertEvents stores recs in one statement, hence one transaction, and
// returns how many of them were new: events whose event_id is already
// stored, or repeated within recs, are skipped. The events_rollup trigger
// adds the new ones, and only those, to the report rollups within the same
// statement. A failure stores none of them; IsPermanent tells whether
// retrying can help.
func (s *Store) InsertEvents(ctx context.Context, recs []Record) (int64, error) {
	if len(recs) == 0 {
		return 0, nil
	}
	c := newColumns(recs)
	tag, err := s.pool.Exec(ctx, insertSQL, c.args()...)
	if err != nil {
		return 0, fmt.Errorf("insert %d events: %w", len(recs), err)
	}
	return tag.RowsAffected(), nil
}

// CopyColumns are the events columns CopyRows fills, in order;
// received_at keeps its default.
var CopyColumns = []string{"event_id", "occurred_at", "source", "funnel_stage", "event_type",
	"user_id", "age", "gender", "country", "city", "followers", "device", "campaign_id",
	"purchase_amount", "correlation_id", "payload"}

// CopyRows returns recs as rows of CopyColumns for a bulk load with COPY
// (pgx's CopyFrom into events), mapped to columns exactly as InsertEvents
// maps them, so loaded events read as stored ones. COPY has no ON CONFLICT:
// one event_id already stored fails the whole load.
func CopyRows(recs []Record) ([][]any, error) {
	c := newColumns(recs)
	rows := make([][]any, len(recs))
	for i := range recs {
		// numeric has no text form in COPY's binary format: the amount is
		// parsed here, exactly, rather than cast by the server.
		var amount pgtype.Numeric
		if c.amounts[i].Valid {
			if err := amount.Scan(c.amounts[i].String); err != nil {
				return nil, fmt.Errorf("event %s: purchase amount %q: %w", c.ids[i], c.amounts[i].String, err)
			}
		}
		rows[i] = []any{c.ids[i], c.occurred[i], c.sources[i], c.stages[i], c.types[i],
			c.users[i], c.ages[i], c.genders[i], c.countries[i], c.cities[i],
			c.followers[i], c.devices[i], c.campaigns[i], amount,
			c.correlations[i], []byte(c.payloads[i])}
	}
	return rows, nil
}

// columns holds a batch column by column, in the order of insertSQL.
type columns struct {
	ids, sources, stages, types, users             []string
	occurred                                       []time.Time
	ages                                           []pgtype.Int4
	genders, countries, cities, devices, campaigns []pgtype.Text
	amounts, correlations                          []pgtype.Text
	followers                                      []pgtype.Int8
	payloads                                       []string
}

func newColumns(recs []Record) *columns {
	n := len(recs)
	c := &columns{
		ids: make([]string, n), sources: make([]string, n), stages: make([]string, n),
		types: make([]string, n), users: make([]string, n), occurred: make([]time.Time, n),
		ages: make([]pgtype.Int4, n), genders: make([]pgtype.Text, n),
		countries: make([]pgtype.Text, n), cities: make([]pgtype.Text, n),
		followers: make([]pgtype.Int8, n), devices: make([]pgtype.Text, n),
		campaigns: make([]pgtype.Text, n), amounts: make([]pgtype.Text, n),
		correlations: make([]pgtype.Text, n), payloads: make([]string, n),
	}
	for i := range recs {
		r := &recs[i]
		e := &r.Event
		c.ids[i] = e.ID
		c.occurred[i] = e.Timestamp
		c.sources[i] = string(e.Source)
		c.stages[i] = string(e.FunnelStage)
		c.types[i] = e.Type
		c.users[i] = e.User.ID
		switch e.Source {
		case event.Facebook:
			c.ages[i] = pgtype.Int4{Int32: int32(e.User.Age), Valid: true}
			c.genders[i] = nullText(e.User.Gender)
			c.countries[i] = nullText(e.User.Country)
			c.cities[i] = nullText(e.User.City)
		case event.TikTok:
			c.followers[i] = pgtype.Int8{Int64: e.User.Followers, Valid: true}
			// Only top events carry a country; bottom ones leave it NULL.
			c.countries[i] = nullText(e.Engagement.Country)
		}
		// Device is facebook bottom's or tiktok top's; the other shapes
		// leave it empty, stored as NULL.
		c.devices[i] = nullText(e.Engagement.Device)
		c.campaigns[i] = nullText(e.Engagement.CampaignID)
		if a := e.Engagement.PurchaseAmount; a != nil {
			c.amounts[i] = pgtype.Text{String: *a, Valid: true}
		}
		c.correlations[i] = nullText(r.CorrelationID)
		c.payloads[i] = string(r.Raw)
	}
	return c
}

func (c *columns) args() []any {
	return []any{c.ids, c.occurred, c.sources, c.stages, c.types, c.users,
		c.ages, c.genders, c.countries, c.cities, c.followers, c.devices, c.campaigns,
		c.amounts, c.correlations, c.payloads}
}

// nullText maps the empty string, which the parser leaves in fields an event's
// shape does not carry, to NULL.
func nullText(s string) pgtype.Text { return pgtype.Text{String: s, Valid: s != ""} }

// IsPermanent reports whether err is one that retrying cannot fix: the
// database rejected the data, and the same statement with the same data
// will meet the same error. Everything else (no connection, timeouts,
// cancellation, shutdown, serialization failures, deadlocks, lack of
// resources) may pass on a later try.
//
// So may a statement that does not fit the database (class 42: a table or
// column the migrations have not created yet, a privilege not granted
// yet, during an upgrade or a deployment's first minutes). Every event
// would meet that error, so calling it permanent would dead-letter the
// whole stream; retried, the events wait in JetStream until the database
// is ready for them.
func IsPermanent(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || len(pgErr.Code) < 2 {
		return false
	}
	switch pgErr.Code[:2] {
	case "0A", // feature not supported
		"21", // cardinality violation
		"22", // data exception: out-of-range numeric, invalid text, bad JSON
		"23", // integrity constraint violation: NOT NULL, CHECK
		"44", // WITH CHECK OPTION violation
		"54": // program limit exceeded: a row or value too large
		return true
	}
	return false
}
