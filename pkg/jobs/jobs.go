// Package jobs is the registry of ip2a-ops's jobs: each job is defined
// once here, with its name, its typed and versioned JSON arguments, the
// function that runs it, its default catch-up policy and the privileges
// doctor checks for it. The command line, the daemon and a task queue all
// run a job the same way, through Execute: decode the arguments, prepare,
// run under the ledger, classify the outcome.
package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ip2a/ip2a-ops/pkg/ledger"
	"github.com/ip2a/ip2a-ops/pkg/notify"
	"github.com/ip2a/ip2a-ops/pkg/progress"
	"github.com/ip2a/ip2a-ops/pkg/runner"
	"github.com/ip2a/ip2a-ops/pkg/scheduler"
	"github.com/ip2a/ip2a-ops/pkg/storage"
)

// Env is what a job may use: openers for the database, storage and ledger
// (so a job that needs none dials nothing), a logger, a clock and a few
// settings. Execute hands a run its own copy with Logger, SetSummary and
// Tracker set.
type Env struct {
	// DB opens the app database with ip2a-ops's schema current.
	DB func(ctx context.Context) (*pgxpool.Pool, error)
	// DatabaseURL is the resolved connection string.
	DatabaseURL func() (string, error)
	// DirectURL is the connection string for work that needs a session of
	// its own, which a transaction-pooling proxy does not give (pg_dump and
	// its snapshot): --direct-url when set, else DatabaseURL's.
	DirectURL func() (string, error)
	// Storage opens the store at url; "" means the bucket named by the
	// environment, and ErrNoStorage when there is none.
	Storage func(ctx context.Context, url string) (storage.Store, error)
	// Ledger opens the run ledger; Runner builds the runner over it.
	Ledger func(ctx context.Context) (*ledger.Ledger, error)
	Runner func(ctx context.Context) (*runner.Runner, error)
	// Schema holds ip2a-ops's own tables.
	Schema string
	Logger *slog.Logger
	Now    func() time.Time
	// Host names this machine in verification records.
	Host string
	// Version is ip2a-ops's version, recorded in manifests and workbooks.
	Version string
	// PgBinDir is a PostgreSQL bin directory for restore drills ("" finds one).
	PgBinDir string
	// SetSummary records a running job's summary so far (the ledger's
	// heartbeat writes it). Set by Execute; a no-op elsewhere.
	SetSummary func(summary any)
	// Tracker counts how far along the running job is (the heartbeat
	// stores it, a terminal may draw it). Set by Execute; nil elsewhere,
	// which the jobs accept.
	Tracker *progress.Tracker
	// SMTP is the mail server, sender and credentials of job's
	// notifications, for the reports' --email (nil: none configured).
	SMTP func(job string) notify.SMTP
}

func (e Env) summary(v any) {
	if e.SetSummary != nil {
		e.SetSummary(v)
	}
}

// ErrNoStorage is returned by Env.Storage when no storage is configured.
var ErrNoStorage = errors.New("no storage configured")

// noStorage is ErrNoStorage saying which storage is missing.
type noStorage string

func (n noStorage) Error() string        { return "no " + string(n) + " storage configured" }
func (n noStorage) Is(target error) bool { return target == ErrNoStorage }

// Privilege is one table privilege a job needs; doctor checks them.
type Privilege struct {
	Table     string
	Privilege string // SELECT, INSERT, UPDATE, DELETE
}

// Body is a prepared run: what runs under the ledger.
type Body[R any] func(ctx context.Context, env Env) (R, error)

// Def defines a job whose arguments are A and whose result is R.
type Def[A, R any] struct {
	// Name is the job's kind: its ledger name unless NameOf says otherwise,
	// and its key in the registry.
	Name string
	// Version of A's JSON; decoding refuses any other, so a task queued
	// before a change of the arguments fails loudly instead of running
	// with a changed meaning.
	Version int
	// CatchUp is the default catch-up policy of a crontab entry running it.
	CatchUp scheduler.CatchUp
	// Privileges are the table privileges doctor checks for it.
	Privileges []Privilege
	// NameOf, when set, is the ledger name of a run with these arguments.
	NameOf func(A) string
	// Files, when set, lists the files a run's result says it produced (a
	// workbook's path, a backup's key), for a queued run's output.
	Files func(R) []File
	// Prepare checks the arguments and opens what the run needs before
	// the run is recorded; its error means nothing ran (a usage or
	// configuration error, or the database did not answer).
	Prepare func(ctx context.Context, env Env, args A) (Body[R], error)
}

// Versioned is embedded in every job's arguments: the version of their
// JSON, set by Encode and checked by Decode.
type Versioned struct {
	V int `json:"v"`
}

func (v *Versioned) version() *int { return &v.V }

type versioned interface{ version() *int }

