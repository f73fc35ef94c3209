package doctor

import (
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/internal/fixturetest"
	"github.com/ip2a/ip2a-ops/internal/pgbouncertest"
	"github.com/ip2a/ip2a-ops/internal/pgtest"
	"github.com/ip2a/ip2a-ops/pkg/audit"
	"github.com/ip2a/ip2a-ops/pkg/fixture"
	"github.com/ip2a/ip2a-ops/pkg/jobs"
	"github.com/ip2a/ip2a-ops/pkg/migrate"
	"github.com/ip2a/ip2a-ops/pkg/pgcluster"
	"github.com/ip2a/ip2a-ops/pkg/scheduler"
	"github.com/ip2a/ip2a-ops/pkg/storage"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func pgDump(t *testing.T) string {
	t.Helper()
	dir, err := pgcluster.FindBinDir(15)
	require.NoError(t, err)
	return PgDumpIn(dir)
}

func statuses(r Result) map[string]string {
	out := map[string]string{}
	for _, c := range r.Checks {
		out[c.Name] = c.Status
	}
	return out
}

func find(t *testing.T, r Result, name string) Check {
	t.Helper()
	for _, c := range r.Checks {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no check %q in %+v", name, r.Checks)
	return Check{}
}

const goodCrontab = `# every job at its own time, UTC
15 2 * * * ip2a-ops backup
45 3 * * * ip2a-ops integrity-check
0 4 * * * ip2a-ops cleanup
30 5 1 * * ip2a-ops audit-archive
`

// healthy is a newer database with the ops schema, the guard, local storage.
func healthy(t *testing.T) (*pgxpool.Pool, string, Options) {
	t.Helper()
	u := fixturetest.NewTestDB(t, fixture.Newer, fixture.Options{Members: 20, Users: 5, AuditRowsPerMonth: 5})
	pool := pgtest.Pool(t, u)
	_, err := migrate.Up(t.Context(), pool, migrate.DefaultSchema)
	require.NoError(t, err)
	_, err = audit.InstallGuard(t.Context(), audit.Config{Pool: pool})
	require.NoError(t, err)
	store, err := storage.NewLocal(t.TempDir())
	require.NoError(t, err)
	return pool, u, Options{Pool: pool, PgDump: pgDump(t), Store: store, Crontab: []byte(goodCrontab), CrontabName: "crontab.example", Resolve: firstWord, Needs: registryNeeds()}
}

func TestHealthyDeploymentHasNoProblems(t *testing.T) {
	t.Parallel()
	_, _, o := healthy(t)
	res, err := Run(t.Context(), o)
	require.NoError(t, err)
	for _, c := range res.Checks {
		require.Equal(t, OK, c.Status, "%s: %s", c.Name, c.Detail)
	}
	require.Zero(t, res.Problems)
	require.Equal(t, map[string]string{
		"connection pooling": OK,
		"pg_dump version":    OK,
		"privileges: read every table (backup, reports)": OK,
		"privileges: cleanup":                            OK,
		"privileges: integrity-check":                    OK,
		"privileges: audit-archive":                      OK,
		"restore drills: scratch database":               OK,
		"ip2a-ops schema version":                        OK,
		"audit_logs immutability trigger":                OK,
		"ip2a-ops audit guard":                           OK,
		"storage reachable and writable":                 OK,
		"crontab fit for Railway":                        OK,
	}, statuses(res))
	require.Contains(t, find(t, res, "pg_dump version").Detail, "is version 15, the server 15")
}

// Through PgBouncer in transaction mode doctor names the proxy, wants
// README's exec mode, and a direct URL for backup that bypasses it.
func TestDoctorBehindATransactionPool(t *testing.T) {
	t.Parallel()
	_, u, o := healthy(t)
	b := pgbouncertest.Start(t, pgbouncertest.Options{})
	readme := pgbouncertest.WithParam(b.URL(u), "default_query_exec_mode", "exec")
	for _, tc := range []struct {
		name         string
		url, direct  string
		pooling      string
		directStatus string
		detail, fix  string
	}{
		{"no direct URL", readme, "", OK, Problem, "no direct URL: backup, worker would run through the transaction pool", "DATABASE_DIRECT_URL"},
		{"direct URL to the database", readme, u, OK, OK, "backup, worker use it", ""},
		{"direct URL through the proxy too", readme, b.URL(u), OK, Problem, "goes through a transaction-pooling proxy too", "point --direct-url"},
		{"simple protocol", pgbouncertest.WithParam(b.URL(u), "default_query_exec_mode", "simple_protocol"), u, OK, OK, "backup, worker use it", ""},
		{"describe_exec prepares", pgbouncertest.WithParam(b.URL(u), "default_query_exec_mode", "describe_exec"), u, Problem, OK, "backup, worker use it", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pool := pgtest.Pool(t, tc.url)
			o := o
			o.Pool, o.DirectURL = pool, tc.direct
			res, err := Run(t.Context(), o)
			if tc.pooling == Problem && err != nil {
				// The proxy may fail doctor's own queries in this mode.
				t.Log(err)
				require.ErrorContains(t, err, "default_query_exec_mode=exec")
				return
			}
			require.NoError(t, err)
			p := find(t, res, "connection pooling")
			require.Equal(t, tc.pooling, p.Status, p.Detail)
			require.Contains(t, p.Detail, "goes through a transaction-pooling proxy")
			if tc.pooling == Problem {
				require.Contains(t, p.Fix, "default_query_exec_mode=exec")
			}
			d := find(t, res, "direct connection")
			require.Equal(t, tc.directStatus, d.Status, d.Detail)
			require.Contains(t, d.Detail, tc.detail)
			require.Contains(t, d.Fix, tc.fix)
			// Everything else is as healthy as directly.
			for _, c := range res.Checks {
				if c.Name != "connection pooling" && c.Name != "direct connection" {
					require.Equal(t, OK, c.Status, "%s: %s", c.Name, c.Detail)
				}
			}
		})
	}
}

func TestDoctorFindsWhatIsBroken(t *testing.T) {
	t.Parallel()
	t.Run("pg_dump missing or too old", func(t *testing.T) {
		t.Parallel()
		_, _, o := healthy(t)
		o.PgDump = filepath.Join(t.TempDir(), "pg_dump")
		res, err := Run(t.Context(), o)
		require.NoError(t, err)
		c := find(t, res, "pg_dump version")
		require.Equal(t, Problem, c.Status)
		require.Contains(t, c.Fix, "postgresql-client-15")

		old := filepath.Join(t.TempDir(), "pg_dump")
		require.NoError(t, os.WriteFile(old, []byte("#!/bin/sh\necho 'pg_dump (PostgreSQL) 12.19'\n"), 0o755))
		o.PgDump = old
		res, err = Run(t.Context(), o)
		require.NoError(t, err)
		c = find(t, res, "pg_dump version")
		require.Equal(t, Problem, c.Status)
		require.Contains(t, c.Detail, "is version 12, the server 15")
		require.Equal(t, 1, res.Problems)
	})
	t.Run("older schema without trigger, guard or ops schema", func(t *testing.T) {
		t.Parallel()
		u := fixturetest.NewTestDB(t, fixture.Older, fixture.Options{Members: 20, Users: 5, AuditRowsPerMonth: 5})
		res, err := Run(t.Context(), Options{Pool: pgtest.Pool(t, u), PgDump: pgDump(t), Needs: registryNeeds()})
		require.NoError(t, err)
		require.Equal(t, Problem, find(t, res, "audit_logs immutability trigger").Status)
		require.Equal(t, Problem, find(t, res, "ip2a-ops audit guard").Status)
		require.Contains(t, find(t, res, "ip2a-ops audit guard").Fix, "install-guard")
		ops := find(t, res, "ip2a-ops schema version")
		require.Equal(t, Problem, ops.Status)
		require.Contains(t, ops.Fix, "ip2a-ops migrate")
		require.Equal(t, Skipped, find(t, res, "storage reachable and writable").Status)
		require.Equal(t, Skipped, find(t, res, "crontab fit for Railway").Status)
		require.Equal(t, 3, res.Problems)
	})
	t.Run("storage not writable", func(t *testing.T) {
		t.Parallel()
		_, _, o := healthy(t)
		dir := t.TempDir()
		store, err := storage.NewLocal(dir)
		require.NoError(t, err)
		require.NoError(t, os.RemoveAll(dir))
		require.NoError(t, os.WriteFile(dir, []byte("a file where the directory was"), 0o600))
		o.Store = store
		res, err := Run(t.Context(), o)
		require.NoError(t, err)
		c := find(t, res, "storage reachable and writable")
		require.Equal(t, Problem, c.Status)
		require.Contains(t, c.Detail, "write probe")
		require.Equal(t, 1, res.Problems)
	})
	t.Run("a role without privileges", func(t *testing.T) {
		t.Parallel()
		pool, u, o := healthy(t)
		var b [4]byte
		_, _ = rand.Read(b[:])
		role := "doctor_" + hex.EncodeToString(b[:])
		_, err := pool.Exec(t.Context(), `CREATE ROLE `+role+` LOGIN PASSWORD 'pw'`)
		require.NoError(t, err)
		t.Cleanup(func() {
			admin := pgtest.Pool(t, pgtest.AdminURL(t))
			_, _ = pool.Exec(t.Context(), `DROP OWNED BY `+role)
			_, _ = admin.Exec(t.Context(), `DROP ROLE `+role)
		})
		_, err = pool.Exec(t.Context(), `GRANT USAGE ON SCHEMA ip2a_ops TO `+role+`; GRANT SELECT ON members, audit_logs TO `+role+`; GRANT DELETE ON email_tokens TO `+role)
		require.NoError(t, err)
		pu, err := url.Parse(u)
		require.NoError(t, err)
		pu.User = url.UserPassword(role, "pw")
		limited := pgtest.Pool(t, pu.String())
		o.Pool = limited
		res, err := Run(t.Context(), o)
		require.NoError(t, err)
		read := find(t, res, "privileges: read every table (backup, reports)")
		require.Equal(t, Problem, read.Status)
		require.NotContains(t, read.Detail, "members,")
		require.Contains(t, read.Detail, "cannot SELECT alembic_version")
		require.Contains(t, read.Fix, `GRANT SELECT ON ALL TABLES IN SCHEMA "public" TO "`+role+`"`)
		cl := find(t, res, "privileges: cleanup")
		require.Equal(t, Problem, cl.Status)
		require.Equal(t, role+" lacks DELETE ON refresh_tokens, UPDATE ON users, INSERT ON audit_logs", cl.Detail)
		aa := find(t, res, "privileges: audit-archive")
		require.Equal(t, role+" lacks DELETE ON audit_logs", aa.Detail)
		sc := find(t, res, "restore drills: scratch database")
		require.Equal(t, Problem, sc.Status)
		require.Contains(t, sc.Fix, "CREATEDB")

		// A scratch database it can create tables in fixes the drills.
		o.ScratchURL = pgtest.NewDatabase(t)
		res, err = Run(t.Context(), o)
		require.NoError(t, err)
		require.Equal(t, OK, find(t, res, "restore drills: scratch database").Status)
		o.ScratchURL = "postgres://nobody:topsecret@127.0.0.1:1/none"
		res, err = Run(t.Context(), o)
		require.NoError(t, err)
		sc = find(t, res, "restore drills: scratch database")
		require.Equal(t, Problem, sc.Status)
		require.NotContains(t, sc.Detail, "topsecret")
	})
}

func TestCrontabFitness(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		crontab string
		status  string
		detail  []string
	}{
		{name: "staggered UTC", crontab: goodCrontab, status: OK, detail: []string{"4 entries, all UTC, at least 5m0s apart"}},
		{name: "every minute", crontab: "* * * * * ip2a-ops cleanup\n", status: Problem, detail: []string{`line 1: "* * * * *" runs every 1m0s; Railway needs at least 5m0s`}},
		{name: "every five minutes is fine, and meets jobs without a warning", crontab: "*/5 * * * * ip2a-ops metrics --format prometheus\n0 2 * * * ip2a-ops backup\n", status: OK},
		{name: "two runs close in an hour", crontab: "0,3 * * * * ip2a-ops cleanup\n", status: Problem, detail: []string{"runs every 3m0s"}},
		{name: "a zone", crontab: "CRON_TZ=America/Los_Angeles\n0 2 * * * ip2a-ops backup\n", status: Problem, detail: []string{"line 2: runs in America/Los_Angeles; Railway reads schedules in UTC"}},
		{name: "daemon-only @every", crontab: "@every 1h ip2a-ops cleanup\n", status: Problem, detail: []string{"@every 1h is daemon-only"}},
		{name: "descriptor", crontab: "@daily ip2a-ops cleanup\n", status: Warning, detail: []string{`write @daily as "0 0 * * *"`}},
		{name: "three jobs at 02:00", crontab: "0 2 * * * ip2a-ops backup\n0 2 * * * ip2a-ops cleanup\n0 2 * * * ip2a-ops integrity-check\n", status: Warning,
			detail: []string{"lines 1, 2, 3 start at the same minute"}},
		{name: "unparseable", crontab: "61 2 * * * ip2a-ops backup\n0 3 * * * rm -rf /\n", status: Problem, detail: []string{"line 1:", "line 2:"}},
	}
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := checkCrontab(Options{Crontab: []byte(tt.crontab), Resolve: firstWord, MinInterval: 5 * time.Minute, Now: now})
			require.Equal(t, tt.status, c.Status, c.Detail)
			for _, d := range tt.detail {
				require.Contains(t, c.Detail, d)
			}
			if tt.status != OK {
				require.NotEmpty(t, c.Fix)
			}
		})
	}
}

// firstWord resolves a crontab line to its first word (the command line's
// real resolver lives in cmd, which imports this package).
func firstWord(args []string) (string, scheduler.CatchUp, error) {
	return args[0], scheduler.CatchUp{}, nil
}

// registryNeeds are the privileges the job registry lists, as cmd passes them.
func registryNeeds() []Need {
	var out []Need
	for _, j := range jobs.All() {
		for _, p := range j.NeededPrivileges() {
			out = append(out, Need{Job: j.Kind(), Table: p.Table, Privilege: p.Privilege})
		}
	}
	return out
}
