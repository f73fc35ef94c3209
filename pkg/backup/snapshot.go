package backup

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ip2a/ip2a-ops/pkg/dbconn"
)

// auditTriggerNames are the newer schema's audit_logs immutability triggers.
var auditTriggerNames = []string{"audit_logs_prevent_delete", "audit_logs_prevent_update"}

// userTablesSQL lists the tables pg_dump dumps data of: ordinary tables
// (partition leaves included, partitioned parents excluded so rows are not
// counted twice) outside the system schemas and not owned by an extension.
const userTablesSQL = `
SELECT n.nspname, c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2`

// countTables returns the exact row count of every user table, as seen by
// q's snapshot.
func countTables(ctx context.Context, q pgx.Tx) ([]TableCount, error) {
	rows, err := q.Query(ctx, userTablesSQL)
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	tables, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (TableCount, error) {
		var t TableCount
		return t, r.Scan(&t.Schema, &t.Name)
	})
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	for i := range tables {
		sql := "SELECT count(*) FROM " + pgx.Identifier{tables[i].Schema, tables[i].Name}.Sanitize()
		if err := q.QueryRow(ctx, sql).Scan(&tables[i].Rows); err != nil {
			return nil, fmt.Errorf("count rows of %s: %w", tables[i].QualifiedName(), err)
		}
	}
	return tables, nil
}

// auditTriggers returns which of the audit immutability triggers exist.
func auditTriggers(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}) ([]string, error) {
	rows, err := q.Query(ctx, `SELECT t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
		WHERE c.relname = 'audit_logs' AND t.tgname = ANY($1) AND NOT t.tgisinternal ORDER BY 1`, auditTriggerNames)
	if err != nil {
		return nil, fmt.Errorf("look for audit triggers: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("look for audit triggers: %w", err)
	}
	if names == nil {
		names = []string{}
	}
	return names, nil
}

// snapshot is an open REPEATABLE READ transaction whose snapshot is exported
// for pg_dump --snapshot. It must stay open until pg_dump has imported it
// (done at pg_dump's start; held until pg_dump exits to be simple and safe).
type snapshot struct {
	conn *pgx.Conn
	tx   pgx.Tx
	id   string
	info serverInfo
}

func openSnapshot(ctx context.Context, dbURL string, lockWait time.Duration) (*snapshot, error) {
	conn, err := dbconn.ConnectWork(ctx, dbURL)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	s := &snapshot{conn: conn}
	if s.info, err = readServerInfo(ctx, conn); err != nil {
		s.close(ctx)
		return nil, err
	}
	s.tx, err = conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		s.close(ctx)
		return nil, fmt.Errorf("begin snapshot: %w", err)
	}
	// Counting takes ACCESS SHARE locks like pg_dump: wait no longer than it.
	if _, err := s.tx.Exec(ctx, fmt.Sprintf("SET LOCAL lock_timeout = %d", lockWait.Milliseconds())); err != nil {
		s.close(ctx)
		return nil, fmt.Errorf("begin snapshot: %w", err)
	}
	if err := s.tx.QueryRow(ctx, "SELECT pg_export_snapshot()").Scan(&s.id); err != nil {
		s.close(ctx)
		return nil, fmt.Errorf("export snapshot: %w", err)
	}
	return s, nil
}

func (s *snapshot) close(ctx context.Context) {
	if s.tx != nil {
		_ = s.tx.Rollback(context.WithoutCancel(ctx))
	}
	_ = s.conn.Close(context.WithoutCancel(ctx))
}
