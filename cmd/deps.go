package cmd

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mattn/go-isatty"

	"github.com/ip2a/ip2a-ops/pkg/dbconn"
	"github.com/ip2a/ip2a-ops/pkg/exitcode"
	"github.com/ip2a/ip2a-ops/pkg/jobs"
	"github.com/ip2a/ip2a-ops/pkg/ledger"
	"github.com/ip2a/ip2a-ops/pkg/migrate"
	"github.com/ip2a/ip2a-ops/pkg/notify"
	"github.com/ip2a/ip2a-ops/pkg/progress"
	"github.com/ip2a/ip2a-ops/pkg/runner"
	"github.com/ip2a/ip2a-ops/pkg/storage"
)

// globalFlags are the persistent flags every command has.
type globalFlags struct {
	databaseURL    string
	directURL      string // a connection with a session of its own, for what needs one
	logFormat      string
	logLevel       string
	json           bool
	trigger        string
	schema         string
	autoMigrate    bool
	maxRuntime     time.Duration
	heartbeat      time.Duration
	staleAfter     time.Duration
	connectTimeout time.Duration
	slot           string // RFC 3339: the scheduled slot this run fills (set by the daemon)
	progress       string // auto, always, never
}

// deps is what every command shares: output streams, environment, clock,
// logger, and lazily opened database and storage (so --help never dials).
type deps struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	now            func() time.Time
	g              globalFlags
	notify         notifyFlags
	logger         *slog.Logger
	ran            bool
	args           []string // the command line Run was given, recorded in the ledger

	// capture: job commands record their invocation in captured instead
	// of running it (the daemon parsing a crontab line); hints are the
	// running command's field hints.
	capture  bool
	captured *invocation
	hints    fieldHints

	// logOut is where the logger writes: stderr, or through the progress
	// display while one is drawn, so a log line never lands inside it.
	logOut *stderrSink
	// busySnooze is worker --busy-snooze: how long a queued job that
	// found its job busy waits. outboxPace, set by the worker, spaces the
	// notification backlog passes of its many runs.
	busySnooze time.Duration
	outboxPace *notify.Pace

	pool     *pgxpool.Pool
	url      string
	migrated bool
	ledMu    sync.Mutex
	led      *ledger.Ledger
	// storesMu guards stores: a worker's tasks open storage concurrently.
	storesMu sync.Mutex
	stores   map[storage.Config]storage.Store
	// notifyMu guards notifyCfgs: each job's notification settings, read
	// from flags and environment once per process (a worker's runs are
	// many and short; the settings do not change while it runs).
	notifyMu   sync.Mutex
	notifyCfgs map[string]notifySettings
	hostOnce   sync.Once
	host       string
}

func newDeps(env Env) *deps {
	stdin := env.Stdin
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	return &deps{stdin: stdin, stdout: env.Stdout, stderr: env.Stderr, getenv: env.Getenv, now: env.Now,
		logger: slog.New(slog.DiscardHandler), stores: map[storage.Config]storage.Store{}, logOut: &stderrSink{w: env.Stderr}}
}

func (d *deps) close() {
	if d.pool != nil {
		d.pool.Close()
	}
}

// setupLogger builds the stderr logger: text on a terminal, JSON otherwise,
// unless --log-format says which.
func (d *deps) setupLogger() error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(d.g.logLevel)); err != nil {
		return exitcode.Usagef("--log-level debug|info|warn|error", "invalid log level %q", d.g.logLevel)
	}
	format := d.g.logFormat
	if format == "" || format == "auto" {
		format = "json"
		if f, ok := d.stderr.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
			format = "text"
		}
	}
	opts := &slog.HandlerOptions{Level: level}
	switch format {
	case "text":
		d.logger = slog.New(slog.NewTextHandler(d.logOut, opts))
	case "json":
		d.logger = slog.New(slog.NewJSONHandler(d.logOut, opts))
	default:
		return exitcode.Usagef("--log-format text|json", "invalid log format %q", d.g.logFormat)
	}
	return nil
}

// dbURL resolves the connection string (flag > DATABASE_URL > PG*).
func (d *deps) dbURL() (string, error) {
	u, _, err := dbconn.Resolve(d.g.databaseURL, d.getenv)
	if err != nil {
		return "", exitcode.UsageError(err, "ip2a-ops --database-url postgres://user:pass@host:5432/ip2a ...   (or ip2a-ops demo for a throwaway database)")
	}
	return u, nil
}

