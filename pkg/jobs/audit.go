package jobs

import (
	"context"
	"errors"

	"github.com/ip2a/ip2a-ops/pkg/audit"
	"github.com/ip2a/ip2a-ops/pkg/exitcode"
	"github.com/ip2a/ip2a-ops/pkg/scheduler"
)

// AuditStore is what every audit-archive job shares: where the archives
// live and the retention policy.
type AuditStore struct {
	Storage      string    `json:"storage,omitempty"`
	Prefix       string    `json:"prefix,omitempty"`
	ArchiveAfter audit.Age `json:"archive_after"`
	Retain       audit.Age `json:"retain"`
	TempDir      string    `json:"temp_dir,omitempty"`
}

// OpenAudit checks the retention policy (before dialling anything, so a
// bad policy is a usage error even with the database down) and opens the
// database and, withStore, the archive storage.
func OpenAudit(ctx context.Context, env Env, s AuditStore, withStore bool) (audit.Config, error) {
	if err := audit.CheckPolicy(env.Now(), s.ArchiveAfter, s.Retain, audit.Month{}); err != nil {
		return audit.Config{}, err
	}
	cfg := audit.Config{Schema: env.Schema, Prefix: s.Prefix, Now: env.Now, TempDir: s.TempDir, Logger: env.Logger}
	if withStore {
		st, err := env.Storage(ctx, s.Storage)
		if errors.Is(err, ErrNoStorage) {
			return cfg, &exitcode.Error{Err: noStorage("archive"), Outcome: exitcode.OutcomeUsage, Field: "Storage.None"}
		}
		if err != nil {
			return cfg, exitcode.FieldUsage("Storage", err)
		}
		cfg.Store = st
	}
	pool, err := env.DB(ctx)
	if err != nil {
		return cfg, err
	}
	cfg.Pool = pool
	return cfg, nil
}

func usage(err error) error {
	if err == nil {
		return nil
	}
	return exitcode.WithOutcome(err, exitcode.OutcomeUsage)
}

// AuditArchiveArgs are the arguments of audit-archive (version 1).
type AuditArchiveArgs struct {
	Versioned
	AuditStore
	// Until, when set, is the newest month to archive.
	Until       audit.Month `json:"until"`
	DryRun      bool        `json:"dry_run,omitempty"`
	KeepOnline  bool        `json:"keep_online,omitempty"`
	ObjectLock  bool        `json:"object_lock,omitempty"`
	DeleteBatch int64       `json:"delete_batch,omitempty"`
}

// AuditArchive archives, verifies and (with the guard) deletes every
// eligible month of audit_logs.
var AuditArchive = &Def[AuditArchiveArgs, audit.RunResult]{
	Name: "audit-archive", Version: 1,
	CatchUp:    scheduler.CatchUp{Once: true},
	Privileges: []Privilege{{"audit_logs", "SELECT"}, {"audit_logs", "DELETE"}},
	Prepare: func(ctx context.Context, env Env, a AuditArchiveArgs) (Body[audit.RunResult], error) {
		opts := audit.RunOptions{ArchiveAfter: a.ArchiveAfter, Retain: a.Retain, DryRun: a.DryRun, KeepOnline: a.KeepOnline,
			ObjectLock: a.ObjectLock, DeleteBatch: a.DeleteBatch, Until: a.Until}
		if a.DeleteBatch < 0 {
			return nil, exitcode.Fieldf("DeleteBatch", "must be positive")
		}
		if err := audit.CheckPolicy(env.Now(), opts.ArchiveAfter, opts.Retain, opts.Until); err != nil {
			return nil, usage(err)
		}
		cfg, err := OpenAudit(ctx, env, a.AuditStore, !a.DryRun)
		if err != nil {
			return nil, err
		}
		opts.Config = cfg
		if err := opts.Validate(); err != nil {
			return nil, usage(err)
		}
		return func(ctx context.Context, env Env) (audit.RunResult, error) {
			opts.Logger = env.Logger
			opts.ProgressFunc = func(r audit.RunResult) { env.summary(r) }
			opts.Tracker = env.Tracker
			return audit.Run(ctx, opts)
		}, nil
	},
}

// AuditStoreArgs are the arguments of the audit jobs that need nothing
// else (verify, install-guard; version 1).
type AuditStoreArgs struct {
	Versioned
	AuditStore
}

