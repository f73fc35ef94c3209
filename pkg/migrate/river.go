package migrate

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

// River's tables (river_job, river_leader, river_queue, ...) hold the task
// queue (pkg/tasks). They live in the same schema as ip2a-ops's own tables,
// never in public, so the app's Alembic autogenerate does not see them.
// River versions its own migrations (table river_migration); Up applies
// them after ip2a-ops's, each in its own transaction under the same
// advisory lock, so concurrent migrators stay safe and a River upgrade is
// applied by the next `ip2a-ops migrate`.

func riverMigrator(schema string) (*rivermigrate.Migrator[pgx.Tx], error) {
	m, err := rivermigrate.New(riverpgxv5.New(nil), &rivermigrate.Config{Schema: schema, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, fmt.Errorf("river migrations: %w", err)
	}
	return m, nil
}

// riverStep applies the next River migration missing from schema, if any,
// inside tx, and returns its version (0 when none was missing). River's
// migrations cannot share one transaction (one adds an enum value that a
// later one uses), so Up runs one step per transaction, each under the
// advisory lock.
func riverStep(ctx context.Context, tx pgx.Tx, schema string) (int, error) {
	m, err := riverMigrator(schema)
	if err != nil {
		return 0, err
	}
	res, err := m.MigrateTx(ctx, tx, rivermigrate.DirectionUp, &rivermigrate.MigrateOpts{MaxSteps: 1})
	if err != nil {
		return 0, fmt.Errorf("river migrations: %w", err)
	}
	if len(res.Versions) == 0 {
		return 0, nil
	}
	return res.Versions[0].Version, nil
}

// RiverLatest is the newest River migration version this binary carries.
func RiverLatest() int {
	m, err := riverMigrator(DefaultSchema)
	if err != nil {
		return 0
	}
	all := m.AllVersions()
	return all[len(all)-1].Version
}

// riverScript is River's migrations as SQL for schema, for `migrate
// --print`: one transaction per version, as Up runs them.
func riverScript(schema string) (string, error) {
	m, err := riverMigrator(schema)
	if err != nil {
		return "", err
	}
	q := pgx.Identifier{schema}.Sanitize()
	var b strings.Builder
	for _, v := range m.AllVersions() {
		record := fmt.Sprintf("INSERT INTO %s.river_migration (line, version) VALUES ('main', %d);", q, v.Version)
		if v.Version < 5 { // river_migration has no line column before River's 005
			record = fmt.Sprintf("INSERT INTO %s.river_migration (version) VALUES (%d);", q, v.Version)
		}
		fmt.Fprintf(&b, "\n-- river %03d_%s\nBEGIN;\nSELECT pg_advisory_xact_lock(%d);\n%s\n%s\nCOMMIT;\n",
			v.Version, v.Name, lockKey, strings.TrimSpace(strings.ReplaceAll(v.SQLUp, "/* TEMPLATE: schema */", q+".")), record)
	}
	return b.String(), nil
}

// RiverMissing returns the River migration versions missing from schema
// (none when River's tables are current).
func RiverMissing(ctx context.Context, db interface {
	Begin(context.Context) (pgx.Tx, error)
}, schema string) ([]int, error) {
	m, err := riverMigrator(schema)
	if err != nil {
		return nil, err
	}
	tx, err := db.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("check river tables: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // read-only
	have, err := m.ExistingVersionsTx(ctx, tx)
	if err != nil {
		return nil, fmt.Errorf("check river tables: %w", err)
	}
	got := map[int]bool{}
	for _, v := range have {
		got[v.Version] = true
	}
	var missing []int
	for _, v := range m.AllVersions() {
		if !got[v.Version] {
			missing = append(missing, v.Version)
		}
	}
	return missing, nil
}
