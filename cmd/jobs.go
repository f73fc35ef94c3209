package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/ip2a/ip2a-ops/pkg/exitcode"
	"github.com/ip2a/ip2a-ops/pkg/ledger"
	"github.com/ip2a/ip2a-ops/pkg/metrics"
)

func newJobsCmd(d *deps) *cobra.Command {
	c := &cobra.Command{
		Use:   "jobs",
		Short: "See what ran, what is running and what failed (the run ledger)",
		Long: `Every run of every job is a row in the run ledger (ip2a_ops.runs), whatever
started it: a person, cron, systemd, Railway, the daemon or the queue.
States: running, succeeded, failed, skipped (another run was active),
interrupted (SIGINT/SIGTERM), abandoned (its process died: no heartbeat).`,
	}
	c.AddCommand(newJobsStatusCmd(d), newJobsHistoryCmd(d), newJobsShowCmd(d))
	return c
}

func newJobsStatusCmd(d *deps) *cobra.Command {
	var check bool
	var maxAges []string
	c := &cobra.Command{
		Use:   "status",
		Short: "Per job: last run, last success, state, duration, running now",
		Long: `Per job: the last run (skipped attempts aside), its state and duration,
the time of the last success, the run active now with how far along it is
(as of its last heartbeat: "dump: 412 MiB of 770 MiB, 53%, 3s left"), and
counts of runs and failures. With --json, a running run carries "progress":
{"phase", "unit", "done", "total", "rate_per_second", "phase_started_at",
"updated_at"}.

With --check, each job given a --max-age must have succeeded within it; a
job that never succeeded is stale too. Exit 3 names the stale jobs, so any
uptime probe or cron MAILTO becomes a dead-man's switch. Ages take Go
durations plus days and weeks: 26h, 32d, 1w.

Exit codes: 0 shown (and with --check every job fresh), 1 the ledger could
not be read, 2 configuration error, 3 --check found stale jobs.`,
		Example: `  ip2a-ops jobs status --check --max-age backup=26h --max-age integrity-check=26h --max-age audit-archive=32d
  IP2A_OPS_MAX_AGE=backup=26h,audit-archive=32d ip2a-ops jobs status --check --json`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			ctx := c.Context()
			var ages map[string]time.Duration
			if check {
				var err error
				if ages, err = metrics.ParseMaxAges(maxAges); err != nil {
					return exitcode.Usagef("--max-age backup=26h", "%v", err)
				}
				if len(ages) == 0 {
					return exitcode.Usagef("--max-age backup=26h --max-age audit-archive=32d", "--check needs at least one --max-age job=age")
				}
			}
			l, err := d.ledger(ctx)
			if err != nil {
				return err
			}
			st, err := l.Status(ctx)
			if err != nil {
				return err
			}
			if !check {
				if d.g.json {
					return writeJSON(d.stdout, map[string]any{"jobs": st})
				}
				printStatus(d.stdout, st, d.now())
				return nil
			}
			return statusCheck(d, st, ages)
		},
	}
	c.Flags().BoolVar(&check, "check", false, "exit 3 when a job given a --max-age has not succeeded within it")
	c.Flags().StringArrayVar(&maxAges, "max-age", nil, "job=age for --check, repeatable or comma-separated (e.g. backup=26h,audit-archive=32d)")
	envFlag(c.Flags(), "max-age", "IP2A_OPS_MAX_AGE")
	return c
}

