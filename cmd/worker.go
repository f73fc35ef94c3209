package cmd

import (
	"context"
	"fmt"
	"maps"
	"runtime/debug"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ip2a/ip2a-ops/pkg/dbconn"
	"github.com/ip2a/ip2a-ops/pkg/exitcode"
	"github.com/ip2a/ip2a-ops/pkg/httpserve"
	"github.com/ip2a/ip2a-ops/pkg/jobs"
	"github.com/ip2a/ip2a-ops/pkg/notify"
	"github.com/ip2a/ip2a-ops/pkg/tasks"
)

// workerGCPercent is the worker's GOGC unless the environment sets one:
// bench/tasks/ab.sh measured 3,420 queued runs a second on two workers
// against 3,140 at GOGC=100, and the idle worker stays within its memory
// budget (docs/tasks.md).
const workerGCPercent = 200

type workerOptions struct {
	queues      []string
	concurrency int
	stopTimeout time.Duration
	taskTimeout time.Duration
	rescueAfter time.Duration
	web         webOptions
}

func newWorkerCmd(d *deps) *cobra.Command {
	var o workerOptions
	c := &cobra.Command{
		Use:   "worker",
		Short: "Run queued tasks (the durable task queue, River) until stopped",
		Long: `Take tasks from the queue in ip2a-ops's schema (River's tables, created by
'ip2a-ops migrate') and run them. Any number of workers, on one host or
several, share one database's tasks: each task goes to one worker. Tasks
come from 'ip2a-ops tasks enqueue', from the app (riverqueue-python; see
docs/tasks.md) or from any River client.

  - Kinds this worker runs: ` + strings.Join(d.taskHandlers().Kinds(), ", ") + `.
  - Every ip2a-ops job is a kind: the worker runs it through the run ledger
    (trigger queue, the task id on the run; see 'ip2a-ops jobs history').
  - A failed attempt is retried with backoff (1 s, 16 s, 81 s, ...) until the
    task's max attempts, then the task is failed; a task whose args do not
    parse, or whose job is misconfigured, fails at once. A job found busy
    (another run of it active) waits --busy-snooze and tries again without
    using an attempt.
  - An attempt running longer than --task-timeout is cancelled and counts
    as failed. A task left running by a worker that died (kill -9, a lost
    host) is run again once it has been running for --rescue-after.
  - SIGTERM/SIGINT: take no new tasks, let running ones finish up to
    --stop-timeout, then cancel them; a task cancelled this way goes back
    to the queue for another worker (its attempt not counted). Exit 0.
  - The database may go away: the worker keeps retrying and resumes when
    it is back.
  - River LISTENs for new tasks on a connection it keeps, which needs a
    session of its own: the worker connects with --direct-url
    (DATABASE_DIRECT_URL) when set, else --database-url.
  - The worker runs with GOGC=200 unless GOGC is set: a little more memory
    for less CPU spent collecting garbage between many short tasks.

Exit codes: 0 stopped cleanly, 1 could not start or stop (database),
2 configuration error (bad flag, schema or task queue not migrated).

` + webHelp + `

` + appTaskEnvHelp,
		Example: `  ip2a-ops worker
  ip2a-ops worker --queues default,reports --concurrency 2 --stop-timeout 2m`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error { return runWorker(c.Context(), d, o) },
	}
	f := c.Flags()
	f.StringSliceVar(&o.queues, "queues", []string{tasks.DefaultQueue}, "queues to take tasks from, comma-separated")
	envFlag(f, "queues", "IP2A_OPS_WORKER_QUEUES")
	f.IntVar(&o.concurrency, "concurrency", tasks.DefaultConcurrency, "tasks of each queue running at once")
	envFlag(f, "concurrency", "IP2A_OPS_WORKER_CONCURRENCY")
	f.DurationVar(&o.stopTimeout, "stop-timeout", tasks.DefaultStopTimeout, "on SIGTERM, how long running tasks may go on before they are cancelled and given back")
	envFlag(f, "stop-timeout", "IP2A_OPS_WORKER_STOP_TIMEOUT")
	f.DurationVar(&o.taskTimeout, "task-timeout", tasks.DefaultTimeout, "cancel an attempt that runs longer than this (it counts as failed)")
	envFlag(f, "task-timeout", "IP2A_OPS_TASK_TIMEOUT")
	f.DurationVar(&d.busySnooze, "busy-snooze", jobs.DefaultSkipSnooze, "a job found running elsewhere waits this long before its task tries again")
	envFlag(f, "busy-snooze", "IP2A_OPS_WORKER_BUSY_SNOOZE")
	f.DurationVar(&o.rescueAfter, "rescue-after", 0, "run again a task left running this long by a dead worker (default: --task-timeout + 10m)")
	envFlag(f, "rescue-after", "IP2A_OPS_RESCUE_AFTER")
	addWebFlags(f, &o.web, "")
	return c
}

func runWorker(ctx context.Context, d *deps, o workerOptions) error {
	if o.concurrency < 1 {
		return exitcode.Usagef("--concurrency 4", "--concurrency must be at least 1")
	}
	handlers := d.taskHandlers()
	app, err := d.appTaskHandlers()
	if err != nil {
		return err
	}
	maps.Copy(handlers, app)
	if _, err := d.opsDB(ctx); err != nil { // schema current (or --auto-migrate)
		return err
	}
	// A pool of its own, big enough for every running task plus River's
	// listener, fetchers and completer, and the web page; direct, as the
	// listener needs a session (through a transaction pool its LISTEN would
	// stay on a server connection other clients get).
	url, err := d.directURL()
	if err != nil {
		return err
	}
	pool, err := dbconn.Open(ctx, url, dbconn.Options{MaxConns: int32(len(o.queues)*o.concurrency + 9), ConnectTimeout: d.g.connectTimeout})
	if err != nil {
		return err
	}
	defer pool.Close()
	stopWeb, err := d.serveWeb(ctx, o.web, pool, httpserve.Options{
		Ready: func(ctx context.Context) error {
			if err := pool.Ping(ctx); err != nil {
				return fmt.Errorf("database not reachable: %w", err)
			}
			return tasks.CheckSchema(ctx, pool, d.g.schema)
		},
		Metrics: func(ctx context.Context) []httpserve.Metric { return tasks.Metrics(ctx, pool, d.g.schema) },
	})
	if err != nil {
		return err
	}
	defer stopWeb()
	// Queued runs take the notification backlog once a minute, not each.
	d.outboxPace = &notify.Pace{Every: time.Minute}
	if d.getenv("GOGC") == "" {
		// Many short tasks allocate quickly around a small live heap: the
		// default (100) spends a tenth of a busy worker's CPU collecting.
		debug.SetGCPercent(workerGCPercent)
	}
	return tasks.RunWorker(ctx, pool, tasks.WorkerOptions{
		Schema: d.g.schema, Handlers: handlers, Queues: o.queues, Concurrency: o.concurrency,
		StopTimeout: o.stopTimeout, Timeout: o.taskTimeout, RescueAfter: o.rescueAfter, Logger: d.logger,
	})
}
