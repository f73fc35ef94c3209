package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/ip2a/ip2a-ops/pkg/exitcode"
	"github.com/ip2a/ip2a-ops/pkg/fixture"
	"github.com/ip2a/ip2a-ops/pkg/pgcluster"
)

type demoOptions struct {
	keep       bool
	generation string
	seed       int64
}

// demoEnv is what every demo step gets: the throwaway database, a scratch
// directory for artifacts, and run, which runs ip2a-ops itself and shows
// the command line first, so the demo teaches the real commands.
type demoEnv struct {
	URL string
	Dir string
	Now time.Time
	run func(args ...string) int
	// output is run that also returns what the command printed on stdout.
	output func(args ...string) (string, int)
	Pool   *pgxpool.Pool
}

// demoStep is one part of the demo; an error stops it.
type demoStep struct {
	title string
	fn    func(ctx context.Context, d *deps, env *demoEnv) error
}

// demoSteps lists what the demo runs, in order. Jobs add their step here.
func demoSteps() []demoStep {
	return []demoStep{
		{"create ip2a-ops's schema (the run ledger)", demoMigrate},
		{"cleanup: expired tokens and stale account locks", demoCleanup},
		{"integrity-check: findings, a repair dry run, the applied repair, the comparison", demoIntegrity},
		{"backup: an encrypted backup, verified by a restore drill, then restored", demoBackup},
		{"grant-report: Excel workbooks for grant officers and funders", demoGrantReport},
		{"membership-report and dues-report: the officers' monthly reports", demoReports},
		{"audit-archive: old audit months to verified archives, guarded delete, legal hold, search", demoAudit},
		{"daemon: two schedulers, each slot claimed and run once", demoDaemon},
		{"tasks: a grant report and a backup queued, then run by a worker", demoTasks},
		{"the run ledger", demoStatus},
	}
}

