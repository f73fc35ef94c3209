package cmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ip2a/ip2a-ops/pkg/exitcode"
	"github.com/ip2a/ip2a-ops/pkg/jobs"
	"github.com/ip2a/ip2a-ops/pkg/tasks"
)

// taskHandlers is every kind this binary's workers run: the built-in
// kinds, the app's kinds (unconfigured here; a worker configures them:
// appTaskHandlers) and every job of the registry (each run through
// jobs.Execute with trigger queue, so it lands in the ledger).
func (d *deps) taskHandlers() tasks.Handlers {
	h := tasks.Builtin()
	maps.Copy(h, unconfiguredAppKinds())
	maps.Copy(h, jobs.TaskHandlers(d.jobEnv(), jobs.TaskOptions{SkipSnooze: d.busySnooze}))
	return h
}

// taskService opens the durable task service (River in ip2a-ops's schema).
func (d *deps) taskService(ctx context.Context) (*tasks.River, error) {
	pool, err := d.opsDB(ctx)
	if err != nil {
		return nil, err
	}
	if err := tasks.CheckSchema(ctx, pool, d.g.schema); err != nil {
		return nil, err
	}
	return tasks.NewRiver(pool, tasks.RiverOptions{Schema: d.g.schema, Logger: d.logger})
}

const taskStatusExits = `Exit codes of 'tasks status': 0 completed, 1 failed (out of attempts, or
a permanent error), 2 no such task or configuration error, 3 cancelled,
4 not finished yet (pending, scheduled, running, retrying).`

func newTasksCmd(d *deps) *cobra.Command {
	c := &cobra.Command{
		Use:   "tasks",
		Short: "Enqueue, schedule, watch, cancel and retry queued tasks",
		Long: `Tasks are queued work for 'ip2a-ops worker' processes, kept in River's
tables in ip2a-ops's schema: they survive restarts and any worker on any
host may run them. The app can enqueue them too (riverqueue-python; see
docs/tasks.md).

Kinds: ` + strings.Join(d.taskHandlers().Kinds(), ", ") + `.

States: pending (waiting for a worker), scheduled (waiting for its time),
running, retrying (an attempt failed; it runs again after a backoff),
completed, failed (out of attempts, or a permanent error such as args
that do not parse), cancelled.

` + taskStatusExits,
	}
	c.AddCommand(newTasksEnqueueCmd(d), newTasksStatusCmd(d), newTasksListCmd(d), newTasksCancelCmd(d), newTasksRetryCmd(d))
	return c
}

type tasksEnqueueOptions struct {
	args        string
	at          string
	in          time.Duration
	uniqueFor   time.Duration
	priority    int
	maxAttempts int
	queue       string
	dryRun      bool
}

