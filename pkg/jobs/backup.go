package jobs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/ip2a/ip2a-ops/pkg/backup"
	"github.com/ip2a/ip2a-ops/pkg/dbconn"
	"github.com/ip2a/ip2a-ops/pkg/exitcode"
	"github.com/ip2a/ip2a-ops/pkg/ledger"
	"github.com/ip2a/ip2a-ops/pkg/scheduler"
	"github.com/ip2a/ip2a-ops/pkg/storage"
)

// BackupStore says where backups live; every backup job has it.
type BackupStore struct {
	Storage string `json:"storage,omitempty"`
	Prefix  string `json:"prefix,omitempty"`
	WorkDir string `json:"work_dir,omitempty"`
	// PgRestore is the pg_restore binary ("" finds one).
	PgRestore string `json:"pg_restore,omitempty"`
	// Identities are age identity files, for encrypted backups.
	Identities []string `json:"identities,omitempty"`
}

// OpenBackupStore opens the backup storage: a usage error naming the
// Storage field when none is configured or it cannot be opened.
func OpenBackupStore(ctx context.Context, env Env, s BackupStore) (storage.Store, error) {
	st, err := env.Storage(ctx, s.Storage)
	if errors.Is(err, ErrNoStorage) {
		return nil, &exitcode.Error{Err: noStorage("backup"), Outcome: exitcode.OutcomeUsage, Field: "Storage.None"}
	}
	if err != nil {
		return nil, exitcode.FieldUsage("Storage", err)
	}
	return st, nil
}

func (s BackupStore) identities() ([][]byte, error) {
	var out [][]byte
	for _, p := range s.Identities {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, exitcode.FieldUsage("Identities", fmt.Errorf("read identity: %v", err))
		}
		out = append(out, b)
	}
	return out, nil
}

// BackupArgs are the arguments of backup (version 1).
type BackupArgs struct {
	Versioned
	BackupStore
	PgDump         string        `json:"pg_dump,omitempty"`
	Recipients     []string      `json:"recipients,omitempty"`
	RecipientFiles []string      `json:"recipient_files,omitempty"`
	Compression    int           `json:"compression,omitempty"`
	Threads        int           `json:"threads,omitempty"`
	Jobs           int           `json:"jobs,omitempty"`
	PgDumpOnly     bool          `json:"pg_dump_only,omitempty"`
	LockWait       time.Duration `json:"lock_wait_timeout,omitempty"`
	Verify         string        `json:"verify,omitempty"`
	// Prune applies Policy after a successful backup.
	Prune  bool          `json:"prune,omitempty"`
	Policy backup.Policy `json:"policy"`
}

// BackupResult is the summary of backup: the backup, then the pruning
// when asked for.
type BackupResult struct {
	backup.Result
	Prune *backup.PruneResult `json:"prune,omitempty"`
}

// Backup makes a verified backup and, with Prune, applies the retention
// policy after it.
var Backup = &Def[BackupArgs, BackupResult]{
	Name: "backup", Version: 1,
	Files: func(r BackupResult) []File {
		if r.Key == "" || r.Stage != "done" {
			return nil
		}
		return []File{{Store: r.Store, Key: r.Key}}
	},
	CatchUp: scheduler.CatchUp{Window: 24 * time.Hour},
	Prepare: func(ctx context.Context, env Env, a BackupArgs) (Body[BackupResult], error) {
		recipients := append([]string(nil), a.Recipients...)
		for _, p := range a.RecipientFiles {
			b, err := os.ReadFile(p)
			if err != nil {
				return nil, exitcode.FieldUsage("RecipientFiles", fmt.Errorf("read recipients: %v", err))
			}
			recipients = append(recipients, strings.Split(string(b), "\n")...)
		}
		if a.Prune {
			if err := a.Policy.Validate(); err != nil {
				return nil, err
			}
		}
		st, err := OpenBackupStore(ctx, env, a.BackupStore)
		if err != nil {
			return nil, err
		}
		dbURL, err := env.DirectURL() // pg_dump and the snapshot need a session
		if err != nil {
			return nil, err
		}
		copyMin := int64(0)
		if a.PgDumpOnly {
			copyMin = -1
		}
		opts := backup.Options{DatabaseURL: dbURL, Store: st, Prefix: a.Prefix, PgDump: a.PgDump, PgRestore: a.PgRestore, WorkDir: a.WorkDir,
			Recipients: recipients, Level: a.Compression, Threads: a.Threads, Jobs: a.Jobs, CopyMinBytes: copyMin,
			LockWaitTimeout: a.LockWait, Verify: backup.Level(a.Verify), Tool: "ip2a-ops " + env.Version, Now: env.Now}
		if err := opts.Validate(); err != nil {
			return nil, err
		}
		return func(ctx context.Context, env Env) (BackupResult, error) {
			opts.Logger, opts.Progress = env.Logger, env.Tracker
			res, err := backup.Run(ctx, opts)
			out := BackupResult{Result: res}
			if err != nil || !a.Prune {
				return out, err
			}
			env.summary(out)
			pr, err := backup.Prune(ctx, backup.PruneOptions{Store: st, Prefix: a.Prefix, Policy: a.Policy, Apply: true, Now: env.Now,
				Progress: env.Tracker})
			out.Prune = &pr
			return out, err
		}, nil
	},
}