// statusCheck prints status with the freshness verdicts and returns an
// exit-3 error naming the stale jobs.
func statusCheck(d *deps, st []ledger.JobStatus, ages map[string]time.Duration) error {
	last := map[string]time.Time{}
	for _, s := range st {
		if s.LastSuccess != nil {
			last[s.Job] = *s.LastSuccess
		}
	}
	fresh := metrics.CheckFreshness(last, ages, d.now())
	stale := []string{}
	for _, f := range fresh {
		if f.Stale {
			stale = append(stale, f.Job)
		}
	}
	if d.g.json {
		if err := writeJSON(d.stdout, map[string]any{"jobs": st, "check": map[string]any{"ok": len(stale) == 0, "stale": stale, "jobs": fresh}}); err != nil {
			return err
		}
	} else {
		printStatus(d.stdout, st, d.now())
		fmt.Fprintln(d.stdout)
		for _, f := range fresh {
			switch {
			case f.Stale:
				fmt.Fprintf(d.stdout, "STALE  %s: %s (max age %s)\n", f.Job, f.Reason, f.MaxAge)
			default:
				fmt.Fprintf(d.stdout, "ok     %s: last success %s ago (max age %s)\n", f.Job, metrics.FormatAge(time.Duration(*f.AgeSeconds*float64(time.Second)).Round(time.Minute)), f.MaxAge)
			}
		}
	}
	if len(stale) > 0 {
		return fmt.Errorf("stale jobs: %s: %w", strings.Join(stale, ", "), exitcode.ErrProblems)
	}
	return nil
}