// AuditVerify reads every archive back and checks it and the chain.
var AuditVerify = &Def[AuditStoreArgs, audit.VerifyResult]{
	Name: "audit-archive-verify", Version: 1,
	Prepare: func(ctx context.Context, env Env, a AuditStoreArgs) (Body[audit.VerifyResult], error) {
		cfg, err := OpenAudit(ctx, env, a.AuditStore, true)
		if err != nil {
			return nil, err
		}
		return func(ctx context.Context, env Env) (audit.VerifyResult, error) {
			cfg.Logger = env.Logger
			return audit.Verify(ctx, audit.VerifyOptions{Config: cfg})
		}, nil
	},
}

// AuditPurgeArgs are the arguments of audit-archive-purge (version 1).
type AuditPurgeArgs struct {
	Versioned
	AuditStore
	Apply bool `json:"apply,omitempty"`
}

// AuditPurge deletes archives past retention, except months on hold.
var AuditPurge = &Def[AuditPurgeArgs, audit.PurgeResult]{
	Name: "audit-archive-purge", Version: 1,
	Prepare: func(ctx context.Context, env Env, a AuditPurgeArgs) (Body[audit.PurgeResult], error) {
		cfg, err := OpenAudit(ctx, env, a.AuditStore, true)
		if err != nil {
			return nil, err
		}
		return func(ctx context.Context, env Env) (audit.PurgeResult, error) {
			cfg.Logger = env.Logger
			return audit.Purge(ctx, audit.PurgeOptions{Config: cfg, Retain: a.Retain, ArchiveAfter: a.ArchiveAfter, Apply: a.Apply})
		}, nil
	},
}

// AuditInstallGuard installs the triggers that let ip2a-ops delete
// verified months while audit_logs stays immutable for everyone else.
var AuditInstallGuard = &Def[AuditStoreArgs, audit.GuardStatus]{
	Name: "audit-archive-install-guard", Version: 1,
	Prepare: func(ctx context.Context, env Env, a AuditStoreArgs) (Body[audit.GuardStatus], error) {
		cfg, err := OpenAudit(ctx, env, a.AuditStore, false)
		if err != nil {
			return nil, err
		}
		return func(ctx context.Context, env Env) (audit.GuardStatus, error) {
			cfg.Logger = env.Logger
			return audit.InstallGuard(ctx, cfg)
		}, nil
	},
}

// AuditHoldArgs are the arguments of audit-archive-hold and
// audit-archive-release (version 1).
type AuditHoldArgs struct {
	Versioned
	AuditStore
	Month  audit.Month `json:"month"`
	Reason string      `json:"reason,omitempty"`
}

func holdJob(name string, place bool) *Def[AuditHoldArgs, audit.Hold] {
	return &Def[AuditHoldArgs, audit.Hold]{
		Name: name, Version: 1,
		Prepare: func(ctx context.Context, env Env, a AuditHoldArgs) (Body[audit.Hold], error) {
			cfg, err := OpenAudit(ctx, env, a.AuditStore, false)
			if err != nil {
				return nil, err
			}
			o := audit.HoldOptions{Config: cfg, Month: a.Month, Reason: a.Reason}
			if err := o.Validate(place); err != nil {
				return nil, usage(err)
			}
			return func(ctx context.Context, env Env) (audit.Hold, error) {
				o.Logger = env.Logger
				if place {
					return audit.PlaceHold(ctx, o)
				}
				return audit.ReleaseHold(ctx, o)
			}, nil
		},
	}
}

// AuditHold puts a month on legal hold; AuditRelease ends the hold.
var (
	AuditHold    = holdJob("audit-archive-hold", true)
	AuditRelease = holdJob("audit-archive-release", false)
)

// AuditRestoreArgs are the arguments of audit-archive-restore (version 1).
type AuditRestoreArgs struct {
	Versioned
	AuditStore
	Month audit.Month `json:"month"`
	Into  string      `json:"into"`
}

// AuditRestore verifies a month's archive and loads it into a table.
var AuditRestore = &Def[AuditRestoreArgs, audit.RestoreResult]{
	Name: "audit-archive-restore", Version: 1,
	Prepare: func(ctx context.Context, env Env, a AuditRestoreArgs) (Body[audit.RestoreResult], error) {
		if err := audit.CheckTable(a.Into); err != nil {
			return nil, usage(err)
		}
		cfg, err := OpenAudit(ctx, env, a.AuditStore, true)
		if err != nil {
			return nil, err
		}
		o := audit.RestoreOptions{Config: cfg, Month: a.Month, Into: a.Into}
		if err := o.Validate(); err != nil {
			return nil, usage(err)
		}
		return func(ctx context.Context, env Env) (audit.RestoreResult, error) {
			o.Logger = env.Logger
			return audit.Restore(ctx, o)
		}, nil
	},
}
