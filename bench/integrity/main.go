// Command integrity measures the integrity-check catalogue at the original
// checker's documented scale (10K members, 250K employments, 150K
// attachments, plus 2M audit rows): the whole catalogue without file checks,
// then with the file check against a local directory of one file per
// attachment, side by side with the original's approach (one query per
// member) for one of its checks, on the same data and server.
//
//	go run ./bench/integrity -database-url postgres://postgres@127.0.0.1:5432/postgres
//
// It creates a throwaway database on that server (dropped at the end), or
// starts a throwaway cluster when no URL is given. Targets: at most 5 s
// without files, 30 s with files.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ip2a/ip2a-ops/pkg/fixture"
	"github.com/ip2a/ip2a-ops/pkg/integrity"
	"github.com/ip2a/ip2a-ops/pkg/pgcluster"
	"github.com/ip2a/ip2a-ops/pkg/storage"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench integrity:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("integrity", flag.ContinueOnError)
	dbURL := fs.String("database-url", os.Getenv("DATABASE_URL"), "server to benchmark on (a throwaway database is created there); empty starts a throwaway cluster")
	members := fs.Int("members", 10_000, "members")
	employments := fs.Int("employments", 250_000, "member_employments rows")
	attachments := fs.Int("attachments", 150_000, "file_attachments rows (and files)")
	auditRows := fs.Int("audit-rows", 2_000_000, "audit_logs rows")
	workers := fs.Int("workers", 4, "checks at once")
	fileConc := fs.Int("file-concurrency", 16, "file lookups at once")
	if err := fs.Parse(args); err != nil {
		return err
	}
	scratch, err := pgcluster.NewScratch(ctx, *dbURL, "ip2a_bench")
	if err != nil {
		return err
	}
	defer scratch.Close()
	cfg, err := pgxpool.ParseConfig(scratch.URL)
	if err != nil {
		return err
	}
	cfg.MaxConns = 8
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer pool.Close()

	if err := fixture.LoadSchema(ctx, pool, fixture.Newer); err != nil {
		return err
	}
	opts := fixture.Options{Generation: fixture.Newer, Seed: 1, Members: *members, Students: 400,
		EmploymentsPerMember: float64(*employments) / float64(*members), Organizations: 300,
		Attachments: *attachments, AuditYears: 3, AuditRows: *auditRows, Users: 200, Tokens: 2000}
	st, err := fixture.Generate(ctx, pool, opts)
	if err != nil {
		return err
	}
	if _, err := pool.Exec(ctx, "VACUUM ANALYZE"); err != nil {
		return err
	}
	var version string
	if err := pool.QueryRow(ctx, "SHOW server_version").Scan(&version); err != nil {
		return err
	}
	fmt.Fprintf(out, "PostgreSQL %s, %d CPUs; generated %d rows in %s (members %d, member_employments %d, file_attachments %d, audit_logs %d)\n",
		version, runtime.NumCPU(), st.TotalRows(), st.Elapsed.Round(time.Millisecond),
		st.Rows["members"], st.Rows["member_employments"], st.Rows["file_attachments"], st.Rows["audit_logs"])

	dir, err := os.MkdirTemp("", "ip2a-bench-files-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	t0 := time.Now()
	nfiles, err := writeFiles(ctx, pool, dir)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "wrote %d attachment files to %s in %s\n\n", nfiles, dir, time.Since(t0).Round(time.Millisecond))
	files, err := storage.NewLocal(dir)
	if err != nil {
		return err
	}

	fmt.Fprintf(out, "%-55s %10s %10s %9s\n", "method", "checks", "findings", "seconds")
	for _, m := range []struct {
		name  string
		files storage.Store
	}{
		{"integrity-check, whole catalogue, no file checks", nil},
		{"integrity-check, whole catalogue + 150K local files", files},
	} {
		res, err := integrity.Run(ctx, integrity.Options{Pool: pool, Workers: *workers, Files: m.files, FileConcurrency: *fileConc, Now: fixture.DefaultNow})
		if err != nil {
			return err
		}
		var findings int64
		for _, c := range res.Checks {
			findings += c.Count
			if c.Status == integrity.StatusError {
				return fmt.Errorf("%s: %s", c.ID, c.Reason)
			}
		}
		fmt.Fprintf(out, "%-55s %10d %10d %9.2f\n", m.name, res.Totals.Checks-res.Totals.Skipped, findings, res.Seconds)
		slowest := res.Checks[0]
		for _, c := range res.Checks {
			if c.Seconds > slowest.Seconds {
				slowest = c
			}
		}
		fmt.Fprintf(out, "    slowest check: %s %.2fs\n", slowest.ID, slowest.Seconds)
		for _, c := range res.Checks {
			if c.Count > 0 {
				fmt.Fprintf(out, "    findings: %s %d\n", c.ID, c.Count)
			}
		}
	}

	// The original's approach: a query per member (one of its 22 checks).
	t0 = time.Now()
	rows, err := pool.Query(ctx, `SELECT id FROM members`)
	if err != nil {
		return err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return err
	}
	several := 0
	for _, id := range ids {
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM member_employments WHERE member_id = $1 AND is_current`, id).Scan(&n); err != nil {
			return err
		}
		if n > 1 {
			several++
		}
	}
	fmt.Fprintf(out, "%-55s %10d %10d %9.2f\n", "original approach: one query per member, 1 check", 1, several, time.Since(t0).Seconds())
	return nil
}

// writeFiles creates one small file per attachment path.
func writeFiles(ctx context.Context, pool *pgxpool.Pool, dir string) (int, error) {
	rows, err := pool.Query(ctx, `SELECT DISTINCT file_path FROM file_attachments WHERE btrim(file_path) <> ''`)
	if err != nil {
		return 0, err
	}
	paths, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return 0, err
	}
	ch := make(chan string)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for range 8 {
		wg.Go(func() {
			for p := range ch {
				full := filepath.Join(dir, filepath.FromSlash(p))
				err := os.MkdirAll(filepath.Dir(full), 0o755)
				if err == nil {
					err = os.WriteFile(full, []byte("x"), 0o644)
				}
				if err != nil {
					mu.Lock()
					first = err
					mu.Unlock()
				}
			}
		})
	}
	for _, p := range paths {
		ch <- p
	}
	close(ch)
	wg.Wait()
	return len(paths), first
}