// Job is a Def without its type parameters, for the registry.
type Job interface {
	// Kind is the registry name (Def.Name).
	Kind() string
	// DefaultCatchUp is the entry's catch-up policy when it names none.
	DefaultCatchUp() scheduler.CatchUp
	// NeededPrivileges lists the privileges doctor checks.
	NeededPrivileges() []Privilege
	// LedgerName is the job name a run with these arguments records.
	LedgerName(args json.RawMessage) (string, error)
	// Validate decodes args strictly and checks their version.
	Validate(args json.RawMessage) error
	prepare(ctx context.Context, env Env, args json.RawMessage) (string, Body[any], error)
	files(result any) []File
}

// Kind implements Job.
func (d *Def[A, R]) Kind() string { return d.Name }

// DefaultCatchUp implements Job.
func (d *Def[A, R]) DefaultCatchUp() scheduler.CatchUp { return d.CatchUp }

// NeededPrivileges implements Job.
func (d *Def[A, R]) NeededPrivileges() []Privilege { return d.Privileges }

// Encode returns args as this job's JSON, with the version set.
func (d *Def[A, R]) Encode(args A) (json.RawMessage, error) {
	if v, ok := any(&args).(versioned); ok {
		*v.version() = d.Version
	}
	b, err := json.Marshal(args)
	if err != nil {
		return nil, fmt.Errorf("%s: encode arguments: %w", d.Name, err)
	}
	return b, nil
}

// Decode reads this job's JSON strictly: unknown fields and another
// version are usage errors (ErrArgs).
func (d *Def[A, R]) Decode(raw json.RawMessage) (A, error) {
	var a A
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		return a, &ArgsError{Job: d.Name, Err: err}
	}
	if dec.More() {
		return a, &ArgsError{Job: d.Name, Err: errors.New("trailing data after the arguments")}
	}
	if v, ok := any(&a).(versioned); ok && *v.version() != d.Version {
		return a, &ArgsError{Job: d.Name, Err: fmt.Errorf("arguments are version %d, this binary reads version %d", *v.version(), d.Version)}
	}
	return a, nil
}

// LedgerName implements Job.
func (d *Def[A, R]) LedgerName(raw json.RawMessage) (string, error) {
	a, err := d.Decode(raw)
	if err != nil {
		return "", err
	}
	return d.ledgerName(a), nil
}

func (d *Def[A, R]) ledgerName(a A) string {
	if d.NameOf != nil {
		if n := d.NameOf(a); n != "" {
			return n
		}
	}
	return d.Name
}

// Validate implements Job.
func (d *Def[A, R]) Validate(raw json.RawMessage) error {
	_, err := d.Decode(raw)
	return err
}

func (d *Def[A, R]) prepare(ctx context.Context, env Env, raw json.RawMessage) (string, Body[any], error) {
	a, err := d.Decode(raw)
	if err != nil {
		return "", nil, err
	}
	body, err := d.Prepare(ctx, env, a)
	if err != nil {
		return d.ledgerName(a), nil, err
	}
	return d.ledgerName(a), func(ctx context.Context, env Env) (any, error) { return body(ctx, env) }, nil
}

func (d *Def[A, R]) files(result any) []File {
	r, ok := result.(R)
	if !ok || d.Files == nil {
		return nil
	}
	return d.Files(r)
}

// Run prepares and runs the job once, without the ledger (tests, tools).
func (d *Def[A, R]) Run(ctx context.Context, env Env, args A) (R, error) {
	body, err := d.Prepare(ctx, env, args)
	if err != nil {
		var zero R
		return zero, err
	}
	return body(ctx, env)
}

// ArgsError is a job's JSON arguments that cannot be read: a usage error,
// never worth retrying.
type ArgsError struct {
	Job string
	Err error
}

func (e *ArgsError) Error() string { return fmt.Sprintf("%s: arguments: %v", e.Job, e.Err) }
func (e *ArgsError) Unwrap() error { return e.Err }

// All lists every job, by name.
func All() []Job {
	all := []Job{Backup, BackupVerify, BackupRestore, BackupPrune,
		AuditArchive, AuditVerify, AuditPurge, AuditInstallGuard, AuditHold, AuditRelease, AuditRestore,
		IntegrityCheck, GrantReport, MembershipReport, DuesReport, Cleanup, Sleep}
	sort.Slice(all, func(i, j int) bool { return all[i].Kind() < all[j].Kind() })
	return all
}

// Lookup returns the job named kind.
func Lookup(kind string) (Job, bool) {
	j, ok := byKind()[kind]
	return j, ok
}

// byKind is All by kind, built once: a worker looks up every task's job.
var byKind = sync.OnceValue(func() map[string]Job {
	m := map[string]Job{}
	for _, j := range All() {
		m[j.Kind()] = j
	}
	return m
})
