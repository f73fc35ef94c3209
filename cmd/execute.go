package cmd

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"sync"

	"github.com/ip2a/ip2a-ops/pkg/exitcode"
	"github.com/ip2a/ip2a-ops/pkg/jobs"
	"github.com/ip2a/ip2a-ops/pkg/notify"
	"github.com/ip2a/ip2a-ops/pkg/progress"
	"github.com/ip2a/ip2a-ops/pkg/runner"
)

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

// fieldHints maps a job argument's field (as named in its errors) to the
// flag that sets it, as a "Try: ..." hint; "" is the hint for any other
// usage error of the command.
type fieldHints map[string]string

// invocation is a job command's command line turned into a job and its
// arguments, with how to print the result.
type invocation struct {
	kind  string
	args  json.RawMessage
	text  func(w io.Writer, res any)
	hints fieldHints
}

// runJob is the end of every job command: flags have become args. It runs
// the job through jobs.Execute, or, when the daemon is only parsing a
// crontab line (capture mode), records the invocation and runs nothing.
func runJob[A, R any](ctx context.Context, d *deps, def *jobs.Def[A, R], args A, text func(io.Writer, R), hints fieldHints) error {
	raw, err := def.Encode(args)
	if err != nil {
		return err
	}
	inv := &invocation{kind: def.Name, args: raw, hints: hints}
	d.hints = hints
	if text != nil {
		inv.text = func(w io.Writer, res any) {
			if r, ok := res.(R); ok {
				text(w, r)
			}
		}
	}
	if d.capture {
		d.captured = inv
		return nil
	}
	return d.invoke(ctx, inv)
}

// invoke runs inv through the registry's one entry point and renders the
// result: text, or one JSON document with --json. The returned error
// carries the run's outcome.
func (d *deps) invoke(ctx context.Context, inv *invocation) error {
	d.hints = inv.hints
	slot, err := d.slotTime()
	if err != nil {
		return err
	}
	show, err := d.showProgress()
	if err != nil {
		return err
	}
	var tracker *progress.Tracker
	stopDisplay := func() {}
	if show {
		tracker = progress.NewTracker(nil)
		disp := progress.StartDisplay(d.stderr, tracker, 0)
		d.logOut.setDisplay(disp)
		stopDisplay = sync.OnceFunc(func() {
			d.logOut.setDisplay(nil)
			disp.Stop() // the line is cleared, so the summary below stands alone
		})
		defer stopDisplay()
	}
	resp, err := jobs.Execute(ctx, d.jobEnv(), jobs.Request{Kind: inv.kind, Args: inv.args, Trigger: d.trigger(),
		Slot: slot, MaxRuntime: d.g.maxRuntime, CommandLine: runner.RedactArgs(d.args), Progress: tracker})
	stopDisplay()
	rep := resp.Report
	if rep.Job == "" {
		return err // nothing ran: a usage or configuration error, or no database
	}
	if d.g.json {
		doc := jobDocument{RunID: rep.RunID, Job: rep.Job, State: rep.State, ExitCode: rep.ExitCode, Seconds: rep.Seconds, Error: rep.Error, Summary: resp.Result}
		if werr := writeJSON(d.stdout, doc); werr != nil {
			return werr
		}
	} else if resp.Result != nil && inv.text != nil {
		inv.text(d.stdout, resp.Result)
	}
	return err
}

// jobEnv is what jobs get from the command line's dependencies.
func (d *deps) jobEnv() jobs.Env {
	return jobs.Env{DB: d.opsDB, DatabaseURL: d.dbURL, DirectURL: d.directURL, Storage: d.storage, Ledger: d.ledger, Runner: d.runner,
		Schema: d.g.schema, Logger: d.logger, Now: d.now, Host: d.hostname(), Version: versionString(), PgBinDir: d.getenv("IP2A_OPS_PG_BIN"),
		SMTP: func(job string) notify.SMTP { return notify.ConfigFromEnv(d.getenv, job).SMTP }}
}

// runner is the runner over the ledger, with the run settings of the
// global flags.
func (d *deps) runner(ctx context.Context) (*runner.Runner, error) {
	l, err := d.ledger(ctx)
	if err != nil {
		return nil, err
	}
	return &runner.Runner{Ledger: l, Logger: d.logger, Host: d.hostname(), PID: os.Getpid(), HeartbeatEvery: d.g.heartbeat,
		StaleAfter: d.g.staleAfter, Notifier: d.runNotifier()}, nil
}

// hint is the "Try: ..." line for err: the hint it carries, else the
// invoked command's hint for the field at fault, else the error table's.
func (d *deps) hint(err error) string {
	if h := exitcode.Hint(err); h != "" {
		return h
	}
	if f := exitcode.FieldOf(err); f != "" {
		if h, ok := d.hints[f]; ok {
			return h
		}
	}
	if h := tableHint(err); h != "" {
		return h
	}
	if jobs.Classify(err) == exitcode.OutcomeUsage {
		return d.hints[""]
	}
	return ""
}

// hostname is this host's name, read once (a worker makes a runner per
// queued run).
func (d *deps) hostname() string {
	d.hostOnce.Do(func() { d.host = hostname() })
	return d.host
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return "unknown"
	}
	return h
}