func printStatus(w io.Writer, st []ledger.JobStatus, now time.Time) {
	if len(st) == 0 {
		fmt.Fprintln(w, "no runs recorded yet")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tLAST RUN\tSTATE\tEXIT\tDURATION\tLAST SUCCESS\tRUNNING NOW\tRUNS\tFAILURES")
	for _, s := range st {
		last, state, exit, dur := "-", "-", "-", "-"
		if r := s.LastRun; r != nil {
			last = ago(r.StartedAt, now)
			state = r.State
			if r.ExitCode != nil {
				exit = strconv.Itoa(*r.ExitCode)
			}
			dur = r.Duration().Round(time.Millisecond).String()
		}
		success := "never"
		if s.LastSuccess != nil {
			success = ago(*s.LastSuccess, now)
		}
		running := "-"
		if r := s.Running; r != nil {
			running = fmt.Sprintf("run %d on %s (pid %d) for %s", r.ID, r.Host, r.PID, now.Sub(r.StartedAt).Round(time.Second))
			if r.Progress != nil {
				running += "; " + r.Progress.String()
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\n", s.Job, last, state, exit, dur, success, running, s.Runs, s.Failures)
	}
	tw.Flush()
}

func ago(t, now time.Time) string {
	return fmt.Sprintf("%s (%s ago)", t.UTC().Format("2006-01-02 15:04:05Z"), now.Sub(t).Round(time.Second))
}

type jobsHistoryOptions struct {
	job, state string
	limit      int
}

func newJobsHistoryCmd(d *deps) *cobra.Command {
	var o jobsHistoryOptions
	c := &cobra.Command{
		Use:   "history",
		Short: "List runs, newest first",
		Long: `List runs, newest first, optionally of one job or one state.

Exit codes: 0 shown, 1 the ledger could not be read, 2 configuration error.`,
		Example: `  ip2a-ops jobs history --job backup --limit 5
  ip2a-ops jobs history --state failed --json`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error { return runJobsHistory(c.Context(), d, o) },
	}
	c.Flags().StringVar(&o.job, "job", "", "only runs of this job")
	c.Flags().StringVar(&o.state, "state", "", "only runs in this state (running, succeeded, failed, skipped, interrupted, abandoned)")
	c.Flags().IntVar(&o.limit, "limit", 20, "at most this many runs")
	return c
}

func runJobsHistory(ctx context.Context, d *deps, o jobsHistoryOptions) error {
	if o.limit <= 0 {
		return exitcode.Usagef("--limit 20", "--limit must be positive, got %d", o.limit)
	}
	l, err := d.ledger(ctx)
	if err != nil {
		return err
	}
	runs, err := l.History(ctx, ledger.HistoryFilter{Job: o.job, State: o.state, Limit: o.limit})
	if err != nil {
		return err
	}
	if d.g.json {
		return writeJSON(d.stdout, map[string]any{"runs": runs})
	}
	if len(runs) == 0 {
		fmt.Fprintln(d.stdout, "no runs")
		return nil
	}
	tw := tabwriter.NewWriter(d.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RUN\tJOB\tTRIGGER\tSTARTED\tDURATION\tSTATE\tEXIT\tHOST\tERROR")
	for _, r := range runs {
		exit := "-"
		if r.ExitCode != nil {
			exit = strconv.Itoa(*r.ExitCode)
		}
		trigger := r.Trigger
		if r.TaskID != nil {
			trigger += fmt.Sprintf(" (task %d)", *r.TaskID)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Job, trigger, r.StartedAt.UTC().Format("2006-01-02 15:04:05Z"),
			r.Duration().Round(time.Millisecond), r.State, exit, r.Host, truncate(r.Error, 80))
	}
	return tw.Flush()
}

func truncate(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		return s[:n-3] + "..."
	}
	return s
}

func newJobsShowCmd(d *deps) *cobra.Command {
	return &cobra.Command{
		Use:   "show RUN_ID",
		Short: "Show one run with its arguments, error and summary",
		Long: `Show one run with its arguments (secrets removed), error and the JSON
summary of what the job did.

Exit codes: 0 shown, 1 the ledger could not be read, 2 no such run or bad id.`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			ctx := c.Context()
			id, err := strconv.ParseInt(args[0], 10, 64)
			if err != nil {
				return exitcode.Usagef("ip2a-ops jobs history", "run id must be a number, got %q", args[0])
			}
			l, err := d.ledger(ctx)
			if err != nil {
				return err
			}
			r, err := l.Get(ctx, id)
			if errors.Is(err, pgx.ErrNoRows) {
				return exitcode.Usagef("ip2a-ops jobs history", "no run with id %d", id)
			}
			if err != nil {
				return err
			}
			if d.g.json {
				return writeJSON(d.stdout, r)
			}
			printRun(d.stdout, r)
			return nil
		},
	}
}

func printRun(w io.Writer, r ledger.Run) {
	exit := "-"
	if r.ExitCode != nil {
		exit = strconv.Itoa(*r.ExitCode)
	}
	fin := "-"
	if r.FinishedAt != nil {
		fin = r.FinishedAt.UTC().Format(time.RFC3339Nano)
	}
	fmt.Fprintf(w, "run:       %d\njob:       %s\nstate:     %s\nexit code: %s\ntrigger:   %s\nhost:      %s (pid %d)\nargs:      %s\nstarted:   %s\nheartbeat: %s\nfinished:  %s\nduration:  %s\n",
		r.ID, r.Job, r.State, exit, r.Trigger, r.Host, r.PID, strings.Join(r.Args, " "), r.StartedAt.UTC().Format(time.RFC3339Nano),
		r.HeartbeatAt.UTC().Format(time.RFC3339Nano), fin, r.Duration().Round(time.Millisecond))
	if r.Slot != nil {
		fmt.Fprintf(w, "slot:      %s\n", r.Slot.UTC().Format(time.RFC3339))
	}
	if r.TaskID != nil {
		fmt.Fprintf(w, "task:      %d   (ip2a-ops tasks status %d)\n", *r.TaskID, *r.TaskID)
	}
	if r.Error != "" {
		fmt.Fprintf(w, "error:     %s\n", r.Error)
	}
	if p := r.Progress; p != nil {
		what := "progress:  "
		if r.State != ledger.Running {
			what = "stopped:   "
		}
		fmt.Fprintf(w, "%s%s (phase since %s, as of %s)\n", what, p.String(), p.PhaseStarted.UTC().Format(time.RFC3339),
			p.Updated.UTC().Format(time.RFC3339))
	}
	if len(r.Summary) > 0 {
		fmt.Fprintf(w, "summary:   %s\n", string(r.Summary))
	}
}
