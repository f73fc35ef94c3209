// Package audit moves old audit_logs rows to verified archives in object
// storage and purges archives past retention, never losing or duplicating a
// row.
//
// One archive per whole calendar month of changed_at (UTC): a JSON Lines
// file (one row per line, every column) compressed with zstd, and a
// manifest (row count, id range, SHA-256 of the raw and compressed bytes,
// the SHA-256 of the previous month's manifest, a description of the
// columns). Keys are a function of the month alone, so a rerun overwrites
// rather than duplicates. Rows are deleted from audit_logs only after the
// stored archive has been read back and checked against its manifest and
// the database, in one transaction that checks the count and id sum of what
// it deleted, and only when the opt-in guard (GuardSQL) is installed: the
// guard keeps audit_logs immutable for everybody else.
//
// State lives in the ops schema (migration 003): audit_archive_months,
// audit_holds, audit_purges.
package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ip2a/ip2a-ops/pkg/migrate"
	"github.com/ip2a/ip2a-ops/pkg/storage"
)

// Table is the archived table.
const Table = "audit_logs"

// DefaultPrefix is where archives live in the store.
const DefaultPrefix = "audit-archive"

// Defaults of the retention policy (NLRA: 3 years online, 7 in all).
var (
	DefaultArchiveAfter = Age{Years: 3}
	DefaultRetain       = Age{Years: 7}
)

// Errors callers branch on (wrapped: use errors.Is).
var (
	// ErrMismatch: a stored archive, its manifest, the chain or the database
	// disagree. Nothing was deleted because of it.
	ErrMismatch = errors.New("archive does not match")
	// ErrNoAuditTable: the database has no audit_logs table.
	ErrNoAuditTable = errors.New("no audit_logs table")
)

// Config is what every operation needs. Zero values mean defaults.
type Config struct {
	// Pool is the app database (audit_logs and the ops schema).
	Pool *pgxpool.Pool
	// Store holds the archives; operations that need none accept nil.
	Store storage.Store
	// Schema of ip2a-ops's own tables (default ip2a_ops).
	Schema string
	// Prefix of every key in Store (default DefaultPrefix).
	Prefix string
	// Now is the clock (default time.Now).
	Now func() time.Time
	// TempDir holds the compressed archive while it is written and uploaded
	// (default os.TempDir()).
	TempDir string
	// Logger gets progress (default: discard).
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Schema == "" {
		c.Schema = "ip2a_ops"
	}
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	c.Prefix = strings.Trim(c.Prefix, "/")
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.TempDir == "" {
		c.TempDir = os.TempDir()
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

func (c Config) validate(needStore bool) error {
	if c.Pool == nil {
		return errors.New("Pool: required")
	}
	if needStore && c.Store == nil {
		return errors.New("Store: required")
	}
	if c.Schema != "" && !migrate.ValidIdentifier(c.Schema) {
		return fmt.Errorf("Schema: %q is not a lower-case identifier", c.Schema)
	}
	if c.Prefix != "" {
		if err := storage.ValidateKey(strings.Trim(c.Prefix, "/")); err != nil {
			return fmt.Errorf("Prefix: %w", err)
		}
	}
	return nil
}

// q returns the quoted ops schema for SQL text.
func (c Config) q() string { return pgx.Identifier{c.Schema}.Sanitize() }

// Keys ----------------------------------------------------------------------

// DataKey is where month's rows are stored: the same key on every run.
func DataKey(prefix string, m Month) string {
	return fmt.Sprintf("%s/%s/%04d/%s.jsonl.zst", strings.Trim(prefix, "/"), Table, m.Year, m)
}

// ManifestKey is where month's manifest is stored.
func ManifestKey(prefix string, m Month) string {
	return fmt.Sprintf("%s/%s/%04d/%s.manifest.json", strings.Trim(prefix, "/"), Table, m.Year, m)
}

// PurgeRecordKey is where the deletion record of a purged month is stored.
func PurgeRecordKey(prefix string, m Month) string {
	return fmt.Sprintf("%s/purged/%s/%s.json", strings.Trim(prefix, "/"), Table, m)
}

// Columns -------------------------------------------------------------------

// Column describes one column of the archive.
type Column struct {
	Name string `json:"name"`
	// Type is PostgreSQL's type ("character varying(100)", "jsonb").
	Type string `json:"type"`
	// JSON says how the value is written in each line.
	JSON string `json:"json"`
	// Nullable is false for NOT NULL columns.
	Nullable bool `json:"nullable"`
	kind     string
}

// tableColumns reads audit_logs' columns in order (resolved through the
// search_path, as every statement here is).
func tableColumns(ctx context.Context, db querier) ([]Column, error) {
	var exists bool
	if err := db.QueryRow(ctx, `SELECT to_regclass('audit_logs') IS NOT NULL`).Scan(&exists); err != nil {
		return nil, fmt.Errorf("find audit_logs: %w", err)
	}
	if !exists {
		return nil, ErrNoAuditTable
	}
	rows, err := db.Query(ctx, `
SELECT a.attname, format_type(a.atttypid, a.atttypmod), t.typname, NOT a.attnotnull
FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
WHERE a.attrelid = 'audit_logs'::regclass AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum`)
	if err != nil {
		return nil, fmt.Errorf("read audit_logs columns: %w", err)
	}
	cols, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Column, error) {
		var c Column
		err := r.Scan(&c.Name, &c.Type, &c.kind, &c.Nullable)
		c.JSON = jsonDescription(c)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("read audit_logs columns: %w", err)
	}
	if len(cols) == 0 || cols[0].Name != "id" {
		return nil, fmt.Errorf("audit_logs: first column is not id: %w", ErrNoAuditTable)
	}
	return cols, nil
}

func jsonDescription(c Column) string {
	var s string
	switch c.kind {
	case "int2", "int4", "int8":
		s = "number"
	case "jsonb", "json":
		s = "JSON value as stored (object, array, string, number, boolean or null)"
	case "timestamp":
		s = "string, RFC 3339 in UTC with the zone written as Z (YYYY-MM-DDTHH:MM:SS.ffffffZ); the column is a naive timestamp that the app fills in UTC by convention"
	case "timestamptz":
		s = "string, RFC 3339 converted to UTC (YYYY-MM-DDTHH:MM:SS.ffffffZ)"
	case "bool":
		s = "boolean"
	case "numeric", "float4", "float8":
		s = "number"
	default:
		s = "string"
	}
	if c.Nullable {
		s += "; null when NULL"
	}
	return s
}

// selectList is the SELECT list that makes row_to_json write each column
// as jsonDescription says.
func selectList(cols []Column) string {
	parts := make([]string, len(cols))
	for i, c := range cols {
		id := pgx.Identifier{c.Name}.Sanitize()
		switch c.kind {
		case "timestamp":
			parts[i] = fmt.Sprintf(`to_char(%s, 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS %s`, id, id)
		case "timestamptz":
			parts[i] = fmt.Sprintf(`to_char(%s AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS %s`, id, id)
		default:
			parts[i] = id
		}
	}
	return strings.Join(parts, ", ")
}

// querier is a pool, a connection or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}
