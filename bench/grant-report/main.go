// Command grant-report measures ip2a-ops grant-report on a grant with
// 100,000 enrollments and 200,000 expenses, side by side with a Python
// script writing the same sheets with openpyxl in write-only mode
// (grant_report_openpyxl.py, Debian's python3-openpyxl and python3-psycopg2)
// from the same database: wall time and peak RSS of each, from
// /usr/bin/time -v.
//
//	bench/grant-report/run.sh [-database-url URL] [-enrollments 100000] [-expenses 200000] [-runs 1]
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
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ip2a/ip2a-ops/bench/internal/timev"
	"github.com/ip2a/ip2a-ops/pkg/fixture"
	"github.com/ip2a/ip2a-ops/pkg/pgcluster"
)

const benchGrant = "G-BENCH-300K"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench grant-report:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("grant-report", flag.ContinueOnError)
	dbURL := fs.String("database-url", os.Getenv("DATABASE_URL"), "server to benchmark on (a throwaway database is created there); empty starts a throwaway cluster")
	enrollments := fs.Int("enrollments", 100_000, "grant enrollments of the bench grant")
	expenses := fs.Int("expenses", 200_000, "expenses of the bench grant")
	runs := fs.Int("runs", 1, "runs of each method; the best wall time is shown, with its peak RSS")
	prebuilt := fs.String("bin", "", "an ip2a-ops binary to measure (default: go build of this checkout)")
	keep := fs.Bool("keep", false, "keep the bench database afterwards (with -database-url), to profile against it")
	python := fs.String("python", "/usr/bin/python3", "Python with openpyxl and psycopg2")
	if err := fs.Parse(args); err != nil {
		return err
	}
	for _, bin := range []string{"/usr/bin/time", *python} {
		if _, err := os.Stat(bin); err != nil {
			return fmt.Errorf("%s: %w (apt-get install -y time python3-openpyxl python3-psycopg2)", bin, err)
		}
	}
	work, err := os.MkdirTemp("", "bench-grant-report-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	bin, err := timev.Binary(ctx, *prebuilt, work)
	if err != nil {
		return err
	}

	scratch, err := pgcluster.NewScratch(ctx, *dbURL, "ip2a_bench")
	if err != nil {
		return err
	}
	if *keep {
		fmt.Fprintf(out, "keeping database %s (drop it yourself)\n", scratch.URL)
	} else {
		defer scratch.Close()
	}
	dsn := scratch.URL
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer pool.Close()

	t0 := time.Now()
	if err := load(ctx, pool, *enrollments, *expenses); err != nil {
		return err
	}
	var version string
	var grantID int
	if err := pool.QueryRow(ctx, "SELECT current_setting('server_version'), (SELECT id FROM grants WHERE grant_number = $1)", benchGrant).Scan(&version, &grantID); err != nil {
		return err
	}
	fmt.Fprintf(out, "PostgreSQL %s, %d CPUs, %s/%s; grant %s: %d enrollments, %d expenses (loaded in %s)\n",
		version, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, benchGrant, *enrollments, *expenses, time.Since(t0).Round(time.Millisecond))
	if err := exec.CommandContext(ctx, bin, "--database-url", dsn, "--log-level", "warn", "migrate").Run(); err != nil {
		return fmt.Errorf("ip2a-ops migrate: %w", err)
	}

	goOut := filepath.Join(work, "ip2a-ops.xlsx")
	pyOut := filepath.Join(work, "openpyxl.xlsx")
	script, err := filepath.Abs("bench/grant-report/grant_report_openpyxl.py")
	if err != nil {
		return err
	}
	methods := []struct {
		name string
		out  string
		argv []string
	}{
		{"ip2a-ops grant-report", goOut, []string{bin, "--database-url", dsn, "--log-level", "warn", "grant-report", "--grant", benchGrant,
			"--from", "2026-01-01", "--to", "2026-03-31", "--out", goOut}},
		{"python3 openpyxl write-only", pyOut, []string{*python, script, dsn, strconv.Itoa(grantID), pyOut}},
	}
	results := make([]timev.Measurement, len(methods))
	for i, m := range methods {
		for r := 0; r < *runs; r++ {
			got, err := timev.Run(ctx, m.argv)
			if err != nil {
				return fmt.Errorf("%s: %w", m.name, err)
			}
			if r == 0 || got.Wall < results[i].Wall {
				results[i] = got
			}
		}
		st, err := os.Stat(m.out)
		if err != nil {
			return fmt.Errorf("%s wrote no workbook: %w", m.name, err)
		}
		results[i].Bytes = st.Size()
	}
	fmt.Fprintf(out, "%-30s %10s %12s %12s %14s\n", "method", "wall s", "peak RSS MB", "file MB", "rows/s")
	rows := float64(*enrollments + *expenses)
	for i, m := range methods {
		r := results[i]
		fmt.Fprintf(out, "%-30s %10.2f %12.1f %12.1f %14.0f\n", m.name, r.Wall.Seconds(), float64(r.RSSKB)/1024,
			float64(r.Bytes)/(1<<20), rows/r.Wall.Seconds())
	}
	speedup := results[1].Wall.Seconds() / results[0].Wall.Seconds()
	fmt.Fprintf(out, "ip2a-ops is %.1fx faster than openpyxl; goals: >= 5x, <= 5 s, <= 200 MB: %s\n", speedup,
		verdict(speedup >= 5 && results[0].Wall <= 5*time.Second && results[0].RSSKB <= 200*1024))
	return nil
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

// load fills the database: the generator's small sample (so the other
// grants and tables look real), then the bench grant built by the server
// with generate_series: its students and members, enrollments with every
// status and outcome, and expenses in and out of policy, 1% soft-deleted.
func load(ctx context.Context, pool *pgxpool.Pool, enrollments, expenses int) error {
	if err := fixture.LoadSchema(ctx, pool, fixture.Newer); err != nil {
		return err
	}
	if _, err := fixture.Generate(ctx, pool, fixture.Options{Generation: fixture.Newer, Seed: 1}); err != nil {
		return err
	}
	stmts := []string{
		`INSERT INTO grants (name, grant_number, funding_source, total_amount, start_date, end_date, allowable_categories,
			reporting_frequency, status, target_enrollment, target_completion, target_placement, is_active, created_at, updated_at, is_deleted)
		 VALUES ('Bench Grant', '` + benchGrant + `', 'Bench Funder', 90000000.00, '2024-01-01', '2027-12-31',
			'["tools", "tuition", "ppe", "stipends", "transportation"]', 'quarterly', 'active', $1, $1 * 8 / 10, $1 * 6 / 10, true, now(), now(), false)`,
		`INSERT INTO members (member_number, first_name, last_name, status, classification, created_at, updated_at, is_deleted)
		 SELECT 'BENCH-' || g, 'First' || g, 'Last' || (g % 997), 'ACTIVE', 'APPRENTICE_1ST_YEAR', now(), now(), false
		 FROM generate_series(1, $1) g`,
		`INSERT INTO students (member_id, student_number, status, application_date, enrollment_date, created_at, updated_at, is_deleted)
		 SELECT m.id, 'BS-' || lpad(substr(m.member_number, 7), 7, '0'), 'ENROLLED', '2024-01-01', DATE '2024-01-01' + (m.id % 900),
			now(), now(), false FROM members m WHERE m.member_number LIKE 'BENCH-%' AND $1 > 0`,
		`INSERT INTO grant_enrollments (grant_id, student_id, enrollment_date, status, completion_date, outcome, outcome_date,
			placement_employer, placement_date, placement_wage, placement_job_title, notes, created_at, updated_at, is_deleted, deleted_at)
		 SELECT gr.id, s.id, s.enrollment_date,
			(ARRAY['enrolled', 'active', 'completed', 'withdrawn', 'dropped'])[1 + s.id % 5]::grant_enrollment_status,
			CASE WHEN s.id % 5 = 2 THEN s.enrollment_date + 120 END,
			CASE s.id % 5 WHEN 2 THEN (ARRAY['obtained_employment', 'entered_apprenticeship', 'completed_program'])[1 + s.id % 3]::grant_outcome
				WHEN 3 THEN 'withdrawn'::grant_outcome END,
			CASE WHEN s.id % 5 = 2 THEN s.enrollment_date + 150 WHEN s.id % 5 = 3 THEN s.enrollment_date + 30 END,
			CASE WHEN s.id % 5 = 2 THEN 'Employer ' || (s.id % 50) END,
			CASE WHEN s.id % 5 = 2 THEN s.enrollment_date + 150 END,
			CASE WHEN s.id % 5 = 2 THEN '$' || (18 + s.id % 12) || '.50/hr' END,
			CASE WHEN s.id % 5 = 2 THEN 'Apprentice Electrician' END,
			CASE WHEN s.id % 10 = 0 THEN 'Note about student ' || s.id || ' — café 日本語' END,
			now(), now(), s.id % 100 = 0, CASE WHEN s.id % 100 = 0 THEN now() END
		 FROM students s, grants gr WHERE s.student_number LIKE 'BS-%' AND gr.grant_number = '` + benchGrant + `' AND $1 > 0`,
		`INSERT INTO expenses (grant_id, student_id, location_id, item, description, quantity, unit_price, total_price, tax, discount,
			category, vendor, payment_method, receipt_number, purchased_at, notes, created_at, updated_at, is_deleted, deleted_at)
		 SELECT gr.id, NULL, NULL, 'Item ' || (g % 200), 'Purchase ' || g || ' for the training program', 1 + g % 5,
			round(((g % 50000) + 100) / 100.0, 2), round(((g % 50000) + 100) / 100.0 * (1 + g % 5) * 1.1025, 2),
			round(((g % 50000) + 100) / 100.0 * (1 + g % 5) * 0.1025, 2), CASE WHEN g % 10 = 0 THEN 1.00 END,
			(ARRAY['tools', 'tuition', 'ppe', 'stipends', 'transportation', 'food', 'travel'])[1 + g % 7],
			'Vendor ' || (g % 300), (ARRAY['CARD', 'CHECK', 'ACH', 'GRANT'])[1 + g % 4]::payment_method, 'RCPT-' || g,
			DATE '2024-01-01' + (g % 1000), CASE WHEN g % 20 = 0 THEN 'Receipt note ' || g END,
			now(), now(), g % 100 = 0, CASE WHEN g % 100 = 0 THEN now() END
		 FROM generate_series(1, $1) g, grants gr WHERE gr.grant_number = '` + benchGrant + `'`,
		`ANALYZE`,
	}
	counts := []int{enrollments, enrollments, enrollments, enrollments, expenses, 0}
	for i, s := range stmts {
		var err error
		if strings.Contains(s, "$1") {
			_, err = pool.Exec(ctx, s, counts[i])
		} else {
			_, err = pool.Exec(ctx, s)
		}
		if err != nil {
			return fmt.Errorf("load bench grant (step %d): %w", i+1, err)
		}
	}
	return nil
}
