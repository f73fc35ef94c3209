package backup

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ip2a/ip2a-ops/pkg/pgcluster"
	"github.com/ip2a/ip2a-ops/pkg/progress"
	"github.com/ip2a/ip2a-ops/pkg/storage"
)

// ErrSourceDatabase is wrapped when a restore would overwrite the database
// the backup was taken from.
var ErrSourceDatabase = errors.New("refusing to restore into the backup's source database")

// ErrTargetNotEmpty is wrapped when the restore target already has tables.
var ErrTargetNotEmpty = errors.New("restore target is not empty")

// ErrTargetTooOld is wrapped when the restore target's server is older
// than the backup's source.
var ErrTargetTooOld = errors.New("restore target server is too old")

// TargetError refuses a restore target. It wraps ErrSourceDatabase,
// ErrTargetNotEmpty or ErrTargetTooOld, and names the backup and the
// source's server version so a caller can say what to do instead.
type TargetError struct {
	Err error
	// Reason is the sentinel when Err does not wrap it already.
	Reason      error
	BackupID    string
	SourceMajor int
}

func (e *TargetError) Error() string   { return e.Err.Error() }
func (e *TargetError) Unwrap() []error { return []error{e.Err, e.Reason} }

// RestoreOptions configure Restore.
type RestoreOptions struct {
	Store  storage.Store
	Prefix string
	// ID of the backup, or "latest".
	ID string
	// TargetURL is the database to restore into. Required.
	TargetURL string
	// Force restores into a non-empty target, dropping the objects the
	// backup has first (pg_restore --clean --if-exists). It never allows
	// the source database.
	Force bool
	// KeepOwners restores ownership and privileges; by default objects are
	// owned by the restoring user (roles rarely exist on the target).
	KeepOwners bool
	Identities [][]byte
	PgRestore  string
	WorkDir    string
	Jobs       int // pg_restore --jobs; default 2
	Logger     *slog.Logger
	// Progress, when set, counts the bytes of the stored object read and
	// restored, then the indexes and constraints phase.
	Progress *progress.Tracker
}

// Validate names the first bad field.
func (o RestoreOptions) Validate() error {
	switch {
	case o.Store == nil:
		return errors.New("Store: required")
	case o.TargetURL == "":
		return errors.New("TargetURL: required")
	case o.Jobs < 0:
		return fmt.Errorf("Jobs: %d is negative", o.Jobs)
	}
	return nil
}

// RestoreResult is what Restore did.
type RestoreResult struct {
	ID         string     `json:"id"`
	Target     string     `json:"target_database"`
	Entries    int        `json:"archive_entries"`
	Tables     int        `json:"tables_compared"`
	Rows       int64      `json:"rows"`
	Mismatches []Mismatch `json:"mismatches,omitempty"`
	Triggers   []string   `json:"audit_triggers,omitempty"`
	Seconds    float64    `json:"duration_seconds"`
}