func newDemoCmd(d *deps) *cobra.Command {
	var o demoOptions
	c := &cobra.Command{
		Use:   "demo",
		Short: "Run every job against a throwaway database with sample IP2A data",
		Long: `Start a throwaway PostgreSQL cluster in a temporary directory on a free
loopback port (from the machine's PostgreSQL binaries, found on PATH or
under /usr/lib/postgresql/*/bin), load the IP2A schema and deterministic
sample data, run every job as you would run it yourself (each command is
printed before it runs), and remove everything on exit.

--keep leaves the cluster running and prints its URL, so you can try
commands against it: export DATABASE_URL=<url>.

Exit codes: 0 every step ran, 1 a step failed, 2 no PostgreSQL binaries
(install the Debian package postgresql), 130 interrupted.

Environment: IP2A_OPS_PG_BIN names the directory of initdb and pg_ctl when
they are elsewhere.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error { return runDemo(c.Context(), d, o) },
	}
	c.Flags().BoolVar(&o.keep, "keep", false, "leave the database running and print its URL")
	c.Flags().StringVar(&o.generation, "schema-generation", "newer", "which IP2A schema to load: newer (45 tables, audit trigger) or older (37 tables)")
	c.Flags().Int64Var(&o.seed, "seed", 1, "seed of the sample-data generator")
	return c
}

func runDemo(ctx context.Context, d *deps, o demoOptions) error {
	gen := fixture.Generation(o.generation)
	if err := gen.Validate(); err != nil {
		return exitcode.Usagef("--schema-generation newer|older", "%v", err)
	}
	binDir := d.getenv("IP2A_OPS_PG_BIN")
	if binDir != "" {
		if _, err := os.Stat(filepath.Join(binDir, "initdb")); err != nil {
			return exitcode.UsageError(fmt.Errorf("IP2A_OPS_PG_BIN=%s: %w", binDir, pgcluster.ErrNoBinaries), "apt-get install postgresql   (then run ip2a-ops demo again)")
		}
	} else if _, err := pgcluster.FindBinDir(0); err != nil {
		return exitcode.UsageError(err, "apt-get install postgresql   (then run ip2a-ops demo again)")
	}
	out := d.stdout
	fmt.Fprintln(out, "==> starting a throwaway PostgreSQL cluster")
	cl, err := pgcluster.Start(ctx, pgcluster.Options{BinDir: binDir})
	if err != nil {
		return fmt.Errorf("start demo cluster: %w", err)
	}
	keep := false
	defer func() {
		if !keep {
			_ = cl.Stop()
		}
	}()
	admin, err := pgxpool.New(ctx, cl.URL("postgres"))
	if err != nil {
		return err
	}
	_, err = admin.Exec(ctx, "CREATE DATABASE ip2a")
	admin.Close()
	if err != nil {
		return fmt.Errorf("create demo database: %w", err)
	}
	url := cl.URL("ip2a")
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return err
	}
	defer pool.Close()
	now := d.now().UTC()
	fmt.Fprintf(out, "==> loading the %s IP2A schema and sample data (seed %d)\n", gen, o.seed)
	if err := fixture.LoadSchema(ctx, pool, gen); err != nil {
		return fmt.Errorf("load demo schema: %w", err)
	}
	st, err := fixture.Generate(ctx, pool, fixture.Options{Generation: gen, Seed: o.seed, Now: now, AuditYears: 8, AuditRowsPerMonth: 400})
	if err != nil {
		return fmt.Errorf("generate demo data: %w", err)
	}
	fmt.Fprintf(out, "    %d rows in %d tables in %s\n", st.TotalRows(), len(st.Rows), st.Elapsed.Round(time.Millisecond))
	dir := filepath.Join(cl.Root(), "demo")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	env := &demoEnv{URL: url, Dir: dir, Now: now, Pool: pool}
	env.output = func(args ...string) (string, int) {
		fmt.Fprintf(out, "\n$ ip2a-ops %s\n", strings.Join(args, " "))
		full := append([]string{"--database-url", url, "--log-level", "warn"}, args...)
		var got strings.Builder
		code := Run(ctx, full, Env{Stdin: d.stdin, Stdout: io.MultiWriter(out, &got), Stderr: d.stderr, Getenv: demoGetenv(d.getenv), Now: d.now})
		return got.String(), code
	}
	env.run = func(args ...string) int {
		_, code := env.output(args...)
		return code
	}
	for i, s := range demoSteps() {
		if err := ctx.Err(); err != nil {
			return err
		}
		fmt.Fprintf(out, "\n==> %d. %s\n", i+1, s.title)
		if err := s.fn(ctx, d, env); err != nil {
			return fmt.Errorf("demo step %q: %w", s.title, err)
		}
	}
	if o.keep {
		keep = true
		fmt.Fprintf(out, "\n==> the demo database is still running:\n    export DATABASE_URL='%s'\n    stop it with: pg_ctl -D %s stop   (as the postgres user when root); files in %s\n", url, cl.DataDir, cl.Root())
		return nil
	}
	fmt.Fprintln(out, "\n==> done; removing the throwaway cluster")
	return nil
}

// demoGetenv hides the caller's database and storage settings from the demo's
// commands so the demo never touches a real database or bucket.
func demoGetenv(getenv func(string) string) func(string) string {
	return func(k string) string {
		if k == "DATABASE_URL" || strings.HasPrefix(k, "PG") || strings.HasPrefix(k, "S3_") || strings.HasPrefix(k, "IP2A_OPS_") {
			return ""
		}
		return getenv(k)
	}
}

// expect turns a step's exit code into an error unless it is one of want.
func expect(code int, want ...int) error {
	for _, w := range want {
		if code == w {
			return nil
		}
	}
	return errors.New("exit code " + fmt.Sprint(code))
}

func demoMigrate(ctx context.Context, d *deps, env *demoEnv) error {
	return expect(env.run("migrate"), 0)
}

func demoCleanup(ctx context.Context, d *deps, env *demoEnv) error {
	if err := expect(env.run("cleanup", "--dry-run"), 0); err != nil {
		return err
	}
	return expect(env.run("cleanup"), 0)
}

func demoStatus(ctx context.Context, d *deps, env *demoEnv) error {
	if err := expect(env.run("jobs", "history", "--limit", "10"), 0); err != nil {
		return err
	}
	return expect(env.run("jobs", "status"), 0)
}
