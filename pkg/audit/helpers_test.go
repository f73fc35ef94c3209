package audit_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/klauspost/compress/zstd"
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

// ids returns every id in audit_logs.
func (e *env) ids(t testing.TB) []int64 {
	t.Helper()
	rows, err := e.pool.Query(context.Background(), `SELECT id::bigint FROM audit_logs ORDER BY id`)
	require.NoError(t, err)
	out, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	require.NoError(t, err)
	return out
}

// archivedIDs reads the data objects of months recorded as deleted and
// returns the ids of their lines.
func archivedIDs(t testing.TB, e *env, st storage.Store) []int64 {
	t.Helper()
	ctx := context.Background()
	rows, err := e.pool.Query(ctx, `SELECT data_key FROM ip2a_ops.audit_archive_months WHERE state = 'deleted'`)
	require.NoError(t, err)
	deleted, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	objs, err := st.List(ctx, audit.DefaultPrefix+"/")
	require.NoError(t, err)
	var out []int64
	for _, o := range objs {
		if !strings.HasSuffix(o.Key, ".jsonl.zst") || !slices.Contains(deleted, o.Key) {
			continue
		}
		rc, err := st.Get(ctx, o.Key)
		require.NoError(t, err)
		zr, err := zstd.NewReader(rc)
		require.NoError(t, err)
		sc := bufio.NewScanner(zr)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			var r struct {
				ID int64 `json:"id"`
			}
			require.NoError(t, json.Unmarshal(sc.Bytes(), &r))
			out = append(out, r.ID)
		}
		require.NoError(t, sc.Err())
		zr.Close()
		rc.Close()
	}
	return out
}

// requireConserved asserts that the rows in the table plus the rows in the
// archives of deleted months are exactly original, each once. (Months
// archived but not yet deleted are in both places by design.)
func requireConserved(t testing.TB, e *env, st storage.Store, original []int64) {
	t.Helper()
	all := append(e.ids(t), archivedIDs(t, e, st)...)
	slices.Sort(all)
	require.Equal(t, len(original), len(all), "table + archives hold %d rows, originally %d", len(all), len(original))
	require.Equal(t, original, all)
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

// renumberIDs gives every audit row a new id, step apart: in the order of
// the old ids (so ids still follow time), or shuffled, in an order
// unrelated to changed_at (a fixed permutation) as imported or backfilled
// rows have them. Rows are stored in the new id order, as an import
// assigning ids would leave them. A step of 2 leaves a free id between
// any two, so a row can later be written inside a month's id range.
func renumberIDs(t testing.TB, e *env, shuffled bool, step int) {
	t.Helper()
	order := "id"
	if shuffled {
		order = "hashint4(id), id"
	}
	// One connection: the temp table is the session's.
	conn, err := e.pool.Acquire(context.Background())
	require.NoError(t, err)
	defer conn.Release()
	for _, q := range []string{
		`CREATE TEMP TABLE audit_src AS SELECT * FROM audit_logs`,
		`TRUNCATE audit_logs`,
		fmt.Sprintf(`INSERT INTO audit_logs SELECT %d * row_number() OVER (ORDER BY %s), table_name, record_id, action,
  old_values, new_values, changed_fields, changed_by, changed_at, ip_address, user_agent, notes FROM audit_src ORDER BY 1`, step, order),
		`SELECT setval('audit_logs_id_seq', (SELECT max(id) FROM audit_logs))`,
		`DROP TABLE audit_src`,
		`ANALYZE audit_logs`,
	} {
		_, err := conn.Exec(context.Background(), q)
		require.NoError(t, err, q)
	}
}
