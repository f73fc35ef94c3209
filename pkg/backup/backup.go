// Package backup makes, lists, verifies, restores and prunes logical backups
// of the IP2A database. A backup is one tar stream (see archive.go): pg_dump's
// custom-format archive of every object and of the small tables' data, plus
// the big tables' rows copied by ip2a-ops in the same snapshot; compressed
// with zstd on every core, optionally encrypted to age X25519 recipients,
// streamed into a storage.Store, checked, and only then described by a
// manifest. The manifest's presence is what makes a backup exist: an
// interrupted run leaves nothing List, Restore or Prune would take for a
// backup, and the next run removes what it left.
package backup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ip2a/ip2a-ops/pkg/exitcode"
	"github.com/ip2a/ip2a-ops/pkg/progress"
	"github.com/ip2a/ip2a-ops/pkg/storage"
)

// Options configure Run (making one backup). Zero values mean defaults.
type Options struct {
	// DatabaseURL of the database to back up. Required.
	DatabaseURL string
	// Store receives the backup. Required.
	Store storage.Store
	// Prefix inside the store; default DefaultPrefix.
	Prefix string
	// PgDump is the pg_dump binary; empty finds the newest on PATH or under
	// /usr/lib/postgresql/*/bin that is at least the server's major version.
	PgDump string
	// PgRestore is used to count the archive's entries; empty means the one
	// beside pg_dump, else found like PgDump.
	PgRestore string
	// WorkDir holds pg_dump's archive of the tables ip2a-ops does not copy
	// itself (schema and small tables: a few MB for IP2A) until it joins the
	// stream; default os.TempDir().
	WorkDir string
	// Recipients are age X25519 public keys ("age1..."); the backup is
	// encrypted to all of them when any is given. Blank entries and "#"
	// comments are skipped.
	Recipients []string
	// Level of zstd compression 1 (fastest) to 4 (smallest); default 2.
	Level int
	// Threads compressing; default min(GOMAXPROCS, 4).
	Threads int
	// Jobs is the number of connections copying big tables at once (one
	// table each); default 2.
	Jobs int
	// CopyMinBytes: tables at least this big (pg_table_size) have their rows
	// copied by ip2a-ops, the rest by pg_dump; default DefaultCopyMinBytes;
	// negative leaves every table to pg_dump.
	CopyMinBytes int64
	// LockWaitTimeout bounds how long pg_dump (and the row counts) wait for
	// a table lock, so a migration queued behind the dump does not stall
	// the app; default 30s.
	LockWaitTimeout time.Duration
	// Verify re-reads the stored object after the upload and checks its
	// SHA-256 (LevelChecksum, the default) or skips that (LevelNone).
	Verify Level
	// OrphanGrace: data objects without a manifest older than this are an
	// interrupted run's and are deleted at the start of a run; default 1h.
	OrphanGrace time.Duration
	// Tool is recorded in the manifest ("ip2a-ops v1.2.3").
	Tool string
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Progress, when set, counts the dump's bytes, the verification's and
	// the tables loaded by a restore.
	Progress *progress.Tracker
	// Logger for progress; default discards.
	Logger *slog.Logger

	chunkSize int // data entry size; tests shrink it (default defaultChunkSize)
	// beforeManifest, when set, runs after the object is stored and checked
	// and before the manifest is written (a test kills the process there).
	beforeManifest func()
	// afterLock, when set, runs once the copied tables are locked in the
	// snapshot (a test queues a migration's lock there).
	afterLock func()
	// copyData, when set, runs before each piece of a copied table's COPY
	// output is taken in, with the table's qualified name: the COPY is in
	// flight while it runs (a test kills the server's backend there).
	copyData func(table string)
}

// Validate names the first bad field.
func (o Options) Validate() error {
	switch {
	case o.DatabaseURL == "":
		return exitcode.Fieldf("DatabaseURL", "required")
	case o.Store == nil:
		return exitcode.Fieldf("Store", "required")
	case o.Level < 0 || o.Level > 4:
		return exitcode.Fieldf("Level", "%d is outside 1-4", o.Level)
	case o.Threads < 0:
		return exitcode.Fieldf("Threads", "%d is negative", o.Threads)
	case o.Jobs < 0:
		return exitcode.Fieldf("Jobs", "%d is negative", o.Jobs)
	case o.LockWaitTimeout < 0:
		return exitcode.Fieldf("LockWaitTimeout", "%s is negative", o.LockWaitTimeout)
	case o.Verify != "" && o.Verify != LevelNone && o.Verify != LevelChecksum:
		return exitcode.Fieldf("Verify", "%q: want none or checksum (run Verify for deeper levels)", o.Verify)
	}
	if _, _, err := ParseRecipients(o.Recipients); err != nil {
		return exitcode.Fieldf("Recipients", "%w", err)
	}
	return nil
}