// Restore restores a backup into TargetURL and compares every table's row
// count with the manifest. It refuses the backup's source database (same
// cluster system identifier and database name, whatever the URL says) and,
// without Force, a target that already has tables; both are usage errors.
func Restore(ctx context.Context, o RestoreOptions) (RestoreResult, error) {
	if err := o.Validate(); err != nil {
		return RestoreResult{}, fmt.Errorf("restore: %w", err)
	}
	t0 := time.Now()
	prefix := normPrefix(o.Prefix)
	m, err := resolveID(ctx, o.Store, prefix, o.ID)
	if err != nil {
		return RestoreResult{}, fmt.Errorf("restore: %w", err)
	}
	res := RestoreResult{ID: m.ID}
	pgRestore, _, err := findTool(ctx, "pg_restore", o.PgRestore, m.ServerMajor)
	if err != nil {
		return res, err
	}
	info, err := checkTarget(ctx, o.TargetURL, m, o.Force)
	res.Target = info.Database
	if err != nil {
		return res, err
	}
	wd, err := newWorkDir(o.WorkDir, "restore")
	if err != nil {
		return res, fmt.Errorf("restore: %w", err)
	}
	defer wd.remove()
	var check restoreCheck
	if isTar(m) {
		// Refuse a damaged object before touching the target: the stream
		// is checked again as it is restored.
		if v := checksumStored(ctx, o.Store, m, o.Progress); !v.OK {
			return res, fmt.Errorf("restore %s: %s", m.ID, v.Error)
		}
		_, err = loadTar(ctx, loadSpec{store: o.Store, manifest: m, identities: o.Identities, pgRestore: pgRestore, wd: wd,
			targetURL: o.TargetURL, jobs: o.Jobs, keepOwners: o.KeepOwners, clean: o.Force, progress: o.Progress})
		if err == nil {
			check, err = checkRestored(ctx, o.TargetURL, m)
		}
	} else {
		var raw string
		raw, err = fetch(ctx, o.Store, m, o.Identities, wd)
		if err != nil {
			return res, fmt.Errorf("restore %s: %w", m.ID, err)
		}
		check, err = restoreArchive(ctx, restoreSpec{pgRestore: pgRestore, archive: raw, targetURL: o.TargetURL, jobs: o.Jobs,
			keepOwners: o.KeepOwners, clean: o.Force, manifest: m})
	}
	res.Seconds = time.Since(t0).Seconds()
	if err != nil {
		return res, fmt.Errorf("restore %s: %w", m.ID, err)
	}
	res.Entries, res.Tables, res.Mismatches, res.Triggers, res.Rows = m.Dump.Entries, check.tables, check.mismatches, check.triggers, m.TotalRows()
	if err := check.err(m); err != nil {
		return res, fmt.Errorf("restore %s: %w", m.ID, err)
	}
	return res, nil
}

// checkTarget refuses the source database and, unless force, a non-empty
// target.
func checkTarget(ctx context.Context, targetURL string, m Manifest, force bool) (serverInfo, error) {
	conn, err := pgx.Connect(ctx, targetURL)
	if err != nil {
		return serverInfo{}, fmt.Errorf("restore: connect to target: %w", err)
	}
	defer conn.Close(ctx)
	info, err := readServerInfo(ctx, conn)
	if err != nil {
		return info, fmt.Errorf("restore: target: %w", err)
	}
	if info.SystemIdentifier == m.SystemIdentifier && info.Database == m.Database {
		return info, &TargetError{Err: fmt.Errorf("%w: target is database %q on the cluster the backup was taken from (system identifier %s)", ErrSourceDatabase, info.Database, info.SystemIdentifier),
			BackupID: m.ID, SourceMajor: m.ServerMajor}
	}
	if info.Major < m.ServerMajor {
		return info, &TargetError{Err: fmt.Errorf("restore: target server is PostgreSQL %d, older than the backup's source (%d)", info.Major, m.ServerMajor),
			Reason: ErrTargetTooOld, BackupID: m.ID, SourceMajor: m.ServerMajor}
	}
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM ("+userTablesSQL+") t").Scan(&n); err != nil {
		return info, fmt.Errorf("restore: inspect target: %w", err)
	}
	if n > 0 && !force {
		return info, &TargetError{Err: fmt.Errorf("%w: database %q has %d tables", ErrTargetNotEmpty, info.Database, n),
			BackupID: m.ID, SourceMajor: m.ServerMajor}
	}
	return info, nil
}

type restoreSpec struct {
	pgRestore  string
	archive    string
	targetURL  string
	jobs       int
	keepOwners bool
	clean      bool
	manifest   Manifest
}

// restoreCheck is what a restored database looked like against its manifest.
type restoreCheck struct {
	tables     int
	mismatches []Mismatch
	triggers   []string
}

func (c restoreCheck) err(m Manifest) error {
	var parts []string
	for i, mm := range c.mismatches {
		if i == 5 {
			parts = append(parts, fmt.Sprintf("and %d more", len(c.mismatches)-5))
			break
		}
		parts = append(parts, mm.String())
	}
	if miss := triggersMissing(m.AuditTriggers, c.triggers); len(miss) > 0 {
		parts = append(parts, "audit triggers missing after restore: "+strings.Join(miss, ", "))
	}
	if len(parts) == 0 {
		return nil
	}
	return fmt.Errorf("restored database differs from the backup: %s", strings.Join(parts, "; "))
}

