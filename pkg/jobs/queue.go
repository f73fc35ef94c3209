package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/ip2a/ip2a-ops/pkg/dbconn"
	"github.com/ip2a/ip2a-ops/pkg/exitcode"
	"github.com/ip2a/ip2a-ops/pkg/tasks"
)

// File is a file a run produced: a local path, or a key in a store.
type File struct {
	Path  string `json:"path,omitempty"`
	Store string `json:"store,omitempty"`
	Key   string `json:"key,omitempty"`
}

// TaskOutput is the output a queued run leaves on its task: the ledger's
// view of the run (so `tasks status` and `jobs show` point at each other),
// the job's summary, and the files it produced. Fields are only added.
type TaskOutput struct {
	// RunID is the ledger row of this attempt (0 when nothing was
	// recorded: the arguments or the configuration were refused).
	RunID int64  `json:"run_id"`
	Job   string `json:"job"`
	// State is the ledger state (succeeded, failed, skipped, interrupted),
	// or "not_run" when nothing was recorded.
	State    string `json:"state"`
	ExitCode int    `json:"exit_code"`
	// Outcome is the run's outcome: succeeded, findings (it ran and found
	// problems: the task completes and this says so), skipped, failed,
	// usage, interrupted.
	Outcome exitcode.Outcome `json:"outcome"`
	Error   string           `json:"error,omitempty"`
	Summary any              `json:"summary"`
	Files   []File           `json:"files,omitempty"`
}

// TaskMetaSlot and TaskMetaMaxRuntime are the task metadata keys a queued
// run reads: the daemon slot it fills (RFC 3339) and its maximum runtime
// (a Go duration).
const (
	TaskMetaSlot       = "slot"
	TaskMetaMaxRuntime = "max_runtime"
)

// DefaultSkipSnooze is how long a task waits before trying again when its
// job was busy (another run of it active).
const DefaultSkipSnooze = 30 * time.Second

// TaskOptions configure TaskHandlers. Zero values mean defaults.
type TaskOptions struct {
	// SkipSnooze is how long a task whose job was busy waits before it
	// tries again (default DefaultSkipSnooze); it does not use an attempt.
	SkipSnooze time.Duration
	// CommandLine, when set, is what the ledger records as the run's
	// arguments for a task (default: none; the task id links to its args).
	CommandLine func(t tasks.Task) []string
}

// TaskHandlers makes every registry job a task kind of the same name: the
// task's args are the job's JSON arguments, and a worker runs each through
// Execute with trigger "queue" and the task id on the ledger row. What
// came of the run decides what the queue does:
//
//   - succeeded, findings: the task completes (its output says findings);
//   - usage (arguments that do not decode, a configuration error): the
//     task fails at once, with no retry (tasks.Permanent);
//   - skipped (another run of the job is active): the task waits
//     SkipSnooze and tries again, without using an attempt;
//   - failed, interrupted: the attempt fails and is retried with backoff.
func TaskHandlers(env Env, opts TaskOptions) tasks.Handlers {
	if opts.SkipSnooze <= 0 {
		opts.SkipSnooze = DefaultSkipSnooze
	}
	h := tasks.Handlers{}
	for _, j := range All() {
		h[j.Kind()] = func(ctx context.Context, t tasks.Task) (json.RawMessage, error) { return runTask(ctx, env, opts, t) }
	}
	return h
}

func runTask(ctx context.Context, env Env, opts TaskOptions, t tasks.Task) (json.RawMessage, error) {
	// The task completes in a synchronous commit after the run is
	// recorded, which flushes the ledger's writes too: they need not wait.
	req := Request{Kind: t.Kind, Args: t.Args, Trigger: "queue", TaskID: int64(t.ID), LazyCommit: true}
	if opts.CommandLine != nil {
		req.CommandLine = opts.CommandLine(t)
	}
	if s := t.Metadata[TaskMetaSlot]; s != "" {
		slot, err := time.Parse(time.RFC3339, s)
		if err != nil {
			return nil, tasks.Permanent(fmt.Errorf("task metadata %s=%q: %w", TaskMetaSlot, s, err))
		}
		slot = slot.UTC()
		req.Slot = &slot
	}
	if s := t.Metadata[TaskMetaMaxRuntime]; s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			return nil, tasks.Permanent(fmt.Errorf("task metadata %s=%q: not a duration", TaskMetaMaxRuntime, s))
		}
		req.MaxRuntime = d
	}
	resp, err := Execute(ctx, env, req)
	out := TaskOutput{RunID: resp.Report.RunID, Job: resp.Job, State: resp.Report.State, ExitCode: resp.Outcome.Code(),
		Outcome: resp.Outcome, Summary: resp.Result}
	if resp.Report.Job == "" {
		out.State = "not_run"
	}
	if err != nil {
		// Tasks are visible to whoever reads the queue: no secrets.
		out.Error = dbconn.Redact(err.Error())
	}
	if job, ok := Lookup(t.Kind); ok && resp.Result != nil {
		out.Files = job.files(resp.Result)
	}
	b, merr := json.Marshal(out)
	if merr != nil {
		return nil, tasks.Permanent(fmt.Errorf("encode task output: %w", merr))
	}
	if err == nil {
		return b, nil
	}
	msg := errors.New(out.Error)
	switch resp.Outcome {
	case exitcode.OutcomeFindings:
		return b, nil
	case exitcode.OutcomeUsage:
		return b, tasks.Permanent(msg)
	case exitcode.OutcomeSkipped:
		return b, tasks.Snooze(opts.SkipSnooze)
	}
	if resp.Report.RunID != 0 {
		msg = fmt.Errorf("run %d %s: %s", resp.Report.RunID, out.State, out.Error)
	}
	return b, msg
}

// absFile is a local path made absolute, so a task's output names the
// file wherever its reader stands.
func absFile(p string) File {
	if a, err := filepath.Abs(p); err == nil {
		p = a
	}
	return File{Path: p}
}
