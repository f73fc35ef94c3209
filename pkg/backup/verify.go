package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"time"

	"github.com/ip2a/ip2a-ops/pkg/progress"
	"github.com/ip2a/ip2a-ops/pkg/storage"
)

// Level is how deep a verification goes.
type Level string

// Verification levels, each including the ones before it.
const (
	LevelNone     Level = "none"
	LevelChecksum Level = "checksum" // re-hash the stored object
	LevelContents Level = "contents" // decrypt, decompress and decode every archive entry
	LevelRestore  Level = "restore"  // restore into a scratch database and compare row counts and triggers
)

// ErrVerifyFailed is wrapped when a backup does not pass its verification.
var ErrVerifyFailed = errors.New("verification failed")

// VerifyOptions configure Verify.
type VerifyOptions struct {
	Store  storage.Store
	Prefix string
	// ID of the backup, or "latest"/"" for the newest.
	ID    string
	Level Level // default LevelChecksum
	// Identities decrypt an encrypted backup (contents and files of age
	// identity files).
	Identities [][]byte
	// ScratchURL, for LevelRestore, is a server where a scratch database is
	// created, restored into and dropped; empty starts a throwaway local
	// cluster (needs the PostgreSQL server binaries).
	ScratchURL string
	// PgBinDir holds initdb/pg_ctl for the throwaway cluster; empty finds
	// them.
	PgBinDir  string
	PgRestore string
	WorkDir   string
	Jobs      int // pg_restore --jobs; default 2
	// Record writes the result into the manifest (a new revision); the
	// command always sets it.
	Record bool
	By     string
	Now    func() time.Time
	Logger *slog.Logger
	// Progress, when set, counts the bytes of the stored object read.
	Progress *progress.Tracker
}

// Validate names the first bad field.
func (o VerifyOptions) Validate() error {
	switch {
	case o.Store == nil:
		return errors.New("Store: required")
	case o.Level != "" && o.Level != LevelChecksum && o.Level != LevelContents && o.Level != LevelRestore:
		return fmt.Errorf("Level: %q: want checksum, contents or restore", o.Level)
	case o.Jobs < 0:
		return fmt.Errorf("Jobs: %d is negative", o.Jobs)
	}
	return nil
}

// VerifyResult is the outcome of Verify.
type VerifyResult struct {
	ID      string  `json:"id"`
	Level   Level   `json:"level"`
	OK      bool    `json:"ok"`
	Error   string  `json:"error,omitempty"`
	Seconds float64 `json:"duration_seconds"`
	// Entries decoded (contents and restore levels).
	Entries int `json:"archive_entries,omitempty"`
	// Tables compared and the differences found (restore level).
	Tables     int        `json:"tables_compared,omitempty"`
	Mismatches []Mismatch `json:"mismatches,omitempty"`
	// TriggersChecked lists the audit triggers found after the restore.
	TriggersChecked []string `json:"audit_triggers,omitempty"`
	Recorded        bool     `json:"recorded"`
	RestoreSeconds  float64  `json:"restore_seconds,omitempty"`
}

// Mismatch is one table whose restored row count differs from the manifest
// (Want -1: not in the backup; Got -1: missing after the restore).
type Mismatch struct {
	Table string `json:"table"`
	Want  int64  `json:"want"`
	Got   int64  `json:"got"`
}

func (m Mismatch) String() string {
	switch {
	case m.Got < 0:
		return fmt.Sprintf("%s missing after restore (backup has %d rows)", m.Table, m.Want)
	case m.Want < 0:
		return fmt.Sprintf("%s not in the backup but present after restore (%d rows)", m.Table, m.Got)
	}
	return fmt.Sprintf("%s has %d rows, backup recorded %d", m.Table, m.Got, m.Want)
}

