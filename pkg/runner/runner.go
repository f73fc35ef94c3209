// Package runner runs any job the same way, whatever started it: it claims
// the job in the ledger (one active run per job across hosts), keeps a
// heartbeat, turns panics into failed runs, enforces a maximum runtime, and
// records the outcome with its exit code and summary. It knows nothing of
// particular jobs.
package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/ip2a/ip2a-ops/pkg/dbconn"
	"github.com/ip2a/ip2a-ops/pkg/exitcode"
	"github.com/ip2a/ip2a-ops/pkg/ledger"
	"github.com/ip2a/ip2a-ops/pkg/progress"
)

// Runner holds what every run needs. Zero durations mean defaults.
type Runner struct {
	Ledger *ledger.Ledger
	Logger *slog.Logger
	Host   string
	PID    int
	// HeartbeatEvery is how often a running job proves it is alive (15s).
	HeartbeatEvery time.Duration
	// StaleAfter is when a silent running row counts as abandoned (2m);
	// below twice HeartbeatEvery it is raised to that, with a warning.
	StaleAfter time.Duration
	// Notifier, when set, hears of each run's start and end (pings, alerts).
	// It cannot fail or hold up a job: the start is told concurrently with
	// the job, the end after the ledger has it, and a panic in it is logged.
	Notifier Notifier
}

// Notifier is told about runs. RunStarted is not called for skipped runs;
// RunFinished is also called, with RunID 0, when the run could not even be
// recorded (database down), since that is an outage someone must hear of.
type Notifier interface {
	RunStarted(ctx context.Context, ev Event)
	RunFinished(ctx context.Context, ev Event)
}

// Event describes a run to a Notifier. FinishedAt, State, ExitCode, Error
// and Duration are zero at start.
type Event struct {
	RunID      int64
	Job        string
	Trigger    string
	Host       string
	State      string
	ExitCode   int
	Error      string
	StartedAt  time.Time
	FinishedAt time.Time
	Duration   time.Duration
}

// notifyTimeout bounds how long the end of a run waits for its notifier.
const notifyTimeout = time.Minute

func (rn *Runner) notify(ctx context.Context, log *slog.Logger, finished bool, ev Event) {
	defer func() {
		if p := recover(); p != nil {
			log.Error("notifier panicked", "panic", fmt.Sprint(p))
		}
	}()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), notifyTimeout)
	defer cancel()
	if finished {
		rn.Notifier.RunFinished(ctx, ev)
	} else {
		rn.Notifier.RunStarted(ctx, ev)
	}
}

func (rn *Runner) finishedEvent(spec Spec, rep Report, started time.Time) Event {
	return Event{RunID: rep.RunID, Job: spec.Job, Trigger: spec.Trigger, Host: rn.Host, State: rep.State, ExitCode: rep.ExitCode,
		Error: rep.Error, StartedAt: started, FinishedAt: started.Add(rep.Duration), Duration: rep.Duration}
}

// Spec describes one run.
type Spec struct {
	Job     string
	Trigger string
	Args    []string // already redacted
	Slot    *time.Time
	// MaxRuntime, when > 0, cancels the job past it; the run is recorded failed.
	MaxRuntime time.Duration
	// Progress, when set, is the tracker handed to the job as Run.Progress,
	// so the caller can also draw it (a terminal display); nil: a new one.
	Progress *progress.Tracker
	// TaskID, when not 0, is the queue task the run serves (recorded, logged).
	TaskID int64
	// LazyCommit records the run with ledger.LazyCommit: for a caller that
	// commits synchronously after the run (a queue completing its task).
	LazyCommit bool
}

// Run is handed to a job function.
type Run struct {
	ID     int64
	Job    string
	Logger *slog.Logger
	// Progress is where the job counts how far along it is; every
	// heartbeat stores its latest state in the ledger. Hand it to the job's
	// options; it is never nil.
	Progress *progress.Tracker

	mu      sync.Mutex
	summary any
}

// SetSummary records the job's progress so far; it is written with the next
// heartbeat, so a run that dies still shows what it had done.
func (r *Run) SetSummary(v any) {
	r.mu.Lock()
	r.summary = v
	r.mu.Unlock()
}

func (r *Run) takeSummary() any {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.summary
}

// Func is a job body. Its summary is stored in the ledger even when err is
// not nil. Wrap exitcode.ErrProblems in err for "ran and found problems".
type Func func(ctx context.Context, run *Run) (summary any, err error)

