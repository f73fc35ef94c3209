// Command generate measures how fast pkg/fixture loads audit_logs, side by
// side with PostgreSQL generating the same number of rows itself
// (INSERT ... SELECT FROM generate_series), on the same server and schema.
//
//	go run ./bench/generate -database-url postgres://postgres@127.0.0.1:5432/postgres -audit-rows 2000000
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
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ip2a/ip2a-ops/pkg/fixture"
	"github.com/ip2a/ip2a-ops/pkg/pgcluster"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench generate:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("generate", flag.ContinueOnError)
	dbURL := fs.String("database-url", os.Getenv("DATABASE_URL"), "server to benchmark on (a throwaway database is created there); empty starts a throwaway cluster")
	rows := fs.Int("audit-rows", 2_000_000, "audit_logs rows to load")
	years := fs.Int("audit-years", 3, "years the audit rows span")
	workers := fs.Int("workers", 2, "connections loading audit months in parallel")
	gen := fs.String("generation", "newer", "schema generation: newer or older")
	if err := fs.Parse(args); err != nil {
		return err
	}
	scratch, err := pgcluster.NewScratch(ctx, *dbURL, "ip2a_bench")
	if err != nil {
		return err
	}
	defer scratch.Close()
	pool, err := pgxpool.New(ctx, scratch.URL)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer pool.Close()
	g := fixture.Generation(*gen)
	if err := fixture.LoadSchema(ctx, pool, g); err != nil {
		return err
	}
	var version string
	if err := pool.QueryRow(ctx, "SHOW server_version").Scan(&version); err != nil {
		return fmt.Errorf("server version: %w", err)
	}

	// ip2a-ops: the generator, demo-sized everywhere but audit_logs.
	st, err := fixture.Generate(ctx, pool, fixture.Options{Generation: g, Seed: 46, AuditYears: *years,
		AuditRows: *rows, AuditWorkers: *workers})
	if err != nil {
		return err
	}
	var size string
	if err := pool.QueryRow(ctx, "SELECT pg_size_pretty(pg_total_relation_size('audit_logs'))").Scan(&size); err != nil {
		return fmt.Errorf("table size: %w", err)
	}

	// Comparison: the server builds the same number of rows from
	// generate_series into the same, emptied table (TRUNCATE is allowed
	// even with the immutability trigger), in one statement.
	if _, err := pool.Exec(ctx, "TRUNCATE audit_logs"); err != nil {
		return fmt.Errorf("truncate: %w", err)
	}
	t0 := time.Now()
	tag, err := pool.Exec(ctx, seriesInsert, *rows, time.Now().UTC().AddDate(-*years, 0, 0).Truncate(time.Hour))
	if err != nil {
		return fmt.Errorf("server-side insert: %w", err)
	}
	series := time.Since(t0)
	var size2 string
	if err := pool.QueryRow(ctx, "SELECT pg_size_pretty(pg_total_relation_size('audit_logs'))").Scan(&size2); err != nil {
		return fmt.Errorf("table size: %w", err)
	}

	fmt.Fprintf(out, "generator benchmark: audit_logs, %s schema, PostgreSQL %s, %d CPUs\n", g, version, numCPU())
	fmt.Fprintf(out, "%-48s %10s %9s %11s %10s\n", "method", "rows", "seconds", "rows/s", "size")
	fmt.Fprintf(out, "%-48s %10d %9.2f %11.0f %10s\n", fmt.Sprintf("ip2a-ops fixture.Generate (COPY, %d conns)", *workers),
		st.Rows["audit_logs"], st.AuditElapsed.Seconds(), float64(st.Rows["audit_logs"])/st.AuditElapsed.Seconds(), size)
	fmt.Fprintf(out, "%-48s %10d %9.2f %11.0f %10s\n", "server-side INSERT ... SELECT generate_series",
		tag.RowsAffected(), series.Seconds(), float64(tag.RowsAffected())/series.Seconds(), size2)
	fmt.Fprintf(out, "whole fixture.Generate run: %d rows in %d tables, %.2f s\n", st.TotalRows(), len(st.Rows), st.Elapsed.Seconds())
	return nil
}

// seriesInsert mirrors the generator's rows: same tables and actions mix
// roughly, JSON bodies on writes, naive changed_at spread over the span.
const seriesInsert = `
INSERT INTO audit_logs (id, table_name, record_id, action, old_values, new_values, changed_fields,
                        changed_by, changed_at, ip_address, user_agent, notes)
SELECT i,
       (ARRAY['members','users','students','dues_payments','member_employments','grants','grant_enrollments',
              'organizations','expenses','file_attachments'])[1 + i % 10],
       (1 + i % 5000)::text,
       (ARRAY['READ','READ','READ','READ','READ','BULK_READ','UPDATE','UPDATE','CREATE','DELETE'])[1 + (i / 7) % 10],
       CASE WHEN (i / 7) % 10 IN (6, 7, 9)
            THEN jsonb_build_object('status', 'ACTIVE', 'notes', E'Line one\nsaid "hi" C:\\tmp — Zoë') END,
       CASE WHEN (i / 7) % 10 IN (6, 7, 8)
            THEN jsonb_build_object('status', 'INACTIVE', 'notes', E'Line two\n\\ 日本語', 'updated_at', '2024-05-01T10:00:00') END,
       CASE WHEN (i / 7) % 10 IN (6, 7) THEN '["status","notes"]'::jsonb END,
       'user' || (i % 40) || '@ibew46.org',
       $2::timestamp + (i * (interval '1 second' * (extract(epoch FROM (now() - $2::timestamp)) / $1))),
       '10.20.' || (i % 8) || '.' || (10 + i % 60),
       'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36',
       CASE WHEN i % 97 = 0 THEN 'Bulk export requested' END
FROM generate_series(1, $1::int) AS i`

func numCPU() int { return runtime.NumCPU() }
