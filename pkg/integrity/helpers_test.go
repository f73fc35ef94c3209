package integrity

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/internal/pgtest"
	"github.com/ip2a/ip2a-ops/pkg/cleanup"
	"github.com/ip2a/ip2a-ops/pkg/fixture"
	"github.com/ip2a/ip2a-ops/pkg/storage"
)

// testNow is the fixture's clock: a little before the test binary started,
// because the cleanup run on the template (see template) and the repairs
// write audit entries at the real time, and the checks run at the real time
// so those entries are not "in the future".
var testNow = time.Now().UTC().Add(-2 * time.Minute).Truncate(time.Second)

// templates holds, per schema generation, a database with the clean
// fixture that each test clones (CREATE DATABASE ... TEMPLATE), so a test
// costs a file copy instead of a data load.
var templates struct {
	mu    sync.Mutex
	names map[fixture.Generation]string
	files string // a local store holding every fixture attachment's file
	drops []func() error
}

func TestMain(m *testing.M) {
	code := m.Run()
	for _, drop := range templates.drops {
		_ = drop()
	}
	if templates.files != "" {
		_ = os.RemoveAll(templates.files)
	}
	pgtest.Stop()
	os.Exit(code)
}

// fixtureOptions is a small but complete data set.
func fixtureOptions(g fixture.Generation) fixture.Options {
	return fixture.Options{Generation: g, Seed: 3, Now: testNow, Members: 120, Students: 30, Attachments: 40, AuditRowsPerMonth: 20, SoftDeletedPercent: 10}
}

// template returns the name of generation g's clean template database.
// Clean means what production looks like when the daily cleanup runs: the
// generator plants expired tokens and locks for the cleanup job to remove,
// so cleanup runs once here.
func template(t *testing.T, g fixture.Generation) string {
	t.Helper()
	templates.mu.Lock()
	defer templates.mu.Unlock()
	if n := templates.names[g]; n != "" {
		return n
	}
	ctx := context.Background()
	u, drop, err := pgtest.CreateDatabase(ctx, pgtest.AdminURL(t))
	require.NoError(t, err)
	templates.drops = append(templates.drops, drop)
	pool, err := pgxpool.New(ctx, u)
	require.NoError(t, err)
	defer pool.Close()
	require.NoError(t, fixture.LoadSchema(ctx, pool, g))
	_, err = fixture.Generate(ctx, pool, fixtureOptions(g))
	require.NoError(t, err)
	_, err = cleanup.Run(ctx, cleanup.Options{Pool: pool})
	require.NoError(t, err)
	// The generator bills DECEASED members for the current month like
	// everyone else; the app's staff waive those bills, so the clean
	// fixture does too (dues_deceased_member looks for exactly this).
	_, err = pool.Exec(ctx, `UPDATE dues_payments p SET status = 'WAIVED' FROM members m
		WHERE m.id = p.member_id AND m.status = 'DECEASED' AND p.status IN ('PENDING', 'DUE')`)
	require.NoError(t, err)
	if templates.files == "" {
		dir, err := os.MkdirTemp("", "integrity-files-")
		require.NoError(t, err)
		templates.files = dir
	}
	st, err := storage.NewLocal(templates.files)
	require.NoError(t, err)
	rows, err := pool.Query(ctx, `SELECT file_path FROM file_attachments`)
	require.NoError(t, err)
	paths, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	// Planted attachments that are not about missing files point here.
	paths = append(paths, "planted/present.pdf")
	for _, p := range paths {
		_, err := st.Put(ctx, p, strings.NewReader("x"), storage.PutOptions{})
		require.NoError(t, err)
	}
	pu, _ := url.Parse(u)
	name := strings.TrimPrefix(pu.Path, "/")
	if templates.names == nil {
		templates.names = map[fixture.Generation]string{}
	}
	templates.names[g] = name
	return name
}

// cloneDB returns a pool on a fresh copy of generation g's clean fixture.
func cloneDB(t *testing.T, g fixture.Generation) (*pgxpool.Pool, string) {
	t.Helper()
	tmpl := template(t, g)
	ctx := context.Background()
	admin := pgtest.AdminURL(t)
	conn, err := pgx.Connect(ctx, admin)
	require.NoError(t, err)
	defer conn.Close(ctx)
	name := fmt.Sprintf("%s_c%d", tmpl, time.Now().UnixNano())
	_, err = conn.Exec(ctx, "CREATE DATABASE "+name+" TEMPLATE "+tmpl)
	require.NoError(t, err)
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), admin)
		if err != nil {
			return
		}
		defer c.Close(context.Background())
		_, _ = c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	u := pgtest.WithDatabase(t, admin, name)
	pool, err := pgxpool.New(ctx, u)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool, u
}

// fileStore is the local store holding every clean fixture file.
func fileStore(t *testing.T) storage.Store {
	t.Helper()
	st, err := storage.NewLocal(templates.files)
	require.NoError(t, err)
	return st
}

// exec runs statements in order on one connection (so SET commands hold
// for the statements after them).
func exec(t *testing.T, pool *pgxpool.Pool, stmts ...string) {
	t.Helper()
	ctx := t.Context()
	conn, err := pool.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	for _, s := range stmts {
		_, err := conn.Exec(ctx, s)
		require.NoError(t, err, s)
	}
	_, err = conn.Exec(ctx, "RESET ALL")
	require.NoError(t, err)
}

func byID(res Result) map[string]CheckResult {
	m := map[string]CheckResult{}
	for _, c := range res.Checks {
		m[c.ID] = c
	}
	return m
}

// findings lists "id: count [ids]" of every check with findings, for messages.
func findings(res Result) []string {
	var out []string
	for _, c := range res.Checks {
		if c.Status != StatusOK && c.Status != StatusSkipped {
			out = append(out, fmt.Sprintf("%s: %s %d %v %s", c.ID, c.Status, c.Count, c.SampleIDs, c.Reason))
		}
	}
	return out
}
