// Command audit-archive benchmarks `ip2a-ops audit-archive run` (export,
// zstd, upload to local storage, read-back verification, guarded delete) on
// a generated audit_logs of 2 million rows with about 1.2 million eligible,
// against the bare pair a DBA would type: COPY (SELECT ...) TO a file and a
// plain DELETE of the same rows, on a copy of the table without triggers.
//
// It measures two layouts of the same rows, each with the app's real index
// set on audit_logs (primary key, a second index on id, record_id,
// table_name; none on changed_at):
//   - follow: ids follow changed_at, as for rows the app writes as things
//     happen;
//   - shuffled: ids in an order unrelated to changed_at (rows stored in id
//     order), as for imported or backfilled rows.
//
// Every run starts from a fresh copy of a prepared template database of
// each layout; the layouts alternate between runs, and the bare pair runs
// just before and again just after ip2a-ops, on two copies of the table
// (the machine is shared, so figures move: ip2a-ops is compared with the
// mean of the two). It prints every run and the medians side by side.
// It measures peak memory of the ip2a-ops process (/usr/bin/time -v) and the
// latency of an insert into audit_logs every 50 ms while each side runs.
//
//	go run ./bench/audit-archive [-database-url postgres://...] [-audit-rows 2000000] [-runs 3]
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
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

// layouts in the order of the first run.
var layouts = []string{"follow", "shuffled"}

// realIndexes is audit_logs' index set in ../shared/schema/ip2a-develop.schema.sql
// (and ip2a-main): the bench refuses to measure on any other.
var realIndexes = []string{
	"CREATE INDEX ix_audit_logs_id ON public.audit_logs USING btree (id)",
	"CREATE INDEX ix_audit_logs_record_id ON public.audit_logs USING btree (record_id)",
	"CREATE INDEX ix_audit_logs_table_name ON public.audit_logs USING btree (table_name)",
	"CREATE UNIQUE INDEX audit_logs_pkey ON public.audit_logs USING btree (id)",
}

