// Command reports measures ip2a-ops membership-report and dues-report, both
// formats at once, on 10,000 members with 10 years of monthly dues (1.2M
// dues_payments), side by side with the dues totals computed by one plain
// SQL statement on the same database: wall time and peak RSS of each run
// from /usr/bin/time -v (Debian package time).
//
//	go run ./bench/reports [-database-url URL] [-members 10000] [-months 120] [-runs 3]
//
// It creates a throwaway database on that server (dropped at the end), or
// starts a throwaway cluster when no URL is given.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ip2a/ip2a-ops/bench/internal/timev"
	"github.com/ip2a/ip2a-ops/pkg/fixture"
	"github.com/ip2a/ip2a-ops/pkg/pgcluster"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench reports:", err)
		os.Exit(1)
	}
}

// benchNow is the generator's frozen clock: the last dues period is its month.
var benchNow = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("reports", flag.ContinueOnError)
	dbURL := fs.String("database-url", os.Getenv("DATABASE_URL"), "server to benchmark on (a throwaway database is created there); empty starts a throwaway cluster")
	members := fs.Int("members", 10_000, "members")
	months := fs.Int("months", 120, "monthly dues periods, one payment per member each")
	auditRows := fs.Int("audit-rows", 500_000, "audit_logs rows over three years")
	runs := fs.Int("runs", 1, "runs of each command; the best wall time is shown, with its peak RSS")
	prebuilt := fs.String("bin", "", "an ip2a-ops binary to measure (default: go build of this checkout)")
	keep := fs.Bool("keep", false, "keep the bench database afterwards (with -database-url), to profile against it")
	reuse := fs.Bool("reuse", false, "-database-url is a database a -keep run loaded: measure it again without loading")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if _, err := os.Stat("/usr/bin/time"); err != nil {
		return fmt.Errorf("/usr/bin/time: %w (apt-get install -y time)", err)
	}
	work, err := os.MkdirTemp("", "bench-reports-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	bin, err := timev.Binary(ctx, *prebuilt, work)
	if err != nil {
		return err
	}
	dsn := *dbURL
	if !*reuse {
		scratch, err := pgcluster.NewScratch(ctx, *dbURL, "ip2a_bench")
		if err != nil {
			return err
		}
		if *keep {
			fmt.Fprintf(out, "keeping database %s (drop it yourself)\n", scratch.URL)
		} else {
			defer scratch.Close()
		}
		dsn = scratch.URL
	}
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer pool.Close()
	t0 := time.Now()
	if !*reuse {
		if err := fixture.LoadSchema(ctx, pool, fixture.Newer); err != nil {
			return err
		}
		if _, err := fixture.Generate(ctx, pool, fixture.Options{Generation: fixture.Newer, Seed: 1, Now: benchNow, Members: *members,
			DuesMonths: *months, AuditYears: 3, AuditRows: *auditRows}); err != nil {
			return err
		}
		if _, err := pool.Exec(ctx, "ANALYZE"); err != nil {
			return err
		}
	}
	count := func(table string) (n int64) {
		_ = pool.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n)
		return n
	}
	var version string
	if err := pool.QueryRow(ctx, "SELECT current_setting('server_version')").Scan(&version); err != nil {
		return err
	}
	fmt.Fprintf(out, "PostgreSQL %s, %d CPUs, %s/%s; %d members, %d employments, %d dues_payments, %d audit_logs (loaded in %s)\n",
		version, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, count("members"), count("member_employments"),
		count("dues_payments"), count("audit_logs"), time.Since(t0).Round(time.Millisecond))
	if err := exec.CommandContext(ctx, bin, "--database-url", dsn, "--log-level", "warn", "migrate").Run(); err != nil {
		return fmt.Errorf("ip2a-ops migrate: %w", err)
	}
	first := benchNow.AddDate(0, -(*months - 1), 0).Format("2006-01")
	last := benchNow.Format("2006-01")
	base := []string{bin, "--database-url", dsn, "--log-level", "warn"}
	type method struct {
		name string
		argv []string
	}
	methods := []method{
		{"membership-report, 1 year (xlsx+pdf)", append(base, "membership-report", "--as-of", "2026-10-31", "--from", "2025-11-01",
			"--format", "both", "--out", work)},
		{"dues-report, 1 month (xlsx+pdf)", append(base, "dues-report", "--period", last, "--format", "both", "--out", work)},
		{"dues-report, 10 years (xlsx+pdf)", append(base, "dues-report", "--from", first, "--to", last, "--format", "both", "--out", work)},
		{"psql: the 10-year dues totals alone", []string{"psql", dsn, "-Atqc", `SELECT sum(amount_due), sum(amount_paid),
			sum(amount_due - amount_paid) FILTER (WHERE status::text IN ('PENDING','DUE','PARTIAL','OVERDUE'))
			FROM dues_payments p JOIN dues_periods d ON d.id = p.period_id WHERE NOT p.is_deleted AND p.deleted_at IS NULL`}},
	}
	fmt.Fprintf(out, "%-40s %10s %12s\n", "command", "wall s", "peak RSS MB")
	ok := true
	for i, m := range methods {
		var best timev.Measurement
		for r := 0; r < *runs; r++ {
			got, err := timev.Run(ctx, m.argv)
			if err != nil {
				return fmt.Errorf("%s: %w", m.name, err)
			}
			if r == 0 || got.Wall < best.Wall {
				best = got
			}
		}
		fmt.Fprintf(out, "%-40s %10.2f %12.1f\n", m.name, best.Wall.Seconds(), float64(best.RSSKB)/1024)
		if i < 3 && (best.Wall > 5*time.Second || best.RSSKB > 200*1024) {
			ok = false
		}
	}
	verdict := "met"
	if !ok {
		verdict = "NOT met"
	}
	fmt.Fprintf(out, "goal: each report <= 5 s and <= 200 MB, Excel and PDF together: %s\n", verdict)
	return nil
}