// BackupVerifyArgs are the arguments of backup-verify (version 1).
type BackupVerifyArgs struct {
	Versioned
	BackupStore
	// ID is a backup id or "latest".
	ID         string `json:"id"`
	Level      string `json:"level"`
	ScratchURL string `json:"scratch_url,omitempty"`
	Jobs       int    `json:"jobs,omitempty"`
}

// BackupVerify checks a backup at a level and records the verdict.
var BackupVerify = &Def[BackupVerifyArgs, backup.VerifyResult]{
	Name: "backup-verify", Version: 1,
	CatchUp: scheduler.CatchUp{Window: 24 * time.Hour},
	Prepare: func(ctx context.Context, env Env, a BackupVerifyArgs) (Body[backup.VerifyResult], error) {
		switch backup.Level(a.Level) {
		case backup.LevelChecksum, backup.LevelContents, backup.LevelRestore:
		default:
			return nil, exitcode.FieldUsage("Level", fmt.Errorf("invalid level %q", a.Level))
		}
		ids, err := a.identities()
		if err != nil {
			return nil, err
		}
		st, err := OpenBackupStore(ctx, env, a.BackupStore)
		if err != nil {
			return nil, err
		}
		id := a.ID
		if id == "" {
			id = "latest"
		}
		return func(ctx context.Context, env Env) (backup.VerifyResult, error) {
			return backup.Verify(ctx, backup.VerifyOptions{Store: st, Prefix: a.Prefix, ID: id, Level: backup.Level(a.Level),
				Identities: ids, ScratchURL: a.ScratchURL, PgBinDir: env.PgBinDir, PgRestore: a.PgRestore,
				WorkDir: a.WorkDir, Jobs: a.Jobs, Record: true, By: env.Host, Now: env.Now, Logger: env.Logger, Progress: env.Tracker})
		}, nil
	},
}

// BackupRestoreArgs are the arguments of backup-restore (version 1).
type BackupRestoreArgs struct {
	Versioned
	BackupStore
	ID         string `json:"id"`
	TargetURL  string `json:"target_url"`
	Force      bool   `json:"force,omitempty"`
	KeepOwners bool   `json:"keep_owners,omitempty"`
	Jobs       int    `json:"jobs,omitempty"`
}

// BackupRestore restores a backup into another database.
var BackupRestore = &Def[BackupRestoreArgs, backup.RestoreResult]{
	Name: "backup-restore", Version: 1,
	Prepare: func(ctx context.Context, env Env, a BackupRestoreArgs) (Body[backup.RestoreResult], error) {
		ids, err := a.identities()
		if err != nil {
			return nil, err
		}
		st, err := OpenBackupStore(ctx, env, a.BackupStore)
		if err != nil {
			return nil, err
		}
		opts := backup.RestoreOptions{Store: st, Prefix: a.Prefix, ID: a.ID, TargetURL: a.TargetURL,
			Force: a.Force, KeepOwners: a.KeepOwners, Identities: ids, PgRestore: a.PgRestore, WorkDir: a.WorkDir, Jobs: a.Jobs}
		if err := opts.Validate(); err != nil {
			return nil, exitcode.WithOutcome(err, exitcode.OutcomeUsage)
		}
		return func(ctx context.Context, env Env) (backup.RestoreResult, error) {
			opts.Logger, opts.Progress = env.Logger, env.Tracker
			res, err := backup.Restore(ctx, opts)
			if err == nil {
				err = abandonSourceRuns(ctx, env, a.TargetURL, res.ID)
			}
			return res, err
		}, nil
	},
}

// abandonSourceRuns marks abandoned the runs that were going on in the
// source when the backup was taken (the backup's own at least): in the
// restored ledger they run nowhere and must not block the first run there.
func abandonSourceRuns(ctx context.Context, env Env, targetURL, id string) error {
	pool, err := dbconn.Open(ctx, targetURL, dbconn.Options{MaxConns: 1})
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer pool.Close()
	n, err := ledger.New(pool, env.Schema).AbandonRunning(ctx, "running in the source database when backup "+id+" was taken; restored by ip2a-ops backup restore")
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if n > 0 {
		env.Logger.Info("marked the source's running runs abandoned in the restored ledger", "runs", n)
	}
	return nil
}

// BackupPruneArgs are the arguments of backup-prune (version 1).
type BackupPruneArgs struct {
	Versioned
	BackupStore
	Policy backup.Policy `json:"policy"`
	Apply  bool          `json:"apply,omitempty"`
}

// BackupPrune applies the retention policy (a dry run unless Apply).
var BackupPrune = &Def[BackupPruneArgs, backup.PruneResult]{
	Name: "backup-prune", Version: 1,
	Prepare: func(ctx context.Context, env Env, a BackupPruneArgs) (Body[backup.PruneResult], error) {
		if err := a.Policy.Validate(); err != nil {
			return nil, err
		}
		st, err := OpenBackupStore(ctx, env, a.BackupStore)
		if err != nil {
			return nil, err
		}
		return func(ctx context.Context, env Env) (backup.PruneResult, error) {
			return backup.Prune(ctx, backup.PruneOptions{Store: st, Prefix: a.Prefix, Policy: a.Policy, Apply: a.Apply, Now: env.Now,
				Progress: env.Tracker})
		}, nil
	},
}
