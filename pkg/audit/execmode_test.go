package audit_test

import (
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/internal/pgbouncertest"
	"github.com/ip2a/ip2a-ops/pkg/audit"
	"github.com/ip2a/ip2a-ops/pkg/fixture"
)

// Through a transaction-pooling PgBouncer, in every pgx exec mode that
// works there, with a session time zone that is not UTC: both layouts are
// archived, verified and counted without the guard, then deleted with it,
// every row once.
func TestRunThroughTransactionPoolInEveryExecMode(t *testing.T) {
	t.Parallel()
	b := pgbouncertest.Start(t, pgbouncertest.Options{})
	for _, mode := range []string{"exec", "simple_protocol", "cache_describe"} {
		for _, shuffled := range []bool{false, true} {
			name := mode + map[bool]string{false: "/ids follow time", true: "/ids shuffled"}[shuffled]
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				e := newEnv(t, fixture.Newer, 5, 30)
				ctx := t.Context()
				if shuffled {
					renumberIDs(t, e, true, 1)
				}
				_, err := e.pool.Exec(ctx, `DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET timezone = %L', current_database(), 'America/New_York'); END $$`)
				require.NoError(t, err)
				original := e.ids(t)
				eligible := e.count(t, `SELECT count(*) FROM audit_logs WHERE changed_at < '2023-11-01'`)
				pool, err := pgxpool.New(ctx, pgbouncertest.WithParam(b.URL(e.url), "default_query_exec_mode", mode))
				require.NoError(t, err)
				t.Cleanup(pool.Close)
				var zone string
				require.NoError(t, pool.QueryRow(ctx, `SELECT current_setting('TimeZone')`).Scan(&zone))
				require.Equal(t, "America/New_York", zone)
				cfg := e.cfg
				cfg.Pool = pool

				res, err := audit.Run(ctx, audit.RunOptions{Config: cfg, KeepOnline: true})
				require.NoError(t, err)
				require.Equal(t, eligible, res.RowsArchived)
				require.Equal(t, 23, res.MonthsVerified)
				_, err = audit.InstallGuard(ctx, e.cfg)
				require.NoError(t, err)
				res, err = audit.Run(ctx, audit.RunOptions{Config: cfg, DeleteBatch: 100})
				require.NoError(t, err)
				require.Equal(t, eligible, res.RowsDeleted)
				require.Zero(t, e.count(t, `SELECT count(*) FROM audit_logs WHERE changed_at < '2023-11-01'`))
				requireConserved(t, e, e.store, original)
				_, err = audit.Verify(ctx, audit.VerifyOptions{Config: cfg})
				require.NoError(t, err)
			})
		}
	}
}