// directURL is the connection string for work that needs a session of its
// own (backup's pg_dump and snapshot connections): --direct-url
// (DATABASE_DIRECT_URL), else the same as dbURL.
func (d *deps) directURL() (string, error) {
	if d.g.directURL != "" {
		return d.g.directURL, nil
	}
	return d.dbURL()
}

// db opens the app database once.
func (d *deps) db(ctx context.Context) (*pgxpool.Pool, error) {
	if d.pool != nil {
		return d.pool, nil
	}
	u, err := d.dbURL()
	if err != nil {
		return nil, err
	}
	pool, err := dbconn.Open(ctx, u, dbconn.Options{MaxConns: 8, ConnectTimeout: d.g.connectTimeout})
	if err != nil {
		return nil, err
	}
	d.pool, d.url = pool, u
	return pool, nil
}

// opsDB opens the database and makes sure ip2a-ops's schema is current,
// creating it when --auto-migrate is on; otherwise a missing schema is a
// configuration error (exit 2) that says how to create it.
func (d *deps) opsDB(ctx context.Context) (*pgxpool.Pool, error) {
	pool, err := d.db(ctx)
	if err != nil {
		return nil, err
	}
	if d.migrated {
		return pool, nil
	}
	if err := migrate.ValidateSchema(d.g.schema); err != nil {
		return nil, err
	}
	if d.g.autoMigrate {
		res, err := migrate.Up(ctx, pool, d.g.schema)
		if err != nil {
			return nil, err
		}
		if len(res.Applied) > 0 {
			d.logger.Info("created ip2a-ops schema", "schema", res.Schema, "version", res.To)
		}
	} else if err := migrate.Check(ctx, pool, d.g.schema); err != nil {
		return nil, err
	}
	d.migrated = true
	return pool, nil
}

// ledger returns the run ledger (the schema must be current).
func (d *deps) ledger(ctx context.Context) (*ledger.Ledger, error) {
	pool, err := d.opsDB(ctx)
	if err != nil {
		return nil, err
	}
	// One per process: it learns the database's identity once, and a
	// worker's runs share what its first Start swept.
	d.ledMu.Lock()
	defer d.ledMu.Unlock()
	if d.led == nil {
		d.led = ledger.New(pool, d.g.schema)
	}
	return d.led, nil
}

// storage opens (once per URL) the store at url: file:///dir, a path, or
// s3://bucket/prefix, with the S3 endpoint and keys from the app's S3_*
// variables (IP2A_OPS_S3_* override them). An empty url means the bucket
// named by S3_BUCKET_NAME / IP2A_OPS_S3_BUCKET; with neither it returns
// jobs.ErrNoStorage.
func (d *deps) storage(ctx context.Context, url string) (storage.Store, error) {
	cfg := storage.ConfigFromEnv(d.getenv)
	cfg.URL = url
	if cfg.URL == "" && cfg.Bucket == "" {
		return nil, jobs.ErrNoStorage
	}
	// Keyed by the whole configuration, secrets included: two that differ
	// only in a key must not share a store.
	d.storesMu.Lock()
	defer d.storesMu.Unlock()
	if s, ok := d.stores[cfg]; ok {
		return s, nil
	}
	s, err := storage.Open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	d.stores[cfg] = s
	return s, nil
}

// trigger is --trigger, or what the environment says started us.
// stderrSink is stderr for the logger; while a progress display is drawn,
// lines go through it.
type stderrSink struct {
	mu   sync.Mutex
	w    io.Writer
	disp *progress.Display
}

func (s *stderrSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	disp := s.disp
	s.mu.Unlock()
	if disp != nil {
		return disp.Write(p)
	}
	return s.w.Write(p)
}

func (s *stderrSink) setDisplay(disp *progress.Display) {
	s.mu.Lock()
	s.disp = disp
	s.mu.Unlock()
}

// showProgress says whether a run draws live progress on stderr: --progress
// always or never decide; auto draws it for a person at a terminal (stderr
// a terminal, no --json, and started by hand), never under cron, systemd,
// Railway, the daemon or a queue worker.
func (d *deps) showProgress() (bool, error) {
	switch d.g.progress {
	case "always":
		return true, nil
	case "never":
		return false, nil
	case "", "auto":
		f, ok := d.stderr.(*os.File)
		return ok && isatty.IsTerminal(f.Fd()) && !d.g.json && d.trigger() == "manual", nil
	}
	return false, exitcode.Usagef("--progress auto|always|never", "invalid --progress %q", d.g.progress)
}

func (d *deps) trigger() string {
	if d.g.trigger != "" {
		return d.g.trigger
	}
	return runner.DetectTrigger(d.getenv, runner.Ancestors())
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
