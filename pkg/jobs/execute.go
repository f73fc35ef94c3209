package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/ip2a/ip2a-ops/pkg/audit"
	"github.com/ip2a/ip2a-ops/pkg/backup"
	"github.com/ip2a/ip2a-ops/pkg/exitcode"
	"github.com/ip2a/ip2a-ops/pkg/migrate"
	"github.com/ip2a/ip2a-ops/pkg/pgcluster"
	"github.com/ip2a/ip2a-ops/pkg/progress"
	"github.com/ip2a/ip2a-ops/pkg/reports"
	"github.com/ip2a/ip2a-ops/pkg/runner"
	"github.com/ip2a/ip2a-ops/pkg/storage"
)

// Request is one run of a job, however it was started.
type Request struct {
	// Kind names the job in the registry; Args are its JSON arguments.
	Kind string
	Args json.RawMessage
	// Trigger is what started the run (manual, cron, daemon, queue, ...).
	Trigger string
	// TaskID, when not zero, is the id of the queue task this run serves;
	// it is recorded on the ledger row and logged with the run.
	TaskID int64
	// Slot is the scheduled slot the run fills (the daemon's), or nil.
	Slot *time.Time
	// MaxRuntime, when > 0, cancels the run past it (recorded failed).
	MaxRuntime time.Duration
	// CommandLine is the redacted command line recorded in the ledger.
	CommandLine []string
	// Progress, when set, is the run's tracker, so the caller can draw it
	// (a terminal); nil: the runner makes one.
	Progress *progress.Tracker
	// LazyCommit: see runner.Spec (a queue's worker sets it).
	LazyCommit bool
}

// Response is what came of a Request.
type Response struct {
	// Job is the ledger name of the run.
	Job string
	// Report is the runner's report; RunID is 0 when nothing was recorded.
	Report runner.Report
	// Result is the job's typed result; nil when the job never ran.
	Result any
	// Outcome classifies the run (or the failure to start it).
	Outcome exitcode.Outcome
}

// ResultJSON is the result as JSON ("null" when the job never ran).
func (r Response) ResultJSON() (json.RawMessage, error) { return json.Marshal(r.Result) }

// Execute runs one job: look it up, decode its arguments strictly,
// prepare it (errors here record nothing), run it under the ledger and
// classify the outcome. The error is nil only on success; it carries the
// outcome (exitcode.Classify reads it), so a caller derives its exit code,
// or a queue its retry decision, from it.
func Execute(ctx context.Context, env Env, req Request) (Response, error) {
	job, ok := Lookup(req.Kind)
	if !ok {
		err := exitcode.WithOutcome(fmt.Errorf("unknown job %q", req.Kind), exitcode.OutcomeUsage)
		return Response{Outcome: exitcode.OutcomeUsage}, err
	}
	name, body, err := job.prepare(ctx, env, req.Args)
	if err != nil {
		o := Classify(err)
		return Response{Job: name, Outcome: o}, exitcode.WithOutcome(err, o)
	}
	rn, err := env.Runner(ctx)
	if err != nil {
		o := Classify(err)
		return Response{Job: name, Outcome: o}, exitcode.WithOutcome(err, o)
	}
	resp := Response{Job: name}
	var ran bool
	rep := rn.Execute(ctx, runner.Spec{Job: name, Trigger: req.Trigger, Args: req.CommandLine, Slot: req.Slot, MaxRuntime: req.MaxRuntime,
		Progress: req.Progress, TaskID: req.TaskID, LazyCommit: req.LazyCommit},
		func(ctx context.Context, run *runner.Run) (any, error) {
			renv := env
			renv.Logger = run.Logger
			renv.SetSummary, renv.Tracker = run.SetSummary, run.Progress
			res, err := body(ctx, renv)
			resp.Result, ran = res, true
			return res, exitcode.WithOutcome(err, Classify(err))
		})
	if !ran {
		resp.Result = nil
	}
	resp.Report, resp.Outcome = rep, rep.Outcome
	if rep.Err != nil {
		return resp, exitcode.WithOutcome(rep.Err, rep.Outcome)
	}
	return resp, nil
}

// usageErrors are the libraries' sentinels that only a change of
// arguments or configuration fixes: a retry cannot help (exit 2).
var usageErrors = []error{
	ErrNoStorage,
	storage.ErrAccessDenied, storage.ErrBucketNotFound,
	backup.ErrNotFound, backup.ErrToolMissing, backup.ErrSourceDatabase, backup.ErrTargetNotEmpty, backup.ErrTargetTooOld,
	pgcluster.ErrNoBinaries,
	audit.ErrNoHold, audit.ErrNotArchived,
	reports.ErrUnknownGrant, reports.ErrBadPeriod, reports.ErrBadStatus, reports.ErrNoStatus,
	migrate.ErrNotMigrated,
}

// Classify is the outcome of err: an outcome already chosen (by the
// runner or exitcode.Error) stands; the libraries' configuration sentinels
// are usage errors; the rest is exitcode.Classify's.
func Classify(err error) exitcode.Outcome {
	if err == nil {
		return exitcode.OutcomeSucceeded
	}
	var e *exitcode.Error
	if errors.As(err, &e) && e.Outcome != "" {
		return e.Outcome
	}
	var ae *ArgsError
	if errors.As(err, &ae) {
		return exitcode.OutcomeUsage
	}
	for _, u := range usageErrors {
		if errors.Is(err, u) {
			return exitcode.OutcomeUsage
		}
	}
	return exitcode.Classify(err)
}