// restoreArchive runs pg_restore in parallel from a custom-format backup's
// archive file, then counts every table of the target and compares with the
// manifest.
func restoreArchive(ctx context.Context, s restoreSpec) (restoreCheck, error) {
	if s.jobs <= 0 {
		s.jobs = 2
	}
	spec := loadSpec{targetURL: s.targetURL, pgRestore: s.pgRestore, keepOwners: s.keepOwners, clean: s.clean}
	if err := pgRestoreSection(ctx, spec, s.archive, "", s.jobs); err != nil {
		return restoreCheck{}, err
	}
	return checkRestored(ctx, s.targetURL, s.manifest)
}

// checkRestored counts every table of a restored database and compares
// the counts and the audit triggers with the manifest.
func checkRestored(ctx context.Context, targetURL string, m Manifest) (restoreCheck, error) {
	db, err := pgx.Connect(ctx, targetURL)
	if err != nil {
		return restoreCheck{}, fmt.Errorf("connect to restored database: %w", err)
	}
	defer db.Close(ctx)
	tx, err := db.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return restoreCheck{}, fmt.Errorf("count restored rows: %w", err)
	}
	defer tx.Rollback(ctx)
	got, err := countTables(ctx, tx)
	if err != nil {
		return restoreCheck{}, fmt.Errorf("count restored rows: %w", err)
	}
	trig, err := auditTriggers(ctx, tx)
	if err != nil {
		return restoreCheck{}, err
	}
	return restoreCheck{tables: len(got), mismatches: compareCounts(m.Tables, got), triggers: trig}, nil
}

// compareCounts returns every difference between the manifest's counts and
// the restored ones, in table order.
func compareCounts(want, got []TableCount) []Mismatch {
	g := map[string]int64{}
	for _, t := range got {
		g[t.QualifiedName()] = t.Rows
	}
	var out []Mismatch
	seen := map[string]bool{}
	for _, w := range want {
		name := w.QualifiedName()
		seen[name] = true
		n, ok := g[name]
		switch {
		case !ok:
			out = append(out, Mismatch{Table: name, Want: w.Rows, Got: -1})
		case n != w.Rows:
			out = append(out, Mismatch{Table: name, Want: w.Rows, Got: n})
		}
	}
	for _, t := range got {
		if !seen[t.QualifiedName()] {
			out = append(out, Mismatch{Table: t.QualifiedName(), Want: -1, Got: t.Rows})
		}
	}
	return out
}

// scratchDatabase makes an empty database for a restore drill: on the
// server at o.ScratchURL, or in a throwaway local cluster. drop removes it.
func scratchDatabase(ctx context.Context, o VerifyOptions, m Manifest) (string, func(), error) {
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := "ip2a_ops_drill_" + hex.EncodeToString(b[:])
	admin := o.ScratchURL
	var cl *pgcluster.Cluster
	if admin == "" {
		var err error
		cl, err = pgcluster.Start(ctx, pgcluster.Options{BinDir: o.PgBinDir, MinMajor: m.ServerMajor, Dir: ""})
		if err != nil {
			if errors.Is(err, pgcluster.ErrNoBinaries) {
				return "", nil, fmt.Errorf("restore drill: %w", err)
			}
			return "", nil, fmt.Errorf("restore drill: start a scratch cluster: %w", err)
		}
		admin = cl.URL("postgres")
	}
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		if cl != nil {
			_ = cl.Stop()
		}
		return "", nil, fmt.Errorf("restore drill: connect to scratch server: %w", err)
	}
	defer conn.Close(ctx)
	info, err := readServerInfo(ctx, conn)
	if err == nil && info.Major < m.ServerMajor {
		err = fmt.Errorf("scratch server is PostgreSQL %d, older than the backup's source (%d)", info.Major, m.ServerMajor)
	}
	if err == nil {
		_, err = conn.Exec(ctx, "CREATE DATABASE "+name+" TEMPLATE template0 ENCODING 'UTF8'")
	}
	if err != nil {
		if cl != nil {
			_ = cl.Stop()
		}
		return "", nil, fmt.Errorf("restore drill: create scratch database: %w", err)
	}
	u, err := url.Parse(admin)
	if err != nil {
		return "", nil, fmt.Errorf("restore drill: scratch URL: %w", err)
	}
	u.Path = "/" + name
	drop := func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if cl != nil {
			_ = cl.Stop()
			return
		}
		if c, err := pgx.Connect(dctx, admin); err == nil {
			_, _ = c.Exec(dctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			_ = c.Close(dctx)
		}
	}
	return u.String(), drop, nil
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
