package migrate_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/internal/pgtest"
	"github.com/ip2a/ip2a-ops/pkg/migrate"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// River's tables come with ip2a-ops's schema, in it and never in public;
// concurrent migrators all succeed and the next one finds nothing to do.
func TestUpCreatesRiverTablesInTheOpsSchema(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t, pgtest.NewDatabase(t))
	ctx := t.Context()

	results := make([]migrate.Result, 3)
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = migrate.Up(ctx, pool, "ops_x")
		}()
	}
	wg.Wait()
	applied := 0
	for i := range results {
		require.NoError(t, errs[i])
		applied += len(results[i].RiverApplied)
		require.Equal(t, migrate.RiverLatest(), results[i].RiverVersion)
	}
	require.Equal(t, migrate.RiverLatest(), applied, "each River version applied once across the migrators")

	var inOps, inPublic int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE schemaname = 'ops_x'), count(*) FILTER (WHERE schemaname = 'public')
		FROM pg_tables WHERE tablename LIKE 'river%'`).Scan(&inOps, &inPublic))
	require.GreaterOrEqual(t, inOps, 4, "river_job, river_leader, river_migration, river_queue, ...")
	require.Zero(t, inPublic)
	var publicTypes int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
		WHERE n.nspname = 'public' AND t.typname LIKE 'river%'`).Scan(&publicTypes))
	require.Zero(t, publicTypes)

	again, err := migrate.Up(ctx, pool, "ops_x")
	require.NoError(t, err)
	require.Empty(t, again.Applied)
	require.Empty(t, again.RiverApplied)
	missing, err := migrate.RiverMissing(ctx, pool, "ops_x")
	require.NoError(t, err)
	require.Empty(t, missing)
	missing, err = migrate.RiverMissing(ctx, pool, "ops_y")
	require.NoError(t, err)
	require.Len(t, missing, migrate.RiverLatest())
}

// The printed script, run as psql -f would run it, builds River's tables as
// Up does, and Up then finds nothing left to do.
func TestScriptCreatesRiverTables(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t, pgtest.NewDatabase(t))
	ctx := context.Background()
	sql, err := migrate.Script("ops_p")
	require.NoError(t, err)
	require.Contains(t, sql, `CREATE TABLE "ops_p".river_job`)
	require.NotContains(t, strings.ReplaceAll(sql, `"ops_p".`, ""), "public.")
	conn, err := pool.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	_, err = conn.Conn().PgConn().Exec(ctx, sql).ReadAll()
	require.NoError(t, err)
	missing, err := migrate.RiverMissing(ctx, pool, "ops_p")
	require.NoError(t, err)
	require.Empty(t, missing)
	res, err := migrate.Up(ctx, pool, "ops_p")
	require.NoError(t, err)
	require.Empty(t, res.Applied)
	require.Empty(t, res.RiverApplied)
}