type bench struct {
	admin, bin, work string
	logDir           string
	cut              string
	out              io.Writer
	drops            []func() error // the templates, shuffled first
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("audit-archive", flag.ContinueOnError)
	dbURL := fs.String("database-url", os.Getenv("DATABASE_URL"), "server to benchmark on (throwaway databases are created there); empty starts a throwaway cluster")
	rows := fs.Int("audit-rows", 2_000_000, "audit_logs rows to load")
	years := fs.Int("audit-years", 8, "years the rows span (8 with --archive-after 3y: ~61% eligible)")
	runs := fs.Int("runs", 3, "runs of each layout (alternating), reported with their median")
	only := fs.String("layout", "", "measure only this layout (follow or shuffled); empty: both")
	logDir := fs.String("log-dir", "", "write ip2a-ops's info log (per-month progress) of each run into this directory")
	keep := fs.Bool("keep", false, "keep the two template databases (for EXPLAIN by hand, or -reuse) and print their URLs")
	reuse := fs.String("reuse", "", "measure on the templates a -keep run printed (follow-URL,shuffled-URL) instead of building them")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *only != "" && !slices.Contains(layouts, *only) {
		return fmt.Errorf("-layout %q: want follow or shuffled", *only)
	}
	if *keep && *dbURL == "" {
		return fmt.Errorf("-keep needs -database-url")
	}
	if _, err := os.Stat("/usr/bin/time"); err != nil {
		return fmt.Errorf("/usr/bin/time is missing: apt-get install time")
	}
	work, err := os.MkdirTemp("", "bench-audit-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	b := &bench{work: work, logDir: *logDir, out: out, bin: filepath.Join(work, "ip2a-ops")}
	if c, err := exec.Command("go", "build", "-o", b.bin, "github.com/ip2a/ip2a-ops").CombinedOutput(); err != nil {
		return fmt.Errorf("build: %v\n%s", err, c)
	}
	now := time.Now().UTC()
	b.cut = audit.LastEligible(now, audit.DefaultArchiveAfter).End().Format("2006-01-02")
	var tmpl map[string]string
	if *reuse != "" {
		urls := strings.Split(*reuse, ",")
		if len(urls) != 2 || *dbURL == "" {
			return fmt.Errorf("-reuse wants follow-URL,shuffled-URL and -database-url")
		}
		b.admin, tmpl = *dbURL, map[string]string{"follow": urls[0], "shuffled": urls[1]}
	} else {
		if !*keep {
			defer b.dropTemplates()
		}
		var err error
		if tmpl, err = b.templates(ctx, *dbURL, now, *rows, *years, *keep); err != nil {
			return err
		}
	}

	results := map[string][]result{}
	for r := range *runs {
		order := slices.Clone(layouts)
		if r%2 == 1 {
			slices.Reverse(order)
		}
		for _, l := range order {
			if *only != "" && l != *only {
				continue
			}
			res, err := b.measure(ctx, tmpl[l], l, r+1)
			if err != nil {
				return fmt.Errorf("run %d %s: %w", r+1, l, err)
			}
			results[l] = append(results[l], res)
			fmt.Fprintf(out, "run %d %-8s bare %5.2f s before (copy %.2f, delete %.2f), %5.2f s after (copy %.2f, delete %.2f)  ip2a-ops %6.2f s  ratio %.2fx  RSS %.1f MB  inserts %d, max wait %s\n",
				r+1, l, res.bare1.Seconds(), res.copy1.Seconds(), (res.bare1 - res.copy1).Seconds(), res.bare2.Seconds(), res.copy2.Seconds(),
				(res.bare2 - res.copy2).Seconds(), res.ops.Seconds(), res.ratio(), res.rssMB, res.lat.n, res.lat.max)
		}
	}
	b.summary(results)
	return nil
}

// templates builds and prepares the two template databases and returns
// their URLs: the follow one is the generator's table, the shuffled one a
// copy of it with new ids. Both get the bare copy, the ops schema, the
// guard and statistics before any run.
func (b *bench) templates(ctx context.Context, dbURL string, now time.Time, rows, years int, keep bool) (map[string]string, error) {
	scratch, err := pgcluster.NewScratch(ctx, dbURL, "bench_audit")
	if err != nil {
		return nil, err
	}
	b.admin = scratch.AdminURL
	b.drops = append(b.drops, scratch.Close)
	fmt.Fprintf(b.out, "loading %d audit rows over %d years...\n", rows, years)
	if err := b.generate(ctx, scratch.URL, now, rows, years); err != nil {
		return nil, err
	}
	tmpl := map[string]string{"follow": scratch.URL}
	shuffledURL, dropShuffled, err := b.clone(ctx, scratch.URL, "bench_audit_shuffled")
	if err != nil {
		return nil, err
	}
	b.drops = append([]func() error{dropShuffled}, b.drops...)
	tmpl["shuffled"] = shuffledURL
	if err := b.shuffle(ctx, shuffledURL); err != nil {
		return nil, err
	}
	for _, l := range layouts {
		if err := b.prepare(ctx, tmpl[l], l); err != nil {
			return nil, fmt.Errorf("prepare %s: %w", l, err)
		}
	}
	if keep {
		fmt.Fprintf(b.out, "templates kept; measure again with -reuse %s,%s\n", tmpl["follow"], tmpl["shuffled"])
	}
	return tmpl, nil
}

func (b *bench) dropTemplates() {
	for _, d := range b.drops {
		_ = d()
	}
}

// generate loads the rows into the follow template and checks that
// audit_logs has the app's real index set.
func (b *bench) generate(ctx context.Context, dbURL string, now time.Time, rows, years int) error {
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := fixture.LoadSchema(ctx, pool, fixture.Newer); err != nil {
		return err
	}
	if _, err := fixture.Generate(ctx, pool, fixture.Options{Generation: fixture.Newer, Seed: 46, Now: now, AuditYears: years, AuditRows: rows}); err != nil {
		return err
	}
	// The fixture is the app's schema: insist on exactly its index set.
	var idx []string
	r, err := pool.Query(ctx, `SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename = 'audit_logs' ORDER BY indexdef`)
	if err == nil {
		idx, err = pgx.CollectRows(r, pgx.RowTo[string])
	}
	if err != nil {
		return err
	}
	if !slices.Equal(idx, realIndexes) {
		return fmt.Errorf("audit_logs indexes differ from the app's:\n got %q\nwant %q", idx, realIndexes)
	}
	fmt.Fprintf(b.out, "audit_logs indexes (the app's): %s\n", strings.Join(idx, "; "))
	return nil
}

// shuffle gives every row a new id in an order unrelated to changed_at
// (a fixed permutation, so two runs load the same table) and stores the
// rows in id order, as an import assigning ids from the sequence would.
func (b *bench) shuffle(ctx context.Context, dbURL string) error {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	for _, q := range []string{
		`SET maintenance_work_mem = '256MB'`,
		`CREATE TABLE audit_src AS SELECT * FROM audit_logs`,
		`TRUNCATE audit_logs`,
		`INSERT INTO audit_logs SELECT row_number() OVER (ORDER BY hashint4(id), id), table_name, record_id, action, old_values, new_values,
  changed_fields, changed_by, changed_at, ip_address, user_agent, notes FROM audit_src ORDER BY 1`,
		`DROP TABLE audit_src`,
		`SELECT setval('audit_logs_id_seq', (SELECT max(id) FROM audit_logs))`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("shuffle ids: %s: %w", q, err)
		}
	}
	var follow float64
	if err := conn.QueryRow(ctx, `SELECT corr(id, extract(epoch FROM changed_at)) FROM audit_logs`).Scan(&follow); err != nil {
		return err
	}
	fmt.Fprintf(b.out, "shuffled layout: correlation of id and changed_at %.3f\n", follow)
	return nil
}

