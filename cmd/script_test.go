package cmd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/ip2a/ip2a-ops/internal/pgbouncertest"
	"github.com/ip2a/ip2a-ops/internal/pgtest"
	"github.com/ip2a/ip2a-ops/pkg/fixture"
)

type mainWithCleanup struct{ m *testing.M }

func (w mainWithCleanup) Run() int {
	code := w.m.Run()
	pgbouncertest.StopShared()
	pgtest.Stop()
	return code
}

func TestMain(m *testing.M) {
	testscript.Main(mainWithCleanup{m}, map[string]func(){
		"ip2a-ops": func() {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			code := Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
			stop()
			os.Exit(code)
		},
		"ip2a-fixture": func() { os.Exit(fixtureMain(os.Args[1:])) },
		"sql":          func() { os.Exit(sqlMain(os.Args[1:])) },
	})
}

// TestScripts runs cmd/testdata/script/*.txtar. Each script gets its own
// empty database in $DATABASE_URL.
func TestScripts(t *testing.T) {
	t.Parallel()
	admin := pgtest.AdminURL(t)
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script",
		RequireExplicitExec: false,
		UpdateScripts:       os.Getenv("UPDATE_SCRIPTS") != "",
		Setup: func(env *testscript.Env) error {
			url, drop, err := pgtest.CreateDatabase(context.Background(), admin)
			if err != nil {
				return err
			}
			env.Defer(func() { _ = drop() })
			env.Setenv("DATABASE_URL", url)
			env.Setenv("IP2A_OPS_LOG_FORMAT", "json")
			// Keep the child processes from thinking cron or Railway started them.
			for _, k := range []string{"INVOCATION_ID", "RAILWAY_ENVIRONMENT", "RAILWAY_PROJECT_ID", "RAILWAY_SERVICE_ID", "CI"} {
				env.Setenv(k, "")
			}
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"waitrun":  cmdWaitRun,
			"waitsql":  cmdWaitSQL,
			"newdb":    cmdNewDB(admin),
			"exitcode": cmdExitCode,
		},
	})
}

// fixtureMain loads the IP2A schema and sample data into $DATABASE_URL:
// ip2a-fixture newer|older [seed].
func fixtureMain(args []string) int {
	if len(args) < 1 {
		fmt.Fprintln(os.Stderr, "usage: ip2a-fixture newer|older [seed] [audit-years]")
		return 2
	}
	opts := fixture.Options{Generation: fixture.Generation(args[0]), Seed: 1, Now: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)}
	if len(args) > 1 {
		opts.Seed, _ = strconv.ParseInt(args[1], 10, 64)
	}
	if len(args) > 2 {
		opts.AuditYears, _ = strconv.Atoi(args[2])
	}
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer pool.Close()
	if err := fixture.LoadSchema(ctx, pool, opts.Generation); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if _, err := fixture.Generate(ctx, pool, opts); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// sqlMain runs one SQL statement against $DATABASE_URL and prints each
// result row as tab-separated text: sql 'SELECT ...'.
func sqlMain(args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: sql 'STATEMENT'")
		return 2
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, args[0], pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		parts := make([]string, len(vals))
		for i, v := range vals {
			if v == nil {
				parts[i] = "NULL"
			} else {
				parts[i] = fmt.Sprint(v)
			}
		}
		fmt.Println(strings.Join(parts, "\t"))
	}
	if err := rows.Err(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// cmdExitCode runs a program and asserts its exact exit code:
// exitcode N PROGRAM ARGS... Its stdout and stderr are then available to
// the stdout and stderr assertions.
func cmdExitCode(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 2 || neg {
		ts.Fatalf("usage: exitcode N PROGRAM [ARGS...]")
	}
	want, err := strconv.Atoi(args[0])
	ts.Check(err)
	got := 0
	if err := ts.Exec(args[1], args[2:]...); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			ts.Fatalf("run %s: %v", args[1], err)
		}
		got = ee.ExitCode()
	}
	if got != want {
		ts.Fatalf("%s exited %d, want %d", args[1], got, want)
	}
}

// cmdNewDB creates another empty database, dropped when the script ends,
// and puts its URL in the named variable: newdb VAR.
func cmdNewDB(admin string) func(ts *testscript.TestScript, neg bool, args []string) {
	return func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 1 || neg {
			ts.Fatalf("usage: newdb VAR")
		}
		url, drop, err := pgtest.CreateDatabase(context.Background(), admin)
		ts.Check(err)
		ts.Defer(func() { _ = drop() })
		ts.Setenv(args[0], url)
	}
}

// cmdWaitRun waits (up to 30 s) until the ledger shows a running run of the
// job: waitrun JOB.
func cmdWaitRun(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: waitrun JOB")
	}
	waitQuery(ts, "a running "+args[0]+" run", `SELECT count(*) > 0 FROM ip2a_ops.runs WHERE job = $1 AND state = 'running'`, args[0])
}

// cmdWaitSQL waits (up to 30 s) until a query returns true, so a script
// waits for what it needs rather than for a time: waitsql 'SELECT ...'.
func cmdWaitSQL(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 || neg {
		ts.Fatalf("usage: waitsql 'SELECT boolean'")
	}
	waitQuery(ts, args[0], args[0])
}

func waitQuery(ts *testscript.TestScript, what, query string, args ...any) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, ts.Getenv("DATABASE_URL"))
	ts.Check(err)
	defer conn.Close(ctx)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		var ok bool
		if err := conn.QueryRow(ctx, query, args...).Scan(&ok); err == nil && ok {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	ts.Fatalf("timed out after 30s waiting for %s", what)
}