// Report is the outcome of one run.
type Report struct {
	RunID    int64  `json:"run_id"`
	Job      string `json:"job"`
	State    string `json:"state"`
	ExitCode int    `json:"exit_code"`
	// Outcome classifies the run; ExitCode and State derive from it.
	Outcome  exitcode.Outcome `json:"-"`
	Duration time.Duration    `json:"-"`
	Seconds  float64          `json:"duration_seconds"`
	Summary  any              `json:"summary,omitempty"`
	Err      error            `json:"-"`
	Error    string           `json:"error,omitempty"`
}

// ErrMaxRuntime is the cause recorded when a run exceeds Spec.MaxRuntime.
var ErrMaxRuntime = errors.New("exceeded its maximum runtime")

// Execute runs fn under the ledger. The returned Report always has an exit
// code; Report.Err is nil only on success.
func (rn *Runner) Execute(ctx context.Context, spec Spec, fn Func) Report {
	hb := rn.HeartbeatEvery
	if hb <= 0 {
		hb = 15 * time.Second
	}
	stale := rn.StaleAfter
	if stale <= 0 {
		stale = 2 * time.Minute
	}
	logger := rn.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if stale < 2*hb {
		// A live run may miss one heartbeat (a slow statement, a busy
		// database) without being taken for dead.
		logger.Warn("stale timeout raised to twice the heartbeat interval", "job", spec.Job,
			"stale_after", stale.String(), "heartbeat", hb.String(), "using", (2 * hb).String())
		stale = 2 * hb
	}
	rep := Report{Job: spec.Job}
	started := time.Now()
	finish := func(state string, err error) Report {
		rep.State, rep.Err = state, err
		rep.ExitCode = exitcode.Code(err)
		if state == ledger.Interrupted {
			rep.ExitCode = exitcode.Interrupted
		}
		rep.Outcome = exitcode.Classify(err)
		if state == ledger.Interrupted {
			rep.Outcome = exitcode.OutcomeInterrupted
		}
		if err != nil {
			rep.Error = dbconn.Redact(err.Error())
		}
		rep.Duration = time.Since(started)
		rep.Seconds = rep.Duration.Seconds()
		return rep
	}

	led := rn.Ledger
	if spec.LazyCommit {
		led = led.LazyCommit()
	}
	row, err := led.Start(ctx, ledger.StartParams{Job: spec.Job, Trigger: spec.Trigger, Host: rn.Host, PID: rn.PID, Args: spec.Args, StaleAfter: stale, Slot: spec.Slot, TaskID: spec.TaskID})
	if err != nil {
		var busy *ledger.BusyError
		if errors.As(err, &busy) {
			rep.RunID = busy.Skipped.ID
			logger.Warn("skipped: another run is active", "job", spec.Job, "run_id", busy.Skipped.ID, "holder_run_id", busy.Holder.ID, "holder_host", busy.Holder.Host)
			return finish(ledger.Skipped, err)
		}
		if ctx.Err() != nil {
			return finish(ledger.Interrupted, ctx.Err())
		}
		rep = finish(ledger.Failed, err)
		if rn.Notifier != nil {
			rn.notify(ctx, logger.With("job", spec.Job), true, rn.finishedEvent(spec, rep, started))
		}
		return rep
	}
	rep.RunID = row.ID
	attrs := []any{"job", spec.Job, "run_id", row.ID}
	if spec.Slot != nil {
		attrs = append(attrs, "slot", spec.Slot.UTC().Format(time.RFC3339))
	}
	if spec.TaskID != 0 {
		attrs = append(attrs, "task_id", spec.TaskID)
	}
	log := logger.With(attrs...)
	log.Info("run started", "trigger", spec.Trigger)
	startNotified := make(chan struct{})
	if rn.Notifier != nil {
		go func() {
			defer close(startNotified)
			rn.notify(ctx, log, false, Event{RunID: row.ID, Job: spec.Job, Trigger: spec.Trigger, Host: rn.Host, State: ledger.Running, StartedAt: started})
		}()
	} else {
		close(startNotified)
	}

	jobCtx, cancelJob := context.WithCancelCause(ctx)
	defer cancelJob(nil)
	if spec.MaxRuntime > 0 {
		var cancelT context.CancelFunc
		jobCtx, cancelT = context.WithTimeoutCause(jobCtx, spec.MaxRuntime, fmt.Errorf("%s %w (%s)", spec.Job, ErrMaxRuntime, spec.MaxRuntime))
		defer cancelT()
	}
	tracker := spec.Progress
	if tracker == nil {
		tracker = progress.NewTracker(nil)
	}
	run := &Run{ID: row.ID, Job: spec.Job, Logger: log, Progress: tracker}

	// The heartbeat is its own goroutine with its own context so a job that
	// blocks in a long statement still proves it is alive.
	hbDone := make(chan struct{})
	hbStop := make(chan struct{})
	go func() {
		defer close(hbDone)
		t := time.NewTicker(hb)
		defer t.Stop()
		for {
			select {
			case <-hbStop:
				return
			case <-t.C:
				hctx, c := context.WithTimeout(context.WithoutCancel(ctx), hb)
				var prog *progress.State
				if st, ok := tracker.Snapshot(); ok {
					prog = &st
				}
				err := led.Heartbeat(hctx, row.ID, run.takeSummary(), prog)
				c()
				if errors.Is(err, ledger.ErrLostClaim) {
					log.Error("lost the job's claim in the ledger; stopping")
					cancelJob(err)
					return
				} else if err != nil {
					log.Warn("heartbeat failed", "error", dbconn.Redact(err.Error()))
				}
			}
		}
	}()

	summary, jobErr := safeCall(jobCtx, run, fn)
	close(hbStop)
	<-hbDone
	if summary == nil {
		summary = run.takeSummary()
	}
	rep.Summary = summary

	switch {
	case jobErr == nil:
	case ctx.Err() != nil:
		jobErr = exitcode.WithOutcome(fmt.Errorf("interrupted: %w", jobErr), exitcode.OutcomeInterrupted)
	case errors.Is(context.Cause(jobCtx), ErrMaxRuntime):
		jobErr = exitcode.WithOutcome(fmt.Errorf("%w: %v", context.Cause(jobCtx), jobErr), exitcode.OutcomeFailed)
	case errors.Is(jobErr, context.Canceled):
		// Cancelled by something other than the caller (lost claim): not
		// an interruption by a signal.
		jobErr = exitcode.WithOutcome(fmt.Errorf("%w (%v)", jobErr, context.Cause(jobCtx)), exitcode.OutcomeFailed)
	}
	rep = finish(StateOf(exitcode.Classify(jobErr)), jobErr)
	fctx, c := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer c()
	if st, ok := tracker.Snapshot(); ok {
		// Where the job stopped, not where the last heartbeat saw it.
		if err := led.Heartbeat(fctx, row.ID, nil, &st); err != nil && !errors.Is(err, ledger.ErrLostClaim) {
			log.Warn("could not record the final progress", "error", dbconn.Redact(err.Error()))
		}
	}
	if err := finishWithRetry(fctx, led, row.ID, rep); err != nil {
		log.Error("could not record the end of the run", "error", dbconn.Redact(err.Error()))
		if rep.Err == nil {
			rep = finish(ledger.Failed, err)
		}
	}
	// Found problems and skipped are outcomes, not failures.
	level := slog.LevelInfo
	switch rep.Outcome {
	case exitcode.OutcomeSucceeded:
	case exitcode.OutcomeFindings, exitcode.OutcomeSkipped:
		level = slog.LevelWarn
	default:
		level = slog.LevelError
	}
	log.Log(ctx, level, "run finished", "state", rep.State, "exit_code", rep.ExitCode, "duration_s", rep.Seconds, "error", rep.Error)
	<-startNotified // a start ping must not arrive after the end
	if rn.Notifier != nil {
		rn.notify(ctx, log, true, rn.finishedEvent(spec, rep, started))
	}
	return rep
}

// StateOf is the ledger state a run with outcome o ends in: findings are
// a successful run (exit 3), a usage error a failed one.
func StateOf(o exitcode.Outcome) string {
	switch o {
	case exitcode.OutcomeSucceeded, exitcode.OutcomeFindings:
		return ledger.Succeeded
	case exitcode.OutcomeSkipped:
		return ledger.Skipped
	case exitcode.OutcomeInterrupted:
		return ledger.Interrupted
	}
	return ledger.Failed
}

func finishWithRetry(ctx context.Context, l *ledger.Ledger, id int64, rep Report) error {
	var err error
	for i := 0; i < 5; i++ {
		if err = l.Finish(ctx, id, rep.State, rep.ExitCode, rep.Error, rep.Summary); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(200*(i+1)) * time.Millisecond):
		}
	}
	return err
}

func safeCall(ctx context.Context, run *Run, fn Func) (summary any, err error) {
	defer func() {
		if p := recover(); p != nil {
			run.Logger.Error("job panicked", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			err = fmt.Errorf("job panicked: %v", p)
		}
	}()
	return fn(ctx, run)
}