// prepare adds the bare side's copy of the table (LIKE copies the indexes,
// no triggers), the ops schema and the guard, then fresh statistics.
func (b *bench) prepare(ctx context.Context, dbURL, layout string) error {
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	for _, q := range []string{
		`CREATE TABLE audit_logs_bare (LIKE audit_logs INCLUDING ALL)`,
		`INSERT INTO audit_logs_bare SELECT * FROM audit_logs`,
		`CREATE TABLE audit_logs_bare2 (LIKE audit_logs INCLUDING ALL)`,
		`INSERT INTO audit_logs_bare2 SELECT * FROM audit_logs`,
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
	for _, q := range []string{`VACUUM ANALYZE audit_logs`, `VACUUM ANALYZE audit_logs_bare`, `VACUUM ANALYZE audit_logs_bare2`, `CHECKPOINT`} {
		if _, err := pool.Exec(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	var total, eligible int64
	if err := pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE changed_at < $1::timestamp) FROM audit_logs`, b.cut).Scan(&total, &eligible); err != nil {
		return err
	}
	var version string
	_ = pool.QueryRow(ctx, `SHOW server_version`).Scan(&version)
	fmt.Fprintf(b.out, "%-8s PostgreSQL %s, %d CPUs; audit_logs %d rows, %d eligible (changed_at < %s)\n", layout, version, runtime.NumCPU(), total, eligible, b.cut)
	return nil
}

// clone copies the database at src (which nobody may be connected to) into
// a new one, file by file, and returns its URL and a function dropping it.
func (b *bench) clone(ctx context.Context, src, prefix string) (string, func() error, error) {
	su, err := url.Parse(src)
	if err != nil {
		return "", nil, err
	}
	var rb [6]byte
	_, _ = rand.Read(rb[:])
	name := prefix + "_" + hex.EncodeToString(rb[:])
	conn, err := pgx.Connect(ctx, b.admin)
	if err != nil {
		return "", nil, err
	}
	defer conn.Close(ctx)
	from := strings.TrimPrefix(su.Path, "/")
	if _, err := conn.Exec(ctx, `CREATE DATABASE `+pgx.Identifier{name}.Sanitize()+` TEMPLATE `+pgx.Identifier{from}.Sanitize()+` STRATEGY FILE_COPY`); err != nil {
		return "", nil, fmt.Errorf("copy database %s: %w", from, err)
	}
	su.Path = "/" + name
	drop := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		c, err := pgx.Connect(ctx, b.admin)
		if err != nil {
			return err
		}
		defer c.Close(ctx)
		_, err = c.Exec(ctx, `DROP DATABASE IF EXISTS `+pgx.Identifier{name}.Sanitize()+` WITH (FORCE)`)
		return err
	}
	return su.String(), drop, nil
}

type result struct {
	// bare1 and copy1 before ip2a-ops, bare2 and copy2 after it.
	bare1, copy1, bare2, copy2, ops time.Duration
	rssMB                           float64
	lat                             latency
}

// bare is the mean of the bare pair's two runs.
func (r result) bare() time.Duration { return (r.bare1 + r.bare2) / 2 }

func (r result) ratio() float64 { return r.ops.Seconds() / r.bare().Seconds() }

// measure runs the bare pair and then ip2a-ops on a fresh copy of tmpl.
func (b *bench) measure(ctx context.Context, tmpl, layout string, n int) (result, error) {
	var res result
	dbURL, drop, err := b.clone(ctx, tmpl, "bench_audit_run")
	if err != nil {
		return res, err
	}
	defer func() { _ = drop() }()
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		return res, err
	}
	defer pool.Close()
	// This build's guard (templates kept from an earlier build may hold
	// an older one). No autovacuum: after the bare DELETE it would vacuum
	// the bare table while ip2a-ops runs.
	if _, err := audit.InstallGuard(ctx, audit.Config{Pool: pool}); err != nil {
		return res, err
	}
	// Templates kept by an older build may lack the second bare table.
	var missing bool
	if err := pool.QueryRow(ctx, `SELECT to_regclass('audit_logs_bare2') IS NULL`).Scan(&missing); err != nil {
		return res, err
	}
	if missing {
		for _, q := range []string{`CREATE TABLE audit_logs_bare2 (LIKE audit_logs INCLUDING ALL)`, `INSERT INTO audit_logs_bare2 SELECT * FROM audit_logs_bare`,
			`VACUUM ANALYZE audit_logs_bare2`} {
			if _, err := pool.Exec(ctx, q); err != nil {
				return res, fmt.Errorf("%s: %w", q, err)
			}
		}
	}
	for _, t := range []string{"audit_logs", "audit_logs_bare", "audit_logs_bare2"} {
		if _, err := pool.Exec(ctx, `ALTER TABLE `+t+` SET (autovacuum_enabled = false)`); err != nil {
			return res, err
		}
	}
	var eligible int64
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM audit_logs WHERE changed_at < $1::timestamp`, b.cut).Scan(&eligible); err != nil {
		return res, err
	}

	// Bare before ip2a-ops, on one copy of the table; again after it, on
	// another: the machine's load drifts within a run, so ip2a-ops is
	// compared with the mean of the two.
	if res.bare1, res.copy1, err = b.bare(ctx, dbURL, "audit_logs_bare", eligible); err != nil {
		return res, err
	}
	if _, err := pool.Exec(ctx, `CHECKPOINT`); err != nil {
		return res, err
	}

	// ip2a-ops, under /usr/bin/time -v.
	store := filepath.Join(b.work, "store")
	defer os.RemoveAll(store)
	probe := startInserts(ctx, dbURL)
	t1 := time.Now()
	level := "warn"
	if b.logDir != "" {
		level = "info"
	}
	cmd := exec.Command("/usr/bin/time", "-v", b.bin, "--database-url", dbURL, "--log-level", level, "audit-archive", "run",
		"--storage", "file://"+store, "--temp-dir", b.work)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	res.ops = time.Since(t1)
	res.lat = probe()
	if b.logDir != "" {
		_ = os.WriteFile(filepath.Join(b.logDir, fmt.Sprintf("audit-archive-%s-%d.log", layout, n)), stderr.Bytes(), 0o644)
	}
	if err != nil {
		return res, fmt.Errorf("ip2a-ops: %v\n%s%s", err, stdout, stderr.String())
	}
	var left int64
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM audit_logs WHERE changed_at < $1::timestamp`, b.cut).Scan(&left); err != nil {
		return res, err
	}
	if left != 0 {
		return res, fmt.Errorf("%d eligible rows left after the run", left)
	}
	var archived, deleted int64
	if err := pool.QueryRow(ctx, `SELECT coalesce(sum(row_count), 0), coalesce(sum(deleted_rows), 0) FROM ip2a_ops.audit_archive_months`).Scan(&archived, &deleted); err != nil {
		return res, err
	}
	if archived != eligible || deleted != eligible {
		return res, fmt.Errorf("archived %d rows and deleted %d, want %d each", archived, deleted, eligible)
	}
	if rss := regexp.MustCompile(`Maximum resident set size \(kbytes\): (\d+)`).FindStringSubmatch(stderr.String()); rss != nil {
		kb, _ := strconv.ParseFloat(rss[1], 64)
		res.rssMB = kb / 1024
	}
	if _, err := pool.Exec(ctx, `CHECKPOINT`); err != nil {
		return res, err
	}
	res.bare2, res.copy2, err = b.bare(ctx, dbURL, "audit_logs_bare2", eligible)
	return res, err
}

// bare runs the pair a DBA would type on table (a copy of audit_logs
// without triggers): COPY (SELECT ...) TO a file (client side, like psql
// \copy), then DELETE. It returns the time of both and of the COPY.
func (b *bench) bare(ctx context.Context, dbURL, table string, eligible int64) (total, copyDur time.Duration, err error) {
	probe := startInserts(ctx, dbURL)
	defer probe()
	t0 := time.Now()
	copyFile := filepath.Join(b.work, "bare.copy")
	f, err := os.Create(copyFile)
	if err != nil {
		return 0, 0, err
	}
	defer os.Remove(copyFile)
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close(ctx)
	w := bufio.NewWriterSize(f, 1<<20)
	if _, err := conn.PgConn().CopyTo(ctx, w, `COPY (SELECT * FROM `+table+` WHERE changed_at < '`+b.cut+`') TO STDOUT`); err != nil {
		return 0, 0, fmt.Errorf("bare copy: %w", err)
	}
	_ = w.Flush()
	_ = f.Sync()
	_ = f.Close()
	copyDur = time.Since(t0)
	tag, err := conn.Exec(ctx, `DELETE FROM `+table+` WHERE changed_at < '`+b.cut+`'`)
	if err != nil {
		return 0, 0, fmt.Errorf("bare delete: %w", err)
	}
	total = time.Since(t0)
	if tag.RowsAffected() != eligible {
		return 0, 0, fmt.Errorf("bare delete: %d rows, want %d", tag.RowsAffected(), eligible)
	}
	return total, copyDur, nil
}

func (b *bench) summary(results map[string][]result) {
	med := func(rs []result, f func(result) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		slices.Sort(v)
		if len(v)%2 == 1 {
			return v[len(v)/2]
		}
		return (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	fmt.Fprintf(b.out, "\n%-9s %5s %12s %14s %10s %10s %13s %14s\n", "layout", "runs", "bare s", "ip2a-ops s", "ratio", "ratios", "peak RSS MB", "insert max")
	for _, l := range layouts {
		rs := results[l]
		if len(rs) == 0 {
			continue
		}
		ratios := make([]string, len(rs))
		var maxWait time.Duration
		for i, r := range rs {
			ratios[i] = fmt.Sprintf("%.2f", r.ratio())
			maxWait = max(maxWait, r.lat.max)
		}
		fmt.Fprintf(b.out, "%-9s %5d %12.2f %14.2f %9.2fx %10s %13.1f %14s\n", l, len(rs),
			med(rs, func(r result) float64 { return r.bare().Seconds() }), med(rs, func(r result) float64 { return r.ops.Seconds() }),
			med(rs, result.ratio), strings.Join(ratios, "/"), med(rs, func(r result) float64 { return r.rssMB }), maxWait)
	}
	fmt.Fprintln(b.out, "\nratio: ip2a-ops run time / bare COPY+DELETE time (mean of the runs just before and just after it), median of the runs (goal <= 2.0x in both layouts);")
	fmt.Fprintln(b.out, "peak RSS goal < 100 MB; inserts into audit_logs every 50 ms during the run, goal: max wait < 1 s")
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
