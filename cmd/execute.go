package cmd

import (
	"context"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/ip2a/ip2a-ops/pkg/runner"
)

// jobError carries a run's exit code out of a command.
type jobError struct {
	err  error
	code int
}

func (e *jobError) Error() string { return e.err.Error() }
func (e *jobError) Unwrap() error { return e.err }
func (e *jobError) ExitCode() int { return e.code }

// jobDocument is the --json output of every job command: the ledger's view
// of the run with the job's own result as summary. Fields are only added.
type jobDocument struct {
	RunID    int64   `json:"run_id"`
	Job      string  `json:"job"`
	State    string  `json:"state"`
	ExitCode int     `json:"exit_code"`
	Seconds  float64 `json:"duration_seconds"`
	Error    string  `json:"error,omitempty"`
	Summary  any     `json:"summary"`
}

// execute runs fn as job through the runner and ledger, then renders its
// result: text through text, or one JSON document with --json. The returned
// error carries the run's exit code.
func execute[T any](ctx context.Context, d *deps, c *cobra.Command, job string, fn func(ctx context.Context, run *runner.Run) (T, error), text func(w io.Writer, res T)) error {
	l, err := d.ledger(ctx)
	if err != nil {
		return err
	}
	rn := &runner.Runner{Ledger: l, Logger: d.logger, Host: hostname(), PID: os.Getpid(), HeartbeatEvery: d.g.heartbeat, StaleAfter: d.g.staleAfter, Notifier: d.runNotifier()}
	var res T
	var ran bool
	slot, err := d.slotTime()
	if err != nil {
		return err
	}
	rep := rn.Execute(ctx, runner.Spec{Job: job, Trigger: d.trigger(), Args: runner.RedactArgs(d.args), Slot: slot, MaxRuntime: d.g.maxRuntime},
		func(ctx context.Context, run *runner.Run) (any, error) {
			r, err := fn(ctx, run)
			res, ran = r, true
			return r, err
		})
	if d.g.json {
		doc := jobDocument{RunID: rep.RunID, Job: job, State: rep.State, ExitCode: rep.ExitCode, Seconds: rep.Seconds, Error: rep.Error}
		if ran {
			doc.Summary = res
		}
		if err := writeJSON(d.stdout, doc); err != nil {
			return err
		}
	} else if ran && text != nil {
		text(d.stdout, res)
	}
	if rep.Err != nil {
		return &jobError{err: rep.Err, code: rep.ExitCode}
	}
	return nil
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return "unknown"
	}
	return h
}
