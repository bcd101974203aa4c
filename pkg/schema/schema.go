// Package schema applies the embedded migrations and tells whether a
// database carries the schema version this build needs.
package schema

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"

	"github.com/golang-migrate/migrate/v4"
	_ "github.com/golang-migrate/migrate/v4/database/pgx/v5" // registers pgx5://
	"github.com/golang-migrate/migrate/v4/source/iofs"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventpipe/eventpipe/migrations"
)

// ErrNotMigrated means the database lacks the schema version this build
// needs, or a migration failed half-way (dirty).
var ErrNotMigrated = errors.New("schema not migrated")

// Want returns the highest migration version embedded in this build: the
// version services need before they report ready.
func Want() (uint, error) {
	entries, err := fs.ReadDir(migrations.FS, ".")
	if err != nil {
		return 0, fmt.Errorf("read migrations: %w", err)
	}
	var want uint
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		if !ok {
			continue
		}
		v, err := strconv.ParseUint(num, 10, 64)
		if err != nil {
			continue
		}
		want = max(want, uint(v))
	}
	if want == 0 {
		return 0, errors.New("no migrations embedded")
	}
	return want, nil
}

// Up applies every pending migration to the database at databaseURL and
// returns the version it left the database at.
func Up(databaseURL string) (uint, error) {
	src, err := iofs.New(migrations.FS, ".")
	if err != nil {
		return 0, fmt.Errorf("open migrations: %w", err)
	}
	m, err := migrate.NewWithSourceInstance("iofs", src, migrateURL(databaseURL))
	if err != nil {
		return 0, fmt.Errorf("connect for migration: %w", err)
	}
	defer m.Close()
	if err := m.Up(); err != nil && !errors.Is(err, migrate.ErrNoChange) {
		return 0, fmt.Errorf("migrate up: %w", err)
	}
	v, _, err := m.Version()
	if err != nil {
		return 0, fmt.Errorf("read version: %w", err)
	}
	return v, nil
}

// migrateURL turns a postgres:// URL into the pgx5:// scheme that
// golang-migrate's pgx v5 driver registers.
func migrateURL(databaseURL string) string {
	for _, p := range []string{"postgresql://", "postgres://"} {
		if rest, ok := strings.CutPrefix(databaseURL, p); ok {
			return "pgx5" + "://" + rest
		}
	}
	return databaseURL
}

// Check returns nil when the database's schema version is at least want and
// not dirty. A newer version passes, so old replicas stay ready while a
// rolling upgrade runs newer migrations.
func Check(ctx context.Context, pool *pgxpool.Pool, want uint) error {
	var (
		version int64
		dirty   bool
	)
	err := pool.QueryRow(ctx, `SELECT version, dirty FROM schema_migrations LIMIT 1`).Scan(&version, &dirty)
	if err != nil {
		if errors.Is(err, pgx.ErrNoRows) || strings.Contains(err.Error(), "does not exist") {
			return fmt.Errorf("%w: no migration applied, want version %d", ErrNotMigrated, want)
		}
		return fmt.Errorf("read schema version: %w", err)
	}
	if dirty {
		return fmt.Errorf("%w: version %d is dirty", ErrNotMigrated, version)
	}
	if version < int64(want) {
		return fmt.Errorf("%w: version %d, want %d", ErrNotMigrated, version, want)
	}
	return nil
}
