package cmd

import (
	"context"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rogpeppe/go-internal/testscript"
	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/internal/pgbouncertest"
	"github.com/ip2a/ip2a-ops/internal/pgtest"
	"github.com/ip2a/ip2a-ops/pkg/scheduler"
)

// readmePooledURL returns direct (a URL of a database on the test server)
// rewritten to go through b in the exact form README's proxy paragraph
// gives DATABASE_URL: its query string (default_query_exec_mode=exec) is
// read from README.
func readmePooledURL(t *testing.T, b *pgbouncertest.Bouncer, direct string) string {
	t.Helper()
	readme, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^DATABASE_URL='(postgres://[^']+)'\nDATABASE_DIRECT_URL='(postgres://[^']+)'$`).FindStringSubmatch(string(readme))
	require.NotNil(t, m, "README.md's proxy paragraph must show DATABASE_URL='...' and DATABASE_DIRECT_URL='...' on consecutive lines")
	_, query, ok := strings.Cut(m[1], "?")
	require.True(t, ok, "README's pooled URL carries its settings as a query string")
	pooled := b.URL(direct)
	if strings.Contains(pooled, "?") {
		return pooled + "&" + query
	}
	return pooled + "?" + query
}

// TestProxyScripts runs cmd/testdata/proxy/*.txtar through a real PgBouncer
// in pool_mode = transaction: what is particular to the proxy (doctor, the
// direct URL, the worker, the ledger's claims, the daemon's slots);
// TestEveryCommandOnBothGenerations runs every command through it too. Each
// script gets its own database:
// $DATABASE_URL reaches it through the proxy in README's exact form (its
// query string, default_query_exec_mode=exec), $DIRECT_URL directly (scripts
// set DATABASE_DIRECT_URL where README says), and $TARGET_URL is a second,
// empty database to restore into.
func TestProxyScripts(t *testing.T) {
	t.Parallel()
	admin := pgtest.AdminURL(t)
	b := pgbouncertest.Shared(t)
	testscript.Run(t, testscript.Params{
		Dir:           "testdata/proxy",
		UpdateScripts: os.Getenv("UPDATE_SCRIPTS") != "",
		Setup: func(env *testscript.Env) error {
			direct, drop, err := pgtest.CreateDatabase(context.Background(), admin)
			if err != nil {
				return err
			}
			env.Defer(func() { _ = drop() })
			target, dropTarget, err := pgtest.CreateDatabase(context.Background(), admin)
			if err != nil {
				return err
			}
			env.Defer(func() { _ = dropTarget() })
			env.Setenv("DATABASE_URL", readmePooledURL(t, b, direct))
			env.Setenv("DIRECT_URL", direct)
			env.Setenv("TARGET_URL", target)
			env.Setenv("IP2A_OPS_LOG_FORMAT", "json")
			for _, k := range []string{"INVOCATION_ID", "RAILWAY_ENVIRONMENT", "RAILWAY_PROJECT_ID", "RAILWAY_SERVICE_ID", "CI", "DATABASE_DIRECT_URL"} {
				env.Setenv(k, "")
			}
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"waitrun":  cmdWaitRun,
			"waitruns": cmdWaitRuns,
			"exitcode": cmdExitCode,
		},
	})
}

// cmdWaitRuns waits (up to 60 s) until the ledger holds at least N finished
// runs of the job: waitruns JOB N.
func cmdWaitRuns(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 || neg {
		ts.Fatalf("usage: waitruns JOB N")
	}
	want, err := strconv.Atoi(args[1])
	ts.Check(err)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, ts.Getenv("DATABASE_URL"))
	ts.Check(err)
	defer conn.Close(ctx)
	deadline := time.Now().Add(60 * time.Second)
	n := 0
	for time.Now().Before(deadline) {
		err := conn.QueryRow(ctx, `SELECT count(*) FROM ip2a_ops.runs WHERE job = $1 AND state <> 'running'`, args[0]).Scan(&n)
		if err == nil && n >= want {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	ts.Fatalf("%d finished %s runs after 60s, want %d", n, args[0], want)
}

// The daemon hands --direct-url (or DATABASE_DIRECT_URL) to the jobs it
// runs, as it does --database-url, so a scheduled backup uses it too.
func TestDaemonHandsTheDirectURLToJobs(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, flag, env, want string
	}{
		{"flag", "postgres://db:5432/ip2a", "", "postgres://db:5432/ip2a"},
		{"environment", "", "postgres://env:5432/ip2a", "postgres://env:5432/ip2a"},
		{"neither", "", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDeps(Env{Getenv: func(k string) string {
				if k == "DATABASE_DIRECT_URL" {
					return tc.env
				}
				return ""
			}})
			d.g.directURL = tc.flag
			get := d.childGetenv(scheduler.RunRequest{}, "postgres://pgbouncer:6432/ip2a")
			require.Equal(t, tc.want, get("DATABASE_DIRECT_URL"))
			require.Equal(t, "postgres://pgbouncer:6432/ip2a", get("DATABASE_URL"))
		})
	}
}
