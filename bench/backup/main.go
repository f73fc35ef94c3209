// Command backup measures ip2a-ops backup against plain pg_dump -Fc (its
// default gzip compression) on a database of at least 1 GB built with the
// generator, side by side in one run: wall time, stored size and peak RSS
// (from /usr/bin/time -v, apt-get install time). Then the restore drill
// (ip2a-ops backup verify --level restore: download, check, decompress,
// pg_restore --jobs, count every table) against a plain pg_restore of the
// pg_dump file into an empty database on the same server.
//
//	go run ./bench/backup -database-url postgres://postgres@127.0.0.1:5432/postgres
//
// Goals: backup wall <= 0.6x pg_dump's, size <= 1.0x, peak RSS < 100 MB;
// drill <= 1.3x plain pg_restore.
//
// Flags: -keep-db NAME keeps (and reuses) the generated database between
// runs; -work-dir, -runs and -restore-runs (alternating rounds, medians
// compared); -compression N; -floor also times pg_dump -Fc -Z0; -s3 also
// times the backup age-encrypted into an S3-protocol server started in this
// process (internal/s3test, objects in memory, SigV4 checked; its CPU is
// taken from the same machine, which a remote S3 would not cost).
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"filippo.io/age"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ip2a/ip2a-ops/internal/s3test"
	"github.com/ip2a/ip2a-ops/pkg/fixture"
	"github.com/ip2a/ip2a-ops/pkg/pgcluster"
	"github.com/ip2a/ip2a-ops/pkg/storage"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench backup:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("backup", flag.ContinueOnError)
	dbURL := fs.String("database-url", os.Getenv("DATABASE_URL"), "server to benchmark on; empty starts a throwaway cluster")
	auditRows := fs.Int("audit-rows", 4_000_000, "audit_logs rows (the bulk of the size)")
	members := fs.Int("members", 10_000, "members")
	keepDB := fs.String("keep-db", "", "name of a database to keep and reuse between runs (default: a throwaway one)")
	workDir := fs.String("work-dir", "", "directory for dumps and the backup store (default: a temp dir)")
	runs := fs.Int("runs", 1, "rounds of the backups (alternating order; medians compared)")
	restoreRuns := fs.Int("restore-runs", 1, "rounds of the restores (alternating order; medians compared; 0 skips them)")
	compression := fs.Int("compression", 0, "ip2a-ops backup --compression (0: its default)")
	floor := fs.Bool("floor", false, "also time pg_dump -Fc -Z0 (no compression), the floor of the backup's wall time")
	withS3 := fs.Bool("s3", false, "also time ip2a-ops backup age-encrypted into an in-process S3-protocol server (internal/s3test)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *runs < 1 || *restoreRuns < 0 {
		return fmt.Errorf("-runs must be at least 1, -restore-runs at least 0 (0 skips the restores)")
	}
	if _, err := os.Stat("/usr/bin/time"); err != nil {
		return fmt.Errorf("/usr/bin/time missing: apt-get install time")
	}
	admin := *dbURL
	if admin == "" {
		c, err := pgcluster.Start(ctx, pgcluster.Options{})
		if err != nil {
			return fmt.Errorf("start cluster: %w", err)
		}
		defer c.Stop()
		admin = c.URL("postgres")
	}
	dir := *workDir
	if dir == "" {
		d, err := os.MkdirTemp("", "bench-backup-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	bin := filepath.Join(dir, "ip2a-ops")
	if b, err := exec.CommandContext(ctx, "go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		return fmt.Errorf("build ip2a-ops: %v: %s", err, b)
	}

	name := *keepDB
	fresh := true
	if name == "" {
		var b [4]byte
		_, _ = rand.Read(b[:])
		name = "bench_backup_" + hex.EncodeToString(b[:])
		defer exec1(context.WithoutCancel(ctx), admin, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	} else {
		var n int
		if err := query1(ctx, admin, "SELECT count(*) FROM pg_database WHERE datname = $1", &n, name); err != nil {
			return err
		}
		fresh = n == 0
	}
	src := withDB(admin, name)
	if fresh {
		if err := exec1(ctx, admin, "CREATE DATABASE "+name); err != nil {
			return err
		}
		t := time.Now()
		pool, err := pgxpool.New(ctx, src)
		if err != nil {
			return err
		}
		if err := fixture.LoadSchema(ctx, pool, fixture.Newer); err != nil {
			pool.Close()
			return err
		}
		st, err := fixture.Generate(ctx, pool, fixture.Options{Generation: fixture.Newer, Seed: 1, Members: *members,
			EmploymentsPerMember: 2, AuditYears: 3, AuditRows: *auditRows, AuditWorkers: 2})
		pool.Close()
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "generated %d rows in %s\n", st.TotalRows(), time.Since(t).Round(time.Second))
		if err := exec1(ctx, src, "VACUUM ANALYZE"); err != nil {
			return err
		}
	}
	var size int64
	var version string
	if err := query1(ctx, src, "SELECT pg_database_size(current_database())", &size); err != nil {
		return err
	}
	_ = query1(ctx, src, "SELECT current_setting('server_version')", &version)
	fmt.Fprintf(out, "database %s: %.2f GB, PostgreSQL %s, %d CPUs\n\n", name, float64(size)/1e9, version, runtime.NumCPU())
	if size < 1e9 {
		fmt.Fprintf(out, "WARNING: the database is under 1 GB; raise -audit-rows\n")
	}
	env := append(os.Environ(), "DATABASE_URL="+src, "IP2A_OPS_LOG_FORMAT=json", "IP2A_OPS_LOG_LEVEL=warn")

	pgDumpFile := filepath.Join(dir, "plain.dump")
	floorFile := filepath.Join(dir, "floor.dump")
	store := filepath.Join(dir, "store")
	_ = os.RemoveAll(store)
	type row struct {
		what  string
		cmd   []string
		env   []string // added to env
		wall  time.Duration
		rssKB int64
		size  int64
	}
	// Warm the cache the same way for both: each is run once before timing?
	// No: both read the same, already-generated, mostly cached tables; the
	// pg_dump goes first, so any cold-cache penalty is its own.
	rows := []row{
		{what: "pg_dump -Fc (gzip default)", cmd: []string{"pg_dump", "-Fc", "-f", pgDumpFile, "--dbname=" + src}},
		{what: "ip2a-ops backup", cmd: []string{bin, "--auto-migrate", "backup", "--storage", store}},
	}
	if *compression > 0 {
		rows[1].what += fmt.Sprintf(" --compression %d", *compression)
		rows[1].cmd = append(rows[1].cmd, "--compression", strconv.Itoa(*compression))
	}
	if *floor {
		// What pg_dump alone costs without compressing: the floor the
		// backup's wall time is made of.
		rows = append(rows, row{what: "pg_dump -Fc -Z0 (floor)", cmd: []string{"pg_dump", "-Fc", "-Z0", "-f", floorFile, "--dbname=" + src}})
		defer os.Remove(floorFile)
	}
	s3Row := -1
	var s3 *s3Target
	if *withS3 {
		t, err := startS3(ctx)
		if err != nil {
			return err
		}
		defer t.srv.Stop()
		s3 = t
		s3Row = len(rows)
		rows = append(rows, row{what: "ip2a-ops backup -> S3, age-encrypted", env: t.env(),
			cmd: []string{bin, "--auto-migrate", "--json", "backup", "--storage", t.url, "--recipient", t.recipient}})
		if *compression > 0 {
			rows[s3Row].cmd = append(rows[s3Row].cmd, "--compression", strconv.Itoa(*compression))
		}
	}
	// Each round runs every command once, in alternating order, so a load
	// that comes and goes (the machine is shared) hits both alike; the
	// median wall time of each is compared.
	var phases strings.Builder
	walls := make([][]time.Duration, len(rows))
	for round := range *runs {
		for k := range rows {
			i := k
			if round%2 == 1 {
				i = len(rows) - 1 - k
			}
			r := &rows[i]
			var stdout io.Writer = io.Discard
			if i == 1 {
				_ = os.RemoveAll(store) // one backup in the store: its size is the stored size
				phases.Reset()
				stdout = &phases
			}
			if i == s3Row {
				if err := s3.empty(ctx); err != nil { // one backup in the bucket
					return err
				}
				phases.Reset()
				stdout = &phases
			}
			wall, rss, err := timed(ctx, r.cmd, slices.Concat(env, r.env), stdout)
			if err != nil {
				return fmt.Errorf("%s: %w", r.what, err)
			}
			walls[i] = append(walls[i], wall)
			r.rssKB = max(r.rssKB, rss)
			if i == 1 {
				for _, l := range strings.Split(phases.String(), "\n") {
					if strings.Contains(l, "total") {
						fmt.Fprintf(out, "round %d: ip2a-ops stages: %s\n", round+1, strings.TrimSpace(l))
					}
				}
			}
			if i == s3Row {
				res, err := parseBackupJSON(phases.String())
				if err != nil {
					return fmt.Errorf("%s: %w", r.what, err)
				}
				r.size = res.StoredBytes
				fmt.Fprintf(out, "round %d: ip2a-ops -> S3 stages: dump+compress+store %.1fs, store finish %.1fs, check %.1fs, total %.1fs\n",
					round+1, res.DumpSeconds, res.UploadSeconds, res.VerifySeconds, res.TotalSeconds)
			}
		}
		if *runs > 1 {
			fmt.Fprintf(out, "round %d:", round+1)
			for i := range rows {
				fmt.Fprintf(out, " %s %.1fs;", rows[i].what, walls[i][round].Seconds())
			}
			fmt.Fprintln(out)
		}
	}
	for i := range rows {
		rows[i].wall = median(walls[i])
	}
	rows[0].size = fileSize(pgDumpFile)
	rows[1].size = dirSize(store)
	if *floor {
		rows[2].size = fileSize(floorFile)
	}
	if *runs > 1 {
		fmt.Fprintf(out, "median of %d rounds, peak RSS the largest:\n", *runs)
	}
	width := 30
	for _, r := range rows {
		width = max(width, len(r.what))
	}
	fmt.Fprintf(out, "%-*s %10s %12s %12s\n", width, "backup", "wall", "stored", "peak RSS")
	for _, r := range rows {
		fmt.Fprintf(out, "%-*s %9.1fs %9.1f MB %9.1f MB\n", width, r.what, r.wall.Seconds(), float64(r.size)/1e6, float64(r.rssKB)/1024)
	}
	fmt.Fprintf(out, "ratio: wall %.2fx (goal <= 0.6), size %.2fx (goal <= 1.0), RSS %.0f MB (goal < 100)\n",
		rows[1].wall.Seconds()/rows[0].wall.Seconds(), float64(rows[1].size)/float64(rows[0].size), float64(rows[1].rssKB)/1024)
	if s3Row >= 0 {
		r := rows[s3Row]
		fmt.Fprintf(out, "ratio S3, age-encrypted: wall %.2fx, size %.2fx, RSS %.0f MB (of pg_dump -Fc)\n",
			r.wall.Seconds()/rows[0].wall.Seconds(), float64(r.size)/float64(rows[0].size), float64(r.rssKB)/1024)
	}
	fmt.Fprintln(out)

	if *restoreRuns == 0 {
		return nil
	}
	// Restores: plain pg_restore into an empty database vs the drill.
	plainDB := name + "_plain_restore"
	_ = exec1(ctx, admin, "DROP DATABASE IF EXISTS "+plainDB+" WITH (FORCE)")
	if err := exec1(ctx, admin, "CREATE DATABASE "+plainDB); err != nil {
		return err
	}
	defer exec1(context.WithoutCancel(ctx), admin, "DROP DATABASE IF EXISTS "+plainDB+" WITH (FORCE)")
	restores := []row{
		{what: "pg_restore (plain)", cmd: []string{"pg_restore", "--dbname=" + withDB(admin, plainDB), "--no-owner", pgDumpFile}},
		{what: "ip2a-ops verify --level restore", cmd: []string{bin, "backup", "verify", "latest", "--level", "restore", "--storage", store, "--scratch-url", admin}},
	}
	rwalls := make([][]time.Duration, len(restores))
	for round := range *restoreRuns {
		for k := range restores {
			i := k
			if round%2 == 1 {
				i = len(restores) - 1 - k
			}
			r := &restores[i]
			if i == 0 && round > 0 {
				_ = exec1(ctx, admin, "DROP DATABASE IF EXISTS "+plainDB+" WITH (FORCE)")
				if err := exec1(ctx, admin, "CREATE DATABASE "+plainDB); err != nil {
					return err
				}
			}
			wall, rss, err := timed(ctx, r.cmd, env, io.Discard)
			if err != nil {
				return fmt.Errorf("%s: %w", r.what, err)
			}
			rwalls[i] = append(rwalls[i], wall)
			r.rssKB = max(r.rssKB, rss)
		}
		if *restoreRuns > 1 {
			fmt.Fprintf(out, "round %d: %s %.1fs; %s %.1fs\n", round+1, restores[0].what, rwalls[0][round].Seconds(), restores[1].what, rwalls[1][round].Seconds())
		}
	}
	for i := range restores {
		restores[i].wall = median(rwalls[i])
	}
	fmt.Fprintf(out, "%-30s %10s %12s\n", "restore", "wall", "peak RSS")
	for _, r := range restores {
		fmt.Fprintf(out, "%-30s %9.1fs %9.1f MB\n", r.what, r.wall.Seconds(), float64(r.rssKB)/1024)
	}
	fmt.Fprintf(out, "ratio: drill %.2fx of plain pg_restore (goal <= 1.3)\n", restores[1].wall.Seconds()/restores[0].wall.Seconds())
	return nil
}

// s3Target is the S3-protocol server the encrypted backup row stores into,
// the bench's view of its bucket, and the age public key it encrypts to (the
// private key is not needed: nothing here decrypts).
type s3Target struct {
	srv       *s3test.Server
	store     storage.Store
	url       string
	recipient string
}

func startS3(ctx context.Context) (*s3Target, error) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return nil, err
	}
	srv, err := s3test.New()
	if err != nil {
		return nil, fmt.Errorf("start S3 server: %w", err)
	}
	cfg := srv.Config("bench")
	st, err := storage.Open(ctx, cfg)
	if err != nil {
		srv.Stop()
		return nil, err
	}
	return &s3Target{srv: srv, store: st, url: cfg.URL, recipient: id.Recipient().String()}, nil
}