func newTasksEnqueueCmd(d *deps) *cobra.Command {
	var o tasksEnqueueOptions
	c := &cobra.Command{
		Use:   "enqueue KIND [--at TIME | --in DURATION] [-- JOB FLAGS | --args JSON]",
		Short: "Queue a task and print its id",
		Long: `Queue a task of KIND and print its id on stdout. --at (RFC 3339) or --in
delays it. --unique-for D makes it unique by kind and args within a period
of D: enqueueing it again in the same period prints the existing task's id
(and says so on stderr).

Every ip2a-ops job is a kind of the same name (backup, backup-verify,
audit-archive, grant-report, ...; see docs/tasks.md). Its args are the
job's own flags after --, read by the job's own command exactly as the
command line would read them here (flags, then IP2A_OPS_* variables, then
defaults), so a bad flag is refused now and nothing is queued:

  ip2a-ops tasks enqueue backup -- --prune
  ip2a-ops tasks enqueue backup-verify -- latest --level restore

A worker runs it through the run ledger (trigger queue, the task id on the
run); the task's output names the run. --args JSON gives the args as JSON
instead (an object; for a job, its versioned arguments; see docs/tasks.md).
--dry-run prints the args (and metadata) the task would get and queues
nothing: what the app's enqueuing code should send.

Exit codes: 0 queued (or already queued), 1 the database failed,
2 usage or configuration error (unknown kind, bad job flags or args,
queue not migrated).`,
		Example: `  ip2a-ops tasks enqueue grant-report -- --all-active --last-month --out /var/lib/ip2a-ops/reports
  ip2a-ops tasks enqueue backup --dry-run -- --prune
  ip2a-ops tasks enqueue backup --at 2025-07-01T02:00:00Z --unique-for 24h -- --prune
  ip2a-ops tasks enqueue noop
  ip2a-ops tasks enqueue test.sleep --args '{"seconds": 5}' --in 10m`,
		Args: func(c *cobra.Command, args []string) error {
			if n := c.ArgsLenAtDash(); n >= 0 && n != 1 || n < 0 && len(args) != 1 {
				return exitcode.Usagef("ip2a-ops tasks enqueue KIND [flags] -- JOB FLAGS", "want one KIND before --, got %q", args)
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error {
			var jobFlags []string
			if c.ArgsLenAtDash() == 1 {
				jobFlags = args[1:]
				if jobFlags == nil {
					jobFlags = []string{}
				}
			}
			return runTasksEnqueue(c.Context(), d, args[0], jobFlags, c.Flags().Changed("args"), o)
		},
	}
	f := c.Flags()
	f.StringVar(&o.args, "args", "{}", "the task's args as a JSON object (instead of JOB FLAGS after --)")
	f.StringVar(&o.at, "at", "", "run at this time (RFC 3339, e.g. 2025-07-01T02:00:00Z)")
	f.DurationVar(&o.in, "in", 0, "run after this long (e.g. 10m)")
	f.DurationVar(&o.uniqueFor, "unique-for", 0, "do not queue a second task of this kind and args within this period (at least 1s)")
	f.IntVar(&o.priority, "priority", tasks.DefaultPriority, "1 (first) to 4 (last)")
	f.IntVar(&o.maxAttempts, "max-attempts", tasks.DefaultMaxAttempts, "attempts before the task is failed")
	f.StringVar(&o.queue, "queue", tasks.DefaultQueue, "queue the task goes to (workers take the queues given to --queues)")
	f.BoolVar(&o.dryRun, "dry-run", false, "print the task's args and metadata as JSON and queue nothing")
	return c
}

// runTasksEnqueue queues kind. jobFlags (non-nil when -- was given) are
// the job's own command line; rawArgs says --args was given.
func runTasksEnqueue(ctx context.Context, d *deps, kind string, jobFlags []string, rawArgs bool, o tasksEnqueueOptions) error {
	handlers := d.taskHandlers()
	if _, ok := handlers[kind]; !ok {
		return exitcode.Usagef("one of: "+strings.Join(handlers.Kinds(), ", "), "unknown task kind %q", kind)
	}
	opts := tasks.EnqueueOptions{Queue: o.queue, Priority: o.priority, MaxAttempts: o.maxAttempts, UniqueFor: o.uniqueFor}
	switch {
	case o.at != "" && o.in != 0:
		return exitcode.Usagef("--at TIME or --in DURATION", "--at and --in both given")
	case o.at != "":
		t, err := time.Parse(time.RFC3339, o.at)
		if err != nil {
			return exitcode.Usagef("--at 2025-07-01T02:00:00Z", "invalid --at time %q", o.at)
		}
		opts.ScheduledAt = t
	case o.in < 0:
		return exitcode.Usagef("--in 10m", "--in must not be negative")
	case o.in > 0:
		opts.ScheduledAt = d.now().Add(o.in)
	}
	args := json.RawMessage(o.args)
	job, isJob := jobs.Lookup(kind)
	switch {
	case jobFlags != nil && rawArgs:
		return exitcode.Usagef("ip2a-ops tasks enqueue KIND -- JOB FLAGS   (or --args JSON, not both)", "--args and job flags after -- both given")
	case jobFlags != nil || (isJob && !rawArgs):
		// A job's flags go through the job's own command; no flags at all
		// means its defaults.
		c, err := d.captureKind(ctx, kind, jobFlags)
		if err != nil || c == nil {
			return err
		}
		args, opts.Metadata = c.Args, c.metadata(nil)
	case isJob:
		if err := job.Validate(args); err != nil {
			return exitcode.UsageError(err, "ip2a-ops tasks enqueue "+kind+" -- JOB FLAGS   (the args of each kind: docs/tasks.md)")
		}
	}
	if o.dryRun {
		return writeJSON(d.stdout, map[string]any{"kind": kind, "args": args, "metadata": opts.Metadata})
	}
	svc, err := d.taskService(ctx)
	if err != nil {
		return err
	}
	e, err := svc.Enqueue(ctx, kind, args, opts)
	if err != nil {
		return err
	}
	if e.Duplicate {
		fmt.Fprintf(d.stderr, "task %d (%s) is already queued for this period (--unique-for %s): not queued again\n", e.ID, kind, o.uniqueFor)
	}
	if d.g.json {
		return writeJSON(d.stdout, map[string]any{"id": e.ID, "kind": kind, "duplicate": e.Duplicate})
	}
	fmt.Fprintln(d.stdout, e.ID)
	return nil
}

// taskExit is the error `tasks status` ends with for a task that is not
// completed: its outcome gives the documented exit code.
func taskExit(r tasks.Result) error {
	msg := fmt.Sprintf("task %d is %s", r.ID, r.State)
	if last := r.LastError(); r.State == tasks.StateFailed && last != "" {
		msg += ": " + last
	}
	outcome := exitcode.OutcomeSkipped // not finished yet: exit 4
	switch r.State {
	case tasks.StateFailed:
		outcome = exitcode.OutcomeFailed
	case tasks.StateCancelled:
		outcome = exitcode.OutcomeFindings // exit 3
	}
	return exitcode.WithOutcome(errors.New(msg), outcome)
}

func newTasksStatusCmd(d *deps) *cobra.Command {
	var wait time.Duration
	c := &cobra.Command{
		Use:   "status ID",
		Short: "Show a task: state, attempts, errors, output, times",
		Long: `Show one task: its state, attempts, every failed attempt's error, the
output its handler recorded and its times. --wait D waits up to D for the
task to finish (completed, failed or cancelled) first.

` + taskStatusExits,
		Example: `  ip2a-ops tasks status 42
  ip2a-ops tasks status 42 --wait 10m --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			ctx := c.Context()
			id, err := tasks.ParseID(args[0])
			if err != nil {
				return err
			}
			svc, err := d.taskService(ctx)
			if err != nil {
				return err
			}
			r, err := taskStatus(ctx, svc, id, wait)
			if err != nil {
				return err
			}
			if d.g.json {
				if err := writeJSON(d.stdout, r); err != nil {
					return err
				}
			} else {
				printTask(d.stdout, r, d.now())
			}
			if r.State == tasks.StateCompleted {
				return nil
			}
			return taskExit(r)
		},
	}
	c.Flags().DurationVar(&wait, "wait", 0, "wait up to this long for the task to finish")
	return c
}

// taskStatus reads a task, polling up to wait for it to finish.
func taskStatus(ctx context.Context, svc tasks.Service, id tasks.ID, wait time.Duration) (tasks.Result, error) {
	deadline := time.Now().Add(wait)
	for {
		r, err := svc.Status(ctx, id)
		if errors.Is(err, tasks.ErrNotFound) {
			return r, exitcode.Usagef("ip2a-ops tasks list", "no task %d (finished tasks are kept 7 days, failed ones 30)", id)
		}
		if err != nil || r.State.Final() || !time.Now().Before(deadline) {
			return r, err
		}
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func printTask(w io.Writer, r tasks.Result, now time.Time) {
	fmt.Fprintf(w, "task %d  %s  %s\n", r.ID, r.Kind, strings.ToUpper(string(r.State)))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  queue\t%s (priority %d)\n", r.Queue, r.Priority)
	fmt.Fprintf(tw, "  attempts\t%d of %d\n", r.Attempts, r.MaxAttempts)
	fmt.Fprintf(tw, "  args\t%s\n", r.Args)
	fmt.Fprintf(tw, "  created\t%s\n", stamp(&r.CreatedAt, now))
	fmt.Fprintf(tw, "  scheduled\t%s\n", stamp(&r.ScheduledAt, now))
	fmt.Fprintf(tw, "  attempted\t%s\n", stamp(r.AttemptedAt, now))
	fmt.Fprintf(tw, "  finished\t%s\n", stamp(r.FinalizedAt, now))
	if len(r.Output) > 0 {
		fmt.Fprintf(tw, "  output\t%s\n", r.Output)
	}
	tw.Flush()
	for _, e := range r.Errors {
		fmt.Fprintf(w, "  error (attempt %d, %s): %s\n", e.Attempt, e.At.UTC().Format(time.RFC3339), e.Error)
	}
	for _, warn := range r.Warnings {
		fmt.Fprintf(w, "  warning: %s\n", warn)
	}
}

func stamp(t *time.Time, now time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	if t.After(now) {
		return fmt.Sprintf("%s (in %s)", t.UTC().Format("2006-01-02 15:04:05Z"), t.Sub(now).Round(time.Second))
	}
	return ago(*t, now)
}

func newTasksListCmd(d *deps) *cobra.Command {
	var states, kinds []string
	var limit int
	c := &cobra.Command{
		Use:   "list [--state S] [--kind K]",
		Short: "List tasks, newest first",
		Long: `List tasks newest first, optionally only some states and kinds (each
flag repeatable or comma-separated).

Exit codes: 0 listed, 1 the database failed, 2 usage or configuration error.`,
		Example: `  ip2a-ops tasks list --state failed,retrying
  ip2a-ops tasks list --kind noop --limit 10 --json`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			ctx := c.Context()
			opts := tasks.ListOptions{Kinds: kinds, Limit: limit}
			for _, s := range states {
				st, err := tasks.ParseState(s)
				if err != nil {
					return err
				}
				opts.States = append(opts.States, st)
			}
			svc, err := d.taskService(ctx)
			if err != nil {
				return err
			}
			rs, err := svc.List(ctx, opts)
			if err != nil {
				return err
			}
			if d.g.json {
				return writeJSON(d.stdout, map[string]any{"tasks": rs})
			}
			printTaskList(d.stdout, rs, d.now())
			return nil
		},
	}
	c.Flags().StringSliceVar(&states, "state", nil, "only tasks in these states: pending, scheduled, running, retrying, completed, failed, cancelled")
	c.Flags().StringSliceVar(&kinds, "kind", nil, "only tasks of these kinds")
	c.Flags().IntVar(&limit, "limit", tasks.DefaultListLimit, "at most this many tasks")
	return c
}

func printTaskList(w io.Writer, rs []tasks.Result, now time.Time) {
	if len(rs) == 0 {
		fmt.Fprintln(w, "no tasks")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tKIND\tQUEUE\tSTATE\tATTEMPTS\tCREATED\tLAST ERROR")
	for _, r := range rs {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d/%d\t%s\t%s\n", r.ID, r.Kind, r.Queue, r.State, r.Attempts, r.MaxAttempts,
			ago(r.CreatedAt, now), truncateText(r.LastError(), 60))
	}
	tw.Flush()
}

func truncateText(s string, n int) string {
	if s == "" {
		return "-"
	}
	if len(s) > n {
		return s[:n-3] + "..."
	}
	return s
}

func newTasksCancelCmd(d *deps) *cobra.Command {
	return &cobra.Command{
		Use:   "cancel ID",
		Short: "Cancel a task so that it does not run (again)",
		Long: `Cancel a task. A pending, scheduled or retrying task is cancelled at once;
a running one has its context cancelled and ends cancelled when its
handler returns with an error (one that completes anyway stays completed).

Exit codes: 0 cancelled or being cancelled, 1 it had already completed or
failed (nothing changed), 2 no such task or configuration error.`,
		Example: `  ip2a-ops tasks cancel 42`,
		Args:    cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return changeTask(c.Context(), d, args[0], "cancel", func(s tasks.Service, id tasks.ID) (tasks.Result, error) {
				return s.Cancel(c.Context(), id)
			}, func(r tasks.Result) (string, error) {
				switch r.State {
				case tasks.StateCancelled:
					return "cancelled", nil
				case tasks.StateRunning:
					return "running: asked to stop; it ends cancelled when its handler returns", nil
				}
				return "", fmt.Errorf("task %d had already %s: not cancelled", r.ID, finishedVerb(r.State))
			})
		},
	}
}

func newTasksRetryCmd(d *deps) *cobra.Command {
	return &cobra.Command{
		Use:   "retry ID",
		Short: "Run a finished or waiting task again now",
		Long: `Make a task that is not running run again now: a failed or cancelled one
(with one more attempt if it had used them all), a completed one, or one
that is waiting for its time or its next attempt.

Exit codes: 0 queued to run, 2 no such task or configuration error,
4 the task is running now (nothing changed).`,
		Example: `  ip2a-ops tasks retry 42`,
		Args:    cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return changeTask(c.Context(), d, args[0], "retry", func(s tasks.Service, id tasks.ID) (tasks.Result, error) {
				return s.Retry(c.Context(), id)
			}, func(r tasks.Result) (string, error) {
				if r.State == tasks.StateRunning {
					return "", fmt.Errorf("task %d is running now: not retried: %w", r.ID, exitcode.ErrSkipped)
				}
				return "pending: runs again as soon as a worker is free", nil
			})
		},
	}
}

// changeTask runs cancel or retry and reports the task's state after it.
func changeTask(ctx context.Context, d *deps, arg, verb string, change func(tasks.Service, tasks.ID) (tasks.Result, error), judge func(tasks.Result) (string, error)) error {
	id, err := tasks.ParseID(arg)
	if err != nil {
		return err
	}
	svc, err := d.taskService(ctx)
	if err != nil {
		return err
	}
	r, err := change(svc, id)
	if errors.Is(err, tasks.ErrNotFound) {
		return exitcode.Usagef("ip2a-ops tasks list", "no task %d", id)
	}
	if err != nil {
		return err
	}
	what, verdict := judge(r)
	if d.g.json {
		if err := writeJSON(d.stdout, r); err != nil {
			return err
		}
	} else if verdict == nil {
		fmt.Fprintf(d.stdout, "task %d %s\n", r.ID, what)
	}
	if verdict == nil {
		d.logger.Info("task "+verb, "task_id", int64(r.ID), "kind", r.Kind, "state", string(r.State))
	}
	return verdict
}

func finishedVerb(s tasks.State) string {
	if s == tasks.StateFailed {
		return "failed"
	}
	return string(s)
}