// Verify checks one backup at the asked level and records the outcome in
// its manifest. A backup that does not pass returns an error wrapping
// ErrVerifyFailed (the result says why); a backup that cannot be read at all
// returns the reading error. Either way the failure is recorded when the
// manifest can be written.
func Verify(ctx context.Context, o VerifyOptions) (VerifyResult, error) {
	if err := o.Validate(); err != nil {
		return VerifyResult{}, fmt.Errorf("verify: %w", err)
	}
	if o.Level == "" {
		o.Level = LevelChecksum
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	prefix := normPrefix(o.Prefix)
	m, err := resolveID(ctx, o.Store, prefix, o.ID)
	if err != nil {
		return VerifyResult{}, fmt.Errorf("verify: %w", err)
	}
	res := VerifyResult{ID: m.ID, Level: o.Level}
	t0 := time.Now()
	var v Verification
	switch o.Level {
	case LevelChecksum:
		v = checksumStored(ctx, o.Store, m, o.Progress)
	default:
		v = verifyDeep(ctx, o, m, &res)
	}
	if ctx.Err() != nil {
		return res, fmt.Errorf("verify %s: %w", m.ID, ctx.Err())
	}
	res.Seconds = time.Since(t0).Seconds()
	v.Level, v.At, v.Seconds, v.RunnerID = o.Level, o.Now().UTC(), res.Seconds, o.By
	res.OK, res.Error = v.OK, v.Error
	if o.Record {
		// Re-read so a verification recorded meanwhile is kept.
		cur, err := ReadManifest(ctx, o.Store, prefix, m.ID)
		if err != nil {
			return res, fmt.Errorf("verify %s: record result: %w", m.ID, err)
		}
		cur.Verifications = append(cur.Verifications, v)
		if err := writeManifest(ctx, o.Store, prefix, &cur); err != nil {
			return res, fmt.Errorf("verify %s: record result: %w", m.ID, err)
		}
		// A prune may have deleted this backup between the read above and
		// the write (it deletes the manifest, then the object): the write
		// would bring back a manifest without its object. The object's
		// absence now means the prune won; take the manifest away again.
		if _, err := o.Store.Stat(ctx, cur.Object.Key); errors.Is(err, storage.ErrNotExist) {
			if derr := o.Store.Delete(ctx, manifestKey(prefix, cur.ID)); derr != nil {
				return res, fmt.Errorf("verify %s: the backup was pruned while being verified, and removing its manifest again failed: %w", m.ID, derr)
			}
			return res, fmt.Errorf("verify %s: %w: it was pruned while being verified", m.ID, ErrNotFound)
		} else if err != nil {
			return res, fmt.Errorf("verify %s: record result: %w", m.ID, err)
		}
		res.Recorded = true
	}
	if !v.OK {
		return res, fmt.Errorf("verify %s at level %s: %s: %w", m.ID, o.Level, v.Error, ErrVerifyFailed)
	}
	return res, nil
}

// checksumStored re-reads the stored object and compares its size and
// SHA-256 with the manifest.
func checksumStored(ctx context.Context, st storage.Store, m Manifest, tr *progress.Tracker) Verification {
	v := Verification{Level: LevelChecksum}
	rc, err := st.Get(ctx, m.Object.Key)
	if err != nil {
		v.Error = fmt.Sprintf("read %s: %v", m.Object.Key, err)
		return v
	}
	defer rc.Close()
	tr.Phase("checksum", progress.Bytes, m.Object.Size)
	hr := newHashingReader(progress.Reader(storage.ContextReader(ctx, rc), tr))
	if _, err := io.Copy(io.Discard, hr); err != nil {
		v.Error = fmt.Sprintf("read %s: %v", m.Object.Key, err)
		return v
	}
	if err := compareStored(m, hr.n, hr.sum()); err != nil {
		v.Error = err.Error()
		return v
	}
	v.OK = true
	v.Detail = fmt.Sprintf("%d bytes, sha256 %s", hr.n, hr.sum())
	return v
}

func compareStored(m Manifest, size int64, sum string) error {
	if size != m.Object.Size || sum != m.Object.SHA256 {
		return fmt.Errorf("%w: stored object %s is %d bytes with sha256 %s, manifest says %d bytes with sha256 %s",
			ErrChecksumMismatch, m.Object.Key, size, sum, m.Object.Size, m.Object.SHA256)
	}
	return nil
}

// fetch downloads, checks and decodes the stored object into a raw archive
// file in wd. The stored hash is compared before anything else, so a
// corrupted object is reported as such.
func fetch(ctx context.Context, st storage.Store, m Manifest, identities [][]byte, wd *workDir) (string, error) {
	ids, err := ParseIdentities(identities...)
	if err != nil {
		return "", err
	}
	rc, err := st.Get(ctx, m.Object.Key)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", m.Object.Key, err)
	}
	defer rc.Close()
	path := wd.file("dump.pgc")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return "", err
	}
	dres, derr := decode(ctx, rc, f, ids, m.Object.Encryption == "age")
	if cerr := f.Close(); derr == nil && cerr != nil {
		derr = cerr
	}
	if ctx.Err() != nil {
		return "", ctx.Err()
	}
	if dres.storedSHA != "" {
		if err := compareStored(m, dres.storedSize, dres.storedSHA); err != nil {
			return "", err
		}
	}
	if derr != nil {
		return "", diskFull(derr, "")
	}
	if dres.rawSize != m.Dump.Size || dres.rawSHA != m.Dump.SHA256 {
		return "", fmt.Errorf("%w: decoded archive is %d bytes with sha256 %s, manifest says %d bytes with sha256 %s",
			ErrChecksumMismatch, dres.rawSize, dres.rawSHA, m.Dump.Size, m.Dump.SHA256)
	}
	return path, nil
}

