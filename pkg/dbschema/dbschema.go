// Package dbschema reads which of the app's tables, columns and enum labels
// exist, so jobs can work on both generations of the IP2A schema and skip,
// with a reason, what an older database lacks.
package dbschema

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Querier is satisfied by *pgx.Conn, *pgxpool.Pool and pgx.Tx.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Info is a snapshot of one schema's tables, columns and enum types.
type Info struct {
	Schema  string
	columns map[string]map[string]string // table -> column -> data type
	enums   map[string][]string          // type name -> labels in order
}

// Inspect reads schema (usually "public") in two queries.
func Inspect(ctx context.Context, q Querier, schema string) (*Info, error) {
	in := &Info{Schema: schema, columns: map[string]map[string]string{}, enums: map[string][]string{}}
	rows, err := q.Query(ctx, `SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod)
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
		WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm')`, schema)
	if err != nil {
		return nil, fmt.Errorf("inspect schema %s: %w", schema, err)
	}
	for rows.Next() {
		var t, c, typ string
		if err := rows.Scan(&t, &c, &typ); err != nil {
			rows.Close()
			return nil, fmt.Errorf("inspect schema %s: %w", schema, err)
		}
		if in.columns[t] == nil {
			in.columns[t] = map[string]string{}
		}
		in.columns[t][c] = typ
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("inspect schema %s: %w", schema, err)
	}
	rows, err = q.Query(ctx, `SELECT t.typname, e.enumlabel FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid
		JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = $1 ORDER BY t.typname, e.enumsortorder`, schema)
	if err != nil {
		return nil, fmt.Errorf("inspect enums: %w", err)
	}
	for rows.Next() {
		var t, l string
		if err := rows.Scan(&t, &l); err != nil {
			rows.Close()
			return nil, fmt.Errorf("inspect enums: %w", err)
		}
		in.enums[t] = append(in.enums[t], l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("inspect enums: %w", err)
	}
	return in, nil
}

// HasTable reports whether the table exists.
func (in *Info) HasTable(table string) bool { return in.columns[table] != nil }

// HasColumns reports whether the table exists with every column named.
func (in *Info) HasColumns(table string, cols ...string) bool {
	tc := in.columns[table]
	if tc == nil {
		return false
	}
	for _, c := range cols {
		if _, ok := tc[c]; !ok {
			return false
		}
	}
	return true
}

// Missing returns a reason naming what of table/cols is absent, or "".
func (in *Info) Missing(table string, cols ...string) string {
	tc := in.columns[table]
	if tc == nil {
		return "table " + table + " does not exist"
	}
	var miss []string
	for _, c := range cols {
		if _, ok := tc[c]; !ok {
			miss = append(miss, table+"."+c)
		}
	}
	if len(miss) > 0 {
		return "column " + strings.Join(miss, ", ") + " does not exist"
	}
	return ""
}

// ColumnType returns the column's SQL type ("" when missing).
func (in *Info) ColumnType(table, col string) string { return in.columns[table][col] }

// EnumLabels returns an enum type's labels in order (nil when missing).
func (in *Info) EnumLabels(typ string) []string { return in.enums[typ] }

// Label returns the stored label of enum typ equal to want ignoring case,
// e.g. Label("token_type_enum", "password_reset") = "PASSWORD_RESET". The
// app stores Python enum names, whose case varies by type, so code must
// never assume one.
func (in *Info) Label(typ, want string) (string, bool) {
	for _, l := range in.enums[typ] {
		if strings.EqualFold(l, want) {
			return l, true
		}
	}
	return "", false
}
