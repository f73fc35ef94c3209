// Package migrate creates and upgrades ip2a-ops's own schema (default
// ip2a_ops) from versioned SQL files embedded in the binary. It never touches
// the app's tables.
package migrate

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ip2a/ip2a-ops/pkg/exitcode"
)

//go:embed sql/*.sql
var files embed.FS

// DefaultSchema is the schema ip2a-ops keeps its state in.
const DefaultSchema = "ip2a_ops"

// lockKey serialises concurrent migrators (pg_advisory_xact_lock, so it is
// released with the transaction and safe behind a transaction pooler).
const lockKey = 0x1b2a0b5

// Migration is one embedded, versioned SQL file.
type Migration struct {
	Version int    `json:"version"`
	Name    string `json:"name"`
	SQL     string `json:"-"`
}

var fileName = regexp.MustCompile(`^(\d{3})_([a-z0-9_]+)\.sql$`)
var schemaName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// All returns every embedded migration in version order, with {{schema}}
// replaced by the quoted schema name.
func All(schema string) ([]Migration, error) {
	if err := ValidateSchema(schema); err != nil {
		return nil, err
	}
	entries, err := fs.ReadDir(files, "sql")
	if err != nil {
		return nil, err
	}
	var out []Migration
	for _, e := range entries {
		m := fileName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("migration file %s: name must be NNN_name.sql", e.Name())
		}
		b, err := files.ReadFile("sql/" + e.Name())
		if err != nil {
			return nil, err
		}
		v, _ := strconv.Atoi(m[1])
		out = append(out, Migration{Version: v, Name: m[2], SQL: strings.ReplaceAll(string(b), "{{schema}}", pgx.Identifier{schema}.Sanitize())})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	for i := 1; i < len(out); i++ {
		if out[i].Version == out[i-1].Version {
			return nil, fmt.Errorf("two migrations with version %03d", out[i].Version)
		}
	}
	return out, nil
}

// ValidIdentifier reports whether s is a plain lower-case SQL identifier
// (letters, digits and _, not starting with a digit, at most 63 bytes):
// the only names ip2a-ops puts into SQL text for its own objects.
func ValidIdentifier(s string) bool { return schemaName.MatchString(s) }

// ValidateSchema rejects schema names that are not plain lower-case identifiers.
func ValidateSchema(schema string) error {
	if !ValidIdentifier(schema) {
		return exitcode.Usagef("use a lower-case identifier such as ip2a_ops", "invalid schema name %q", schema)
	}
	return nil
}

// Latest is the newest embedded version.
func Latest() int {
	all, err := All(DefaultSchema)
	if err != nil || len(all) == 0 {
		return 0
	}
	return all[len(all)-1].Version
}

// Script returns the whole SQL that Up would run on an empty database, for
// `migrate --print`.
func Script(schema string) (string, error) {
	all, err := All(schema)
	if err != nil {
		return "", err
	}
	q := pgx.Identifier{schema}.Sanitize()
	var b strings.Builder
	fmt.Fprintf(&b, "BEGIN;\nSELECT pg_advisory_xact_lock(%d);\nCREATE SCHEMA IF NOT EXISTS %s;\n%s\n", lockKey, q, versionsTable(q))
	for _, m := range all {
		fmt.Fprintf(&b, "\n-- %03d_%s\n%s\nINSERT INTO %s.schema_migrations (version, name) VALUES (%d, '%s');\n", m.Version, m.Name, strings.TrimSpace(m.SQL), q, m.Version, m.Name)
	}
	b.WriteString("COMMIT;\n")
	river, err := riverScript(schema)
	if err != nil {
		return "", err
	}
	b.WriteString(river)
	return b.String(), nil
}

func versionsTable(q string) string {
	return fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s.schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now());", q)
}

// Result says what Up did.
type Result struct {
	Schema  string      `json:"schema"`
	From    int         `json:"from_version"`
	To      int         `json:"to_version"`
	Applied []Migration `json:"applied"`
	// RiverApplied lists the River migration versions applied (the task
	// queue's tables); RiverVersion is River's version afterwards.
	RiverApplied []int `json:"river_applied"`
	RiverVersion int   `json:"river_version"`
}

// Up applies every pending migration of ip2a-ops's own in one transaction,
// then River's, one transaction each (see river.go). It is idempotent and safe when several
// processes run it at once: they queue on a transaction-scoped advisory lock
// and the later ones find nothing to do.
func Up(ctx context.Context, pool *pgxpool.Pool, schema string) (Result, error) {
	all, err := All(schema)
	if err != nil {
		return Result{}, err
	}
	q := pgx.Identifier{schema}.Sanitize()
	res := Result{Schema: schema, Applied: []Migration{}}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", lockKey); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+q); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, versionsTable(q)); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM "+q+".schema_migrations").Scan(&res.From); err != nil {
			return err
		}
		res.To = res.From
		for _, m := range all {
			if m.Version <= res.From {
				continue
			}
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return fmt.Errorf("migration %03d_%s: %w", m.Version, m.Name, err)
			}
			if _, err := tx.Exec(ctx, "INSERT INTO "+q+".schema_migrations (version, name) VALUES ($1, $2)", m.Version, m.Name); err != nil {
				return err
			}
			res.Applied = append(res.Applied, m)
			res.To = m.Version
		}
		return nil
	})
	if err != nil {
		return Result{}, fmt.Errorf("migrate schema %s: %w", schema, err)
	}
	res.RiverApplied = []int{}
	for {
		var v int
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", lockKey); err != nil {
				return err
			}
			v, err = riverStep(ctx, tx, schema)
			return err
		})
		if err != nil {
			return Result{}, fmt.Errorf("migrate schema %s: %w", schema, err)
		}
		if v == 0 {
			break
		}
		res.RiverApplied = append(res.RiverApplied, v)
	}
	res.RiverVersion = RiverLatest()
	return res, nil
}

// ErrNotMigrated means the ops schema is missing or older than this binary.
var ErrNotMigrated = errors.New("ip2a-ops schema is not up to date")

// Current returns the applied version (0 when the schema does not exist).
func Current(ctx context.Context, pool *pgxpool.Pool, schema string) (int, error) {
	var exists bool
	if err := pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", pgx.Identifier{schema, "schema_migrations"}.Sanitize()).Scan(&exists); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	if !exists {
		return 0, nil
	}
	var v int
	if err := pool.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM "+pgx.Identifier{schema}.Sanitize()+".schema_migrations").Scan(&v); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return v, nil
}

// Check returns an error wrapping ErrNotMigrated when the schema is missing
// or behind this binary.
func Check(ctx context.Context, pool *pgxpool.Pool, schema string) error {
	v, err := Current(ctx, pool, schema)
	if err != nil {
		return err
	}
	if latest := Latest(); v < latest {
		what := "missing"
		if v > 0 {
			what = fmt.Sprintf("at version %d, this binary needs %d", v, latest)
		}
		return fmt.Errorf("schema %s is %s: %w", schema, what, ErrNotMigrated)
	}
	return nil
}