// env points ip2a-ops at the server.
func (t *s3Target) env() []string {
	return []string{
		"IP2A_OPS_S3_ENDPOINT=" + t.srv.Endpoint,
		"IP2A_OPS_S3_ACCESS_KEY_ID=" + t.srv.AccessKey,
		"IP2A_OPS_S3_SECRET_ACCESS_KEY=" + t.srv.SecretKey,
		"IP2A_OPS_S3_BUCKET=" + t.srv.Bucket,
		"IP2A_OPS_S3_REGION=" + t.srv.Region,
		"IP2A_OPS_S3_PATH_STYLE=true",
	}
}

// empty deletes every object under the bench's prefix, so that a round's
// backup is the only one stored and the server's memory holds one copy.
func (t *s3Target) empty(ctx context.Context) error {
	objs, err := t.store.List(ctx, "")
	if err != nil {
		return fmt.Errorf("empty bucket: %w", err)
	}
	for _, o := range objs {
		if err := t.store.Delete(ctx, o.Key); err != nil {
			return fmt.Errorf("empty bucket: %w", err)
		}
	}
	return nil
}

// backupJSON is the part of ip2a-ops --json backup's document the bench
// reads: the stored object's size and the seconds of each stage.
type backupJSON struct {
	StoredBytes   int64   `json:"stored_bytes"`
	Encrypted     bool    `json:"encrypted"`
	DumpSeconds   float64 `json:"dump_seconds"`
	UploadSeconds float64 `json:"upload_seconds"`
	VerifySeconds float64 `json:"verify_seconds"`
	TotalSeconds  float64 `json:"total_seconds"`
}

