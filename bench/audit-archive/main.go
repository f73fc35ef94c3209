// Command audit-archive benchmarks `ip2a-ops audit-archive run` (export,
// zstd, upload to local storage, read-back verification, guarded delete) on
// a generated audit_logs of 2 million rows with about 1.2 million eligible,
// against the bare pair a DBA would type: COPY (SELECT ...) TO a file and a
// plain DELETE of the same rows, on a copy of the table without triggers.
// It measures peak memory of the ip2a-ops process (/usr/bin/time -v) and the
// latency of an insert into audit_logs every 50 ms while each side runs.
//
//	go run ./bench/audit-archive [-database-url postgres://...] [-audit-rows 2000000]
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ip2a/ip2a-ops/pkg/audit"
	"github.com/ip2a/ip2a-ops/pkg/fixture"
	"github.com/ip2a/ip2a-ops/pkg/migrate"
	"github.com/ip2a/ip2a-ops/pkg/pgcluster"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench audit-archive:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("audit-archive", flag.ContinueOnError)
	dbURL := fs.String("database-url", os.Getenv("DATABASE_URL"), "server to benchmark on (a throwaway database is created there); empty starts a throwaway cluster")
	rows := fs.Int("audit-rows", 2_000_000, "audit_logs rows to load")
	logFile := fs.String("log", "", "write ip2a-ops's info log (per-month progress) to this file")
	years := fs.Int("audit-years", 8, "years the rows span (8 with --archive-after 3y: ~61% eligible)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if _, err := os.Stat("/usr/bin/time"); err != nil {
		return fmt.Errorf("/usr/bin/time is missing: apt-get install time")
	}
	work, err := os.MkdirTemp("", "bench-audit-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	bin := filepath.Join(work, "ip2a-ops")
	if b, err := exec.Command("go", "build", "-o", bin, "github.com/ip2a/ip2a-ops").CombinedOutput(); err != nil {
		return fmt.Errorf("build: %v\n%s", err, b)
	}
	scratch, err := pgcluster.NewScratch(ctx, *dbURL, "bench_audit")
	if err != nil {
		return err
	}
	defer scratch.Close()
	dbURLs := scratch.URL
	pool, err := pgxpool.New(ctx, dbURLs)
	if err != nil {
		return err
	}
	defer pool.Close()
	now := time.Now().UTC()
	if err := fixture.LoadSchema(ctx, pool, fixture.Newer); err != nil {
		return err
	}
	fmt.Fprintf(out, "loading %d audit rows over %d years...\n", *rows, *years)
	if _, err := fixture.Generate(ctx, pool, fixture.Options{Generation: fixture.Newer, Seed: 46, Now: now, AuditYears: *years, AuditRows: *rows}); err != nil {
		return err
	}
	cut := audit.LastEligible(now, audit.DefaultArchiveAfter).End().Format("2006-01-02")
	// The bare pair works on a copy without triggers (LIKE copies none).
	for _, q := range []string{
		`CREATE TABLE audit_logs_bare (LIKE audit_logs INCLUDING ALL)`,
		`INSERT INTO audit_logs_bare SELECT * FROM audit_logs`,
		`VACUUM ANALYZE audit_logs`, `VACUUM ANALYZE audit_logs_bare`, `CHECKPOINT`,
	} {
		if _, err := pool.Exec(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	if _, err := migrate.Up(ctx, pool, migrate.DefaultSchema); err != nil {
		return err
	}
	if _, err := audit.InstallGuard(ctx, audit.Config{Pool: pool}); err != nil {
		return err
	}
	var total, eligible int64
	var version string
	_ = pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE changed_at < $1::timestamp) FROM audit_logs`, cut).Scan(&total, &eligible)
	_ = pool.QueryRow(ctx, `SHOW server_version`).Scan(&version)
	fmt.Fprintf(out, "PostgreSQL %s, %d CPUs; audit_logs %d rows, %d eligible (changed_at < %s)\n", version, runtime.NumCPU(), total, eligible, cut)

	// Bare: COPY (SELECT ...) TO a file (client side, like psql \copy) then DELETE.
	bareProbe := startInserts(ctx, dbURLs)
	t0 := time.Now()
	f, err := os.Create(filepath.Join(work, "bare.copy"))
	if err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, dbURLs)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	if _, err := conn.PgConn().CopyTo(ctx, w, `COPY (SELECT * FROM audit_logs_bare WHERE changed_at < '`+cut+`') TO STDOUT`); err != nil {
		return fmt.Errorf("bare copy: %w", err)
	}
	_ = w.Flush()
	_ = f.Sync()
	_ = f.Close()
	copyDur := time.Since(t0)
	tag, err := conn.Exec(ctx, `DELETE FROM audit_logs_bare WHERE changed_at < '`+cut+`'`)
	if err != nil {
		return fmt.Errorf("bare delete: %w", err)
	}
	bareDur := time.Since(t0)
	conn.Close(ctx)
	bareLat := bareProbe()
	st, _ := os.Stat(filepath.Join(work, "bare.copy"))
	if _, err := pool.Exec(ctx, `CHECKPOINT`); err != nil {
		return err
	}

	// ip2a-ops, under /usr/bin/time -v.
	store := filepath.Join(work, "store")
	probe := startInserts(ctx, dbURLs)
	t1 := time.Now()
	level := "warn"
	if *logFile != "" {
		level = "info"
	}
	cmd := exec.Command("/usr/bin/time", "-v", bin, "--database-url", dbURLs, "--log-level", level, "audit-archive", "run",
		"--storage", "file://"+store, "--temp-dir", work)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	opsDur := time.Since(t1)
	lat := probe()
	if *logFile != "" {
		_ = os.WriteFile(*logFile, stderr.Bytes(), 0o644)
	}
	if err != nil {
		return fmt.Errorf("ip2a-ops: %v\n%s%s", err, stdout, stderr.String())
	}
	var left int64
	_ = pool.QueryRow(ctx, `SELECT count(*) FROM audit_logs WHERE changed_at < $1::timestamp`, cut).Scan(&left)
	rss := regexp.MustCompile(`Maximum resident set size \(kbytes\): (\d+)`).FindStringSubmatch(stderr.String())
	var rssMB float64
	if rss != nil {
		kb, _ := strconv.ParseFloat(rss[1], 64)
		rssMB = kb / 1024
	}
	var archived int64
	_ = filepath.Walk(store, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			archived += fi.Size()
		}
		return nil
	})

	fmt.Fprintf(out, "\n%-34s %10s %9s %12s %14s %14s\n", "method", "rows", "seconds", "rows/s", "insert max", "insert p99")
	fmt.Fprintf(out, "%-34s %10d %9.2f %12.0f %14s %14s   (copy %.2fs, %d MB file; delete %.2fs)\n", "bare COPY TO file + DELETE", tag.RowsAffected(), bareDur.Seconds(),
		float64(tag.RowsAffected())/bareDur.Seconds(), bareLat.max, bareLat.p99, copyDur.Seconds(), st.Size()>>20, (bareDur - copyDur).Seconds())
	fmt.Fprintf(out, "%-34s %10d %9.2f %12.0f %14s %14s   (%d MB archived, zstd)\n", "ip2a-ops audit-archive run", eligible-left, opsDur.Seconds(),
		float64(eligible-left)/opsDur.Seconds(), lat.max, lat.p99, archived>>20)
	fmt.Fprintf(out, "\nratio %.2fx (goal <= 2.0x); ip2a-ops peak RSS %.1f MB (goal < 100 MB); inserts during the run: %d, max wait %s (goal < 1 s)\n",
		opsDur.Seconds()/bareDur.Seconds(), rssMB, lat.n, lat.max)
	if left != 0 {
		return fmt.Errorf("%d eligible rows left after the run", left)
	}
	return nil
}

type latency struct {
	n        int
	max, p99 time.Duration
}

// startInserts inserts one audit row every 50 ms on its own connection until
// the returned function is called, which reports the latencies.
func startInserts(ctx context.Context, dbURL string) func() latency {
	ctx, cancel := context.WithCancel(ctx)
	var mu sync.Mutex
	var lats []time.Duration
	done := make(chan struct{})
	go func() {
		defer close(done)
		conn, err := pgx.Connect(ctx, dbURL)
		if err != nil {
			return
		}
		defer conn.Close(context.Background())
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			t := time.Now()
			_, err := conn.Exec(ctx, `INSERT INTO audit_logs (table_name, record_id, action, changed_by, changed_at) VALUES ('members', '1', 'READ', 'bench', now() AT TIME ZONE 'UTC')`)
			if err != nil {
				return
			}
			mu.Lock()
			lats = append(lats, time.Since(t))
			mu.Unlock()
		}
	}()
	return func() latency {
		cancel()
		<-done
		mu.Lock()
		defer mu.Unlock()
		slices.Sort(lats)
		l := latency{n: len(lats)}
		if len(lats) > 0 {
			l.max = lats[len(lats)-1].Round(time.Microsecond)
			l.p99 = lats[(len(lats)*99)/100].Round(time.Microsecond)
		}
		return l
	}
}
