package audit_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/internal/fixturetest"
	"github.com/ip2a/ip2a-ops/internal/pgtest"
	"github.com/ip2a/ip2a-ops/pkg/audit"
	"github.com/ip2a/ip2a-ops/pkg/fixture"
	"github.com/ip2a/ip2a-ops/pkg/migrate"
	"github.com/ip2a/ip2a-ops/pkg/storage"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// testNow is the frozen clock: with 5 audit years ending in 2026-11, months
// 2021-12 .. 2023-10 are older than 3 years.
var testNow = time.Date(2026, 11, 15, 12, 0, 0, 0, time.UTC)

type env struct {
	url   string
	pool  *pgxpool.Pool
	store storage.Store
	dir   string
	cfg   audit.Config
}

// newEnv loads generation g with years of audit rows (perMonth each), the
// ops schema, and a local store.
func newEnv(t testing.TB, g fixture.Generation, years, perMonth int) *env {
	t.Helper()
	url := fixturetest.NewTestDB(t, g, fixture.Options{Now: testNow, AuditYears: years, AuditRowsPerMonth: perMonth,
		Members: 20, Users: 5, Students: 5, Tokens: 5, Attachments: 5, Organizations: 3})
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, url)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	_, err = migrate.Up(ctx, pool, migrate.DefaultSchema)
	require.NoError(t, err)
	dir := t.TempDir()
	st, err := storage.NewLocal(dir)
	require.NoError(t, err)
	e := &env{url: url, pool: pool, store: st, dir: dir}
	e.cfg = audit.Config{Pool: pool, Store: st, Now: func() time.Time { return testNow }, TempDir: t.TempDir()}
	return e
}

func (e *env) count(t testing.TB, sql string, args ...any) int64 {
	t.Helper()
	var n int64
	require.NoError(t, e.pool.QueryRow(context.Background(), sql, args...).Scan(&n))
	return n
}
