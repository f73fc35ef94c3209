package metrics

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Database is the health of the database the app lives in.
type Database struct {
	Name      string `json:"name"`
	SizeBytes int64  `json:"size_bytes"`
	// Tables are the largest tables (every schema but the system ones) by
	// total size, indexes and TOAST included.
	Tables []Table `json:"largest_tables"`
	// DeadTuples over every user table, and LiveTuples for the ratio.
	DeadTuples int64 `json:"dead_tuples"`
	LiveTuples int64 `json:"live_tuples"`
	// Connections to this database by state ("active", "idle", "idle in
	// transaction", ...), and the server's max_connections.
	Connections    map[string]int64 `json:"connections"`
	MaxConnections int64            `json:"max_connections"`
	// OldestTransactionSeconds is the age of the oldest open transaction
	// on this database (0 when none but ours): a long one blocks vacuum.
	OldestTransactionSeconds float64 `json:"oldest_transaction_seconds"`
	// XIDAge is age(datfrozenxid): how close the database is to a forced
	// anti-wraparound vacuum (autovacuum_freeze_max_age, 200M by default).
	XIDAge int64 `json:"xid_age"`
}

// Table is one table's size and tuple counts.
type Table struct {
	Schema     string `json:"schema"`
	Name       string `json:"name"`
	SizeBytes  int64  `json:"size_bytes"`
	LiveTuples int64  `json:"live_tuples"`
	DeadTuples int64  `json:"dead_tuples"`
}

func collectDatabase(ctx context.Context, o Options) (Database, error) {
	var db Database
	err := o.Pool.QueryRow(ctx, `SELECT current_database(), pg_database_size(current_database()),
		(SELECT age(datfrozenxid) FROM pg_database WHERE datname = current_database()),
		current_setting('max_connections')::bigint,
		coalesce((SELECT extract(epoch FROM max(now() - xact_start)) FROM pg_stat_activity
			WHERE datname = current_database() AND xact_start IS NOT NULL AND pid <> pg_backend_pid()), 0)::float8,
		coalesce((SELECT sum(n_dead_tup) FROM pg_stat_user_tables), 0)::bigint,
		coalesce((SELECT sum(n_live_tup) FROM pg_stat_user_tables), 0)::bigint`).
		Scan(&db.Name, &db.SizeBytes, &db.XIDAge, &db.MaxConnections, &db.OldestTransactionSeconds, &db.DeadTuples, &db.LiveTuples)
	if err != nil {
		return db, fmt.Errorf("size and transactions: %w", err)
	}
	rows, err := o.Pool.Query(ctx, `SELECT coalesce(state, 'unknown'), count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND backend_type = 'client backend' GROUP BY 1`)
	if err != nil {
		return db, fmt.Errorf("connections: %w", err)
	}
	db.Connections = map[string]int64{}
	for rows.Next() {
		var state string
		var n int64
		if err := rows.Scan(&state, &n); err != nil {
			rows.Close()
			return db, fmt.Errorf("connections: %w", err)
		}
		db.Connections[state] = n
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return db, fmt.Errorf("connections: %w", err)
	}
	rows, err = o.Pool.Query(ctx, `SELECT schemaname, relname, pg_total_relation_size(relid), n_live_tup, n_dead_tup
		FROM pg_stat_user_tables ORDER BY pg_total_relation_size(relid) DESC, schemaname, relname LIMIT $1`, o.LargestTables)
	if err != nil {
		return db, fmt.Errorf("largest tables: %w", err)
	}
	db.Tables, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Table, error) {
		var t Table
		err := r.Scan(&t.Schema, &t.Name, &t.SizeBytes, &t.LiveTuples, &t.DeadTuples)
		return t, err
	})
	if err != nil {
		return db, fmt.Errorf("largest tables: %w", err)
	}
	return db, nil
}