func parseBackupJSON(s string) (backupJSON, error) {
	var doc struct {
		Summary backupJSON `json:"summary"`
	}
	if err := json.Unmarshal([]byte(s), &doc); err != nil {
		return backupJSON{}, fmt.Errorf("read --json output: %w: %s", err, tail(s, 500))
	}
	if doc.Summary.StoredBytes == 0 || !doc.Summary.Encrypted {
		return backupJSON{}, fmt.Errorf("--json output: want an encrypted backup with stored_bytes: %s", tail(s, 500))
	}
	return doc.Summary, nil
}

// timed runs cmd under /usr/bin/time -v and returns the wall time and the
// peak RSS it reports (the largest of the process and its children); the
// command's output goes to stdout.
func timed(ctx context.Context, cmd []string, env []string, stdout io.Writer) (time.Duration, int64, error) {
	c := exec.CommandContext(ctx, "/usr/bin/time", append([]string{"-v"}, cmd...)...)
	c.Env = env
	var stderr strings.Builder
	c.Stderr = &stderr
	c.Stdout = stdout
	t := time.Now()
	err := c.Run()
	wall := time.Since(t)
	if err != nil {
		return 0, 0, fmt.Errorf("%v: %s", err, tail(stderr.String(), 1500))
	}
	var rss int64
	sc := bufio.NewScanner(strings.NewReader(stderr.String()))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if v, ok := strings.CutPrefix(line, "Maximum resident set size (kbytes): "); ok {
			rss, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	return wall, rss, nil
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func fileSize(p string) int64 {
	st, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return st.Size()
}

// dirSize sums the data objects of the store (manifests are a few KB).
func dirSize(dir string) int64 {
	var n int64
	_ = filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			n += info.Size()
		}
		return nil
	})
	return n
}

func withDB(admin, db string) string {
	u, err := url.Parse(admin)
	if err != nil {
		return admin
	}
	u.Path = "/" + db
	return u.String()
}

func exec1(ctx context.Context, dbURL, sql string) error {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

func query1(ctx context.Context, dbURL, sql string, dst any, args ...any) error {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return conn.QueryRow(ctx, sql, args...).Scan(dst)
}