// verifyDeep runs the contents or restore level.
func verifyDeep(ctx context.Context, o VerifyOptions, m Manifest, res *VerifyResult) Verification {
	v := Verification{}
	fail := func(err error) Verification { v.Error = oneLine(err.Error()); return v }
	pgRestore, _, err := findTool(ctx, "pg_restore", o.PgRestore, m.ServerMajor)
	if err != nil {
		return fail(err)
	}
	wd, err := newWorkDir(o.WorkDir, "verify")
	if err != nil {
		return fail(err)
	}
	defer wd.remove()
	if isTar(m) {
		return verifyTar(ctx, o, m, res, pgRestore, wd)
	}
	raw, err := fetch(ctx, o.Store, m, o.Identities, wd)
	if err != nil {
		return fail(err)
	}
	entries, err := countEntries(ctx, pgRestore, raw)
	if err != nil {
		return fail(err)
	}
	res.Entries = entries
	if entries != m.Dump.Entries {
		return fail(fmt.Errorf("archive has %d entries, manifest says %d", entries, m.Dump.Entries))
	}
	if o.Level == LevelContents {
		// Turning the archive into a script reads and decodes every entry,
		// table data included.
		if err := decodeArchive(ctx, pgRestore, raw); err != nil {
			return fail(err)
		}
		v.OK = true
		v.Detail = fmt.Sprintf("%d entries decoded", entries)
		return v
	}
	return drill(ctx, o, m, res, func(target string) (restoreCheck, int, error) {
		check, err := restoreArchive(ctx, restoreSpec{pgRestore: pgRestore, archive: raw, targetURL: target, jobs: o.Jobs, manifest: m})
		return check, entries, err
	})
}

// verifyTar runs the contents or restore level on a tar-format backup, in
// one pass over the stored object.
func verifyTar(ctx context.Context, o VerifyOptions, m Manifest, res *VerifyResult, pgRestore string, wd *workDir) Verification {
	v := Verification{}
	fail := func(err error) Verification { v.Error = oneLine(err.Error()); return v }
	spec := loadSpec{store: o.Store, manifest: m, identities: o.Identities, pgRestore: pgRestore, wd: wd, jobs: o.Jobs,
		progress: o.Progress}
	if o.Level == LevelContents {
		lr, err := loadTar(ctx, spec)
		res.Entries = lr.entries
		if err != nil {
			return fail(err)
		}
		var rows int64
		for _, n := range lr.rows {
			rows += n
		}
		v.OK = true
		v.Detail = fmt.Sprintf("%d entries decoded; %d copied rows match the manifest", lr.entries, rows)
		return v
	}
	return drill(ctx, o, m, res, func(target string) (restoreCheck, int, error) {
		spec.targetURL = target
		lr, err := loadTar(ctx, spec)
		if err != nil {
			return restoreCheck{}, lr.entries, err
		}
		check, err := checkRestored(ctx, target, m)
		return check, lr.entries, err
	})
}

// drill restores into a scratch database with restore and records the
// comparison with the manifest.
func drill(ctx context.Context, o VerifyOptions, m Manifest, res *VerifyResult, restore func(target string) (restoreCheck, int, error)) Verification {
	v := Verification{}
	t := time.Now()
	target, drop, err := scratchDatabase(ctx, o, m)
	if err != nil {
		v.Error = oneLine(err.Error())
		return v
	}
	defer drop()
	check, entries, err := restore(target)
	res.RestoreSeconds = time.Since(t).Seconds()
	res.Entries = entries
	if err != nil {
		v.Error = oneLine(err.Error())
		return v
	}
	res.Tables, res.Mismatches, res.TriggersChecked = check.tables, check.mismatches, check.triggers
	if err := check.err(m); err != nil {
		v.Error = oneLine(err.Error())
		return v
	}
	v.OK = true
	v.Detail = fmt.Sprintf("restored %d entries; %d tables and %d rows match; audit triggers %v", entries, check.tables, m.TotalRows(), check.triggers)
	return v
}

// triggersMissing returns the audit triggers the backup had that the
// restored database lacks.
func triggersMissing(want, got []string) []string {
	var miss []string
	for _, w := range want {
		if !slices.Contains(got, w) {
			miss = append(miss, w)
		}
	}
	return miss
}