func (o *Options) defaults() {
	o.Prefix = normPrefix(o.Prefix)
	if o.LockWaitTimeout == 0 {
		o.LockWaitTimeout = 30 * time.Second
	}
	if o.Verify == "" {
		o.Verify = LevelChecksum
	}
	if o.OrphanGrace == 0 {
		o.OrphanGrace = time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Tool == "" {
		o.Tool = "ip2a-ops"
	}
	if o.Jobs == 0 {
		o.Jobs = 2
	}
	if o.CopyMinBytes == 0 {
		o.CopyMinBytes = DefaultCopyMinBytes
	}
}

// Result is what Run did. On error it holds what was done before the error
// (the leftovers cleaned, the stage that failed).
type Result struct {
	ID       string `json:"id,omitempty"`
	Database string `json:"database,omitempty"`
	Store    string `json:"store"`
	Key      string `json:"key,omitempty"`
	// Stage is the last stage reached: cleanup, connect, dump (dumping,
	// compressing and storing run together), upload (the store finishing
	// the object), verify, manifest, done.
	Stage       string  `json:"stage"`
	DumpBytes   int64   `json:"dump_bytes"`
	StoredBytes int64   `json:"stored_bytes"`
	Ratio       float64 `json:"compression_ratio,omitempty"`
	Entries     int     `json:"archive_entries"`
	Tables      int     `json:"tables"`
	Rows        int64   `json:"rows"`
	Encrypted   bool    `json:"encrypted"`
	Verified    bool    `json:"verified"`
	// CopiedTables are the tables whose rows ip2a-ops copied itself.
	CopiedTables  []string `json:"copied_tables,omitempty"`
	AuditTriggers []string `json:"audit_triggers,omitempty"`
	PgDump        string   `json:"pg_dump,omitempty"`
	// Seconds spent per stage.
	DumpSeconds   float64 `json:"dump_seconds"`
	UploadSeconds float64 `json:"upload_seconds"`
	VerifySeconds float64 `json:"verify_seconds"`
	TotalSeconds  float64 `json:"total_seconds"`
	// Cleaned lists the leftovers of interrupted runs that were removed.
	Cleaned []string `json:"cleaned,omitempty"`
	// Warnings are housekeeping steps that failed without failing the
	// backup (a store that cannot list incomplete uploads).
	Warnings []string `json:"warnings,omitempty"`
	// Manifest is the manifest written (nil on error).
	Manifest *Manifest `json:"-"`
}

// Run makes one backup. See the package comment for the steps. A failed
// run leaves no manifest; its data object, when one was stored, is deleted
// (or, if that fails too, removed by the next run as an orphan).
func Run(ctx context.Context, o Options) (res Result, err error) {
	if err := o.Validate(); err != nil {
		return Result{}, fmt.Errorf("backup: %w", err)
	}
	o.defaults()
	res.Store = o.Store.String()
	started := o.Now().UTC()
	t0 := time.Now()
	defer func() { res.TotalSeconds = time.Since(t0).Seconds() }()
	recipients, recipientNames, _ := ParseRecipients(o.Recipients)

	res.Stage = "cleanup"
	cleaned, warnings, err := cleanLeftovers(ctx, &o)
	res.Cleaned, res.Warnings = cleaned, warnings
	if err != nil {
		return res, err
	}
	for _, c := range cleaned {
		o.Logger.Info("removed leftover of an interrupted run", "path", c)
	}

	res.Stage = "connect"
	snap, err := openSnapshot(ctx, o.DatabaseURL, o.LockWaitTimeout)
	if err != nil {
		return res, fmt.Errorf("backup: %w", err)
	}
	defer snap.close(ctx)
	res.Database = snap.info.Database
	pgDump, dumpVersion, err := findTool(ctx, "pg_dump", o.PgDump, snap.info.Major)
	if err != nil {
		return res, err
	}
	res.PgDump = pgDump
	pgRestore := o.PgRestore
	if pgRestore == "" {
		pgRestore = siblingTool(pgDump, "pg_restore")
	}
	pgRestore, _, err = findTool(ctx, "pg_restore", pgRestore, snap.info.Major)
	if err != nil {
		return res, err
	}
	triggers, err := auditTriggers(ctx, snap.tx)
	if err != nil {
		return res, fmt.Errorf("backup: %w", err)
	}
	res.AuditTriggers = triggers

	wd, err := newWorkDir(o.WorkDir, "dump")
	if err != nil {
		return res, fmt.Errorf("backup: %w", err)
	}
	defer wd.remove()

	res.Stage = "dump"
	id := newID(started)
	res.ID = id
	key := o.Prefix + id + "/" + tarDataName
	if len(recipients) > 0 {
		key += ".age"
	}
	res.Key = key
	res.Encrypted = len(recipients) > 0
	stored := false
	defer func() {
		if err != nil && stored {
			// No manifest: remove the object now rather than leave an orphan.
			_ = o.Store.Delete(context.WithoutCancel(ctx), key)
		}
	}()
	t := time.Now()
	out, err := dumpToStore(ctx, &o, snap, pgDump, pgRestore, key, recipients, wd, &res)
	res.DumpSeconds = time.Since(t).Seconds()
	if err != nil {
		return res, err
	}
	stored = true
	res.DumpBytes, res.StoredBytes = out.rawSize, out.storedSize
	if out.storedSize > 0 {
		res.Ratio = float64(out.rawSize) / float64(out.storedSize)
	}
	res.Entries, res.Tables = out.entries, len(out.tables)
	for _, tc := range out.tables {
		res.Rows += tc.Rows
	}
	for _, c := range out.copied {
		res.CopiedTables = append(res.CopiedTables, c.qualified())
	}

	m := &Manifest{
		ID: id, Tool: o.Tool,
		PgDumpVersion: dumpVersion, ServerVersion: snap.info.Version, ServerMajor: snap.info.Major,
		Database: snap.info.Database, SystemIdentifier: snap.info.SystemIdentifier,
		StartedAt: started,
		Dump: DumpInfo{Format: formatTar, Size: out.rawSize, SHA256: out.rawSHA, Entries: out.entries,
			CopiedTables: res.CopiedTables},
		Object: ObjectInfo{Key: key, Size: out.storedSize, SHA256: out.storedSHA, Compression: "zstd",
			Recipients: recipientNames},
		Tables: out.tables, AuditTriggers: triggers,
	}
	if res.Encrypted {
		m.Object.Encryption = "age"
	}
	if o.Verify == LevelChecksum {
		res.Stage = "verify"
		t = time.Now()
		v := checksumStored(ctx, o.Store, *m, o.Progress)
		v.Seconds = time.Since(t).Seconds()
		v.At = o.Now().UTC()
		res.VerifySeconds = v.Seconds
		m.Verifications = append(m.Verifications, v)
		if !v.OK {
			return res, fmt.Errorf("backup: verify the stored object: %s", v.Error)
		}
		res.Verified = true
	}

	res.Stage = "manifest"
	if o.beforeManifest != nil {
		o.beforeManifest()
	}
	m.FinishedAt = o.Now().UTC()
	if err := writeManifest(ctx, o.Store, o.Prefix, m); err != nil {
		return res, fmt.Errorf("backup: %w", err)
	}
	res.Stage = "done"
	res.Manifest = m
	o.Logger.Info("backup stored", "id", id, "key", key, "dump_bytes", res.DumpBytes, "stored_bytes", res.StoredBytes)
	return res, nil
}

// runPgDump writes the custom-format archive, uncompressed (zstd does the
// compressing, faster and smaller than pg_dump's gzip), to a file: a file,
// unlike a pipe, lets pg_dump record each table's data offset. exclude are
// --exclude-table-data patterns (the tables ip2a-ops copies itself).
func runPgDump(ctx context.Context, bin, dbURL, snapshotID, out string, lockWait time.Duration, exclude []string) error {
	conn, env := toolEnv(dbURL, "ip2a-ops backup")
	args := []string{"--format=custom", "--compress=0", "--file=" + out, "--no-password",
		"--snapshot=" + snapshotID, "--lock-wait-timeout=" + strconv.FormatInt(lockWait.Milliseconds(), 10),
		"--dbname=" + conn}
	for _, e := range exclude {
		args = append(args, "--exclude-table-data="+e)
	}
	err := runTool(ctx, env, bin, args...)
	var te *toolError
	if errors.As(err, &te) {
		return fmt.Errorf("dump database: pg_dump failed (%s): %s", te.exit, diskFullText(te.msg))
	}
	if err != nil {
		return fmt.Errorf("dump database: %w", err)
	}
	return nil
}

// countEntries lists the archive's table of contents; that also proves the
// archive is readable.
func countEntries(ctx context.Context, pgRestore, path string) (int, error) {
	cmd := exec.CommandContext(ctx, pgRestore, "--list", path)
	stderr := &tailBuffer{n: 4 << 10}
	cmd.Stderr = stderr
	out, err := cmd.Output()
	if err != nil {
		return 0, fmt.Errorf("read archive: pg_restore --list failed (%v): %s", exitText(err), stderr.lastError())
	}
	n := 0
	for _, l := range strings.Split(string(out), "\n") {
		if l != "" && !strings.HasPrefix(l, ";") {
			n++
		}
	}
	return n, nil
}

func exitText(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ProcessState.String()
	}
	return err.Error()
}

// diskFull rewrites an ENOSPC into a message that names the full place.
func diskFull(err error, dir string) error {
	if errors.Is(err, syscall.ENOSPC) {
		if dir == "" {
			dir = os.TempDir()
		}
		return fmt.Errorf("no space left on device in %s (the scratch directory holds pg_dump's archive of the tables ip2a-ops does not copy itself): %w", dir, err)
	}
	return err
}

func diskFullText(msg string) string {
	if strings.Contains(msg, "No space left on device") {
		return msg + " (the scratch directory is full; it holds pg_dump's archive of the tables ip2a-ops does not copy itself)"
	}
	return msg
}
