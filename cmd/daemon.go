package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/ip2a/ip2a-ops/pkg/exitcode"
	"github.com/ip2a/ip2a-ops/pkg/httpserve"
	"github.com/ip2a/ip2a-ops/pkg/jobs"
	"github.com/ip2a/ip2a-ops/pkg/scheduler"
	"github.com/ip2a/ip2a-ops/pkg/tasks"
)

type daemonOptions struct {
	crontab         string
	check           bool
	web             webOptions
	shutdownTimeout time.Duration
	maxWait         time.Duration
	lateAfter       time.Duration
	claimHost       string
	enqueue         bool
}

func newDaemonCmd(d *deps) *cobra.Command {
	var o daemonOptions
	c := &cobra.Command{
		Use:   "daemon --crontab FILE | --check FILE",
		Short: "Run the jobs of a crontab file on schedule, once per slot across replicas",
		Long: `Read a crontab file (the same file system cron reads: see 'ip2a-ops
schedule explain' and docs/daemon.md for the accepted format) and run each
entry's ip2a-ops command in-process, through the same runner and run ledger
as a manual run, with trigger "daemon" and the slot it fills.

  - Once per slot: each (entry, scheduled time) is claimed in the database
    (table slot_claims), so two or three daemons on one database run each
    slot once, whichever wins.
  - Overlap: a slot that comes while its job still runs is recorded as a
    skipped run (exit 4); an entry ending in "# ip2a-ops: overlap=queue"
    waits for the run instead (one slot at most waits).
  - Catch-up: after downtime or sleep only the latest missed slot of an entry
    is considered, and runs if it is within the entry's catch-up window
    ("# ip2a-ops: catchup=24h|once|none"; defaults: backup 24h, audit-archive
    once, others none). A slot up to --late-after late always runs.
  - Schedules are in UTC unless a CRON_TZ= line names a zone; a slot in a
    spring-forward gap runs once at the transition, a repeated fall-back
    time runs once.
  - A job that panics is a failed run; the daemon goes on. Waits are capped
    at --max-wait so a clock jump or resume from sleep is noticed.
  - SIGTERM/SIGINT: stop scheduling, let running jobs finish up to
    --shutdown-timeout, then cancel them (recorded interrupted), exit 0.
    SIGHUP re-reads the crontab (a bad file is logged, the old one kept).
  - HTTP on --listen: /healthz, /readyz (database reachable, ledger
    writable), /metrics (Prometheus text), the web page (below).
    --listen "" turns it off.
  - --enqueue (or "# ip2a-ops: enqueue=true" on an entry) hands a job's
    slots to the task queue instead: the daemon that claims a slot queues
    one task for it (unique per slot), any 'ip2a-ops worker' runs it, and
    the ledger shows the run with trigger "queue", the task id and the
    slot. The claim and the task commit together: if the queue refuses
    the task, the slot is not claimed and is tried again 5 s later.
    enqueue=false keeps an entry in the daemon. Commands that are not
    jobs (metrics, jobs status) always run in the daemon.

--check FILE only validates the file: exit 0, or 2 naming each bad line
and why.

` + webHelp + `

Exit codes: 0 stopped cleanly or the file is valid, 1 could not start
(database, listen address), 2 bad crontab or configuration.`,
		Example: `  ip2a-ops daemon --check crontab.example
  ip2a-ops daemon --crontab /etc/ip2a-ops/crontab --listen 127.0.0.1:9187
  kill -HUP $(pidof ip2a-ops)    # reload the crontab`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if len(args) == 1 {
				if o.crontab != "" && o.crontab != args[0] {
					return exitcode.Usagef("ip2a-ops daemon --crontab FILE", "two crontab files given: %s and %s", o.crontab, args[0])
				}
				o.crontab = args[0]
			}
			if o.crontab == "" {
				return exitcode.Usagef("ip2a-ops daemon --crontab FILE   (or --check FILE)", "no crontab file given")
			}
			if o.check {
				return runDaemonCheck(d, o.crontab)
			}
			return runDaemon(c.Context(), d, o)
		},
	}
	f := c.Flags()
	f.StringVar(&o.crontab, "crontab", "", "crontab file to run")
	envFlag(f, "crontab", "IP2A_OPS_CRONTAB")
	f.BoolVar(&o.check, "check", false, "only validate the crontab file and exit 0, or 2 naming the bad lines")
	addWebFlags(f, &o.web, "127.0.0.1:9187")
	f.DurationVar(&o.shutdownTimeout, "shutdown-timeout", time.Minute, "on SIGTERM, how long running jobs may finish before they are cancelled")
	envFlag(f, "shutdown-timeout", "IP2A_OPS_SHUTDOWN_TIMEOUT")
	f.DurationVar(&o.lateAfter, "late-after", 5*time.Minute, "a slot noticed later than this was missed, and runs only within the entry's catch-up window")
	envFlag(f, "late-after", "IP2A_OPS_LATE_AFTER")
	f.DurationVar(&o.maxWait, "max-wait", time.Minute, "longest single wait, so clock jumps and resumes are noticed")
	f.BoolVar(&o.enqueue, "enqueue", false, "hand job slots to the task queue for 'ip2a-ops worker' processes instead of running them here (per entry: enqueue=true|false)")
	envFlag(f, "enqueue", "IP2A_OPS_DAEMON_ENQUEUE")
	f.StringVar(&o.claimHost, "claim-host", "", "name recorded with this daemon's slot claims (default: the host name)")
	_ = f.MarkHidden("max-wait")
	_ = f.MarkHidden("claim-host")
	return c
}

func loadCrontab(file string) (*scheduler.Crontab, error) {
	fh, err := os.Open(file)
	if err != nil {
		return nil, exitcode.Usagef("ip2a-ops daemon --crontab FILE", "read crontab: %v", err)
	}
	defer fh.Close()
	ct, err := scheduler.Parse(fh, resolveEntry)
	if err == nil {
		err = checkEnqueue(ct)
	}
	var pe *scheduler.ParseError
	if errors.As(err, &pe) {
		return ct, exitcode.UsageError(fmt.Errorf("%s: %w", file, err), "ip2a-ops daemon --check "+file)
	}
	return ct, err
}

type crontabCheck struct {
	File    string           `json:"file"`
	Valid   bool             `json:"valid"`
	Entries []checkedEntry   `json:"entries"`
	Errors  []checkedProblem `json:"errors"`
}

type checkedEntry struct {
	scheduler.Entry
	CatchUp string `json:"catchup"`
}

type checkedProblem struct {
	Line   int    `json:"line"`
	Reason string `json:"reason"`
	Text   string `json:"text"`
}

func runDaemonCheck(d *deps, file string) error {
	ct, err := loadCrontab(file)
	var pe *scheduler.ParseError
	if err != nil && !errors.As(err, &pe) {
		return err
	}
	doc := crontabCheck{File: file, Valid: pe == nil, Entries: []checkedEntry{}, Errors: []checkedProblem{}}
	if ct != nil {
		for _, e := range ct.Entries {
			doc.Entries = append(doc.Entries, checkedEntry{e, e.CatchUp.String()})
		}
	}
	if pe != nil {
		for _, l := range pe.Lines {
			doc.Errors = append(doc.Errors, checkedProblem{l.Line, l.Reason, l.Text})
		}
	}
	if d.g.json {
		if werr := writeJSON(d.stdout, doc); werr != nil {
			return werr
		}
	} else {
		for _, p := range doc.Errors {
			fmt.Fprintf(d.stdout, "%s:%d: %s\n    %s\n", file, p.Line, p.Reason, p.Text)
		}
		if pe == nil {
			for _, e := range doc.Entries {
				opt := ""
				if e.Enqueue != nil {
					opt = fmt.Sprintf(" enqueue=%t", *e.Enqueue)
				}
				fmt.Fprintf(d.stdout, "line %-3d %-14s %-16s %-16s overlap=%s catchup=%s key=%s%s\n", e.Line, e.Spec, e.Zone, e.Job, e.Overlap, e.CatchUp, e.Key, opt)
			}
			fmt.Fprintf(d.stdout, "%s: %d entries, valid\n", file, len(doc.Entries))
		}
	}
	if pe != nil {
		return exitcode.UsageError(fmt.Errorf("%s: %d bad line(s)", file, len(pe.Lines)), "fix the lines above; format: docs/daemon.md")
	}
	return nil
}

func runDaemon(ctx context.Context, d *deps, o daemonOptions) error {
	ct, err := loadCrontab(o.crontab)
	if err != nil {
		return err
	}
	pool, err := d.opsDB(ctx)
	if err != nil {
		return err
	}
	url, err := d.dbURL()
	if err != nil {
		return err
	}
	queue, err := d.slotQueue(ctx, ct, o.enqueue)
	if err != nil {
		return err
	}
	handoff := &slotHandoff{d: d, queue: queue, enqueue: o.enqueue, url: url}
	claims := scheduler.NewClaims(pool, d.g.schema)
	stats := &scheduler.Stats{}
	host := o.claimHost
	if host == "" {
		host = hostname()
	}
	if o.web.listen != "" {
		stopWeb, err := d.serveWeb(ctx, o.web, pool, httpserve.Options{
			Health: func() error {
				snap := stats.Snapshot()
				if !snap.LastTick.IsZero() && time.Since(snap.LastTick) > 3*o.maxWait {
					return fmt.Errorf("scheduling loop has not turned for %s", time.Since(snap.LastTick).Round(time.Second))
				}
				return nil
			},
			Ready: func(ctx context.Context) error {
				if err := pool.Ping(ctx); err != nil {
					return fmt.Errorf("database not reachable: %w", err)
				}
				return claims.CheckWritable(ctx)
			},
			Metrics: func(ctx context.Context) []httpserve.Metric {
				return append(scheduler.Metrics(ctx, scheduler.MetricsOptions{Stats: stats, Claims: claims}), tasks.Metrics(ctx, pool, d.g.schema)...)
			}})
		if err != nil {
			return err
		}
		defer stopWeb()
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reload := make(chan struct{})
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				select {
				case reload <- struct{}{}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	_, err = scheduler.RunDaemon(ctx, scheduler.Options{
		Crontab: ct, Load: func() (*scheduler.Crontab, error) { return loadCrontab(o.crontab) }, Reload: reload,
		Claims: claims, Host: host, PID: os.Getpid(), Logger: d.logger, Stats: stats,
		MaxWait: o.maxWait, LateAfter: o.lateAfter, ShutdownTimeout: o.shutdownTimeout,
		Run: func(ctx context.Context, req scheduler.RunRequest) int {
			child := d.child(req, url)
			defer child.close()
			return child.exit(child.runEntry(ctx, req))
		},
		Handoff: handoff,
	})
	return err
}

// child is the dependencies of an entry's in-process run (or hand-off):
// the daemon's streams and clock, the entry's environment.
func (d *deps) child(req scheduler.RunRequest, url string) *deps {
	return newDeps(Env{Stdin: strings.NewReader(""), Stdout: d.stdout, Stderr: d.stderr, Getenv: d.childGetenv(req, url), Now: d.now})
}

// childGetenv is the environment of an entry's in-process run: the
// crontab's NAME=value lines over the daemon's settings over the process
// environment; trigger and slot always come from the daemon.
func (d *deps) childGetenv(req scheduler.RunRequest, url string) func(string) string {
	over := map[string]string{
		"DATABASE_URL":             url,
		"IP2A_OPS_SCHEMA":          d.g.schema,
		"IP2A_OPS_LOG_FORMAT":      d.g.logFormat,
		"IP2A_OPS_LOG_LEVEL":       d.g.logLevel,
		"IP2A_OPS_HEARTBEAT":       d.g.heartbeat.String(),
		"IP2A_OPS_STALE_AFTER":     d.g.staleAfter.String(),
		"IP2A_OPS_CONNECT_TIMEOUT": d.g.connectTimeout.String(),
	}
	for k, v := range req.Entry.Env {
		over[k] = v
	}
	if d.g.directURL != "" {
		over["DATABASE_DIRECT_URL"] = d.g.directURL
	}
	over["IP2A_OPS_TRIGGER"] = "daemon"
	over["IP2A_OPS_SLOT"] = req.Slot.UTC().Format(time.RFC3339)
	return func(k string) string {
		if v, ok := over[k]; ok {
			return v
		}
		return d.getenv(k)
	}
}

// slotTime parses --slot (IP2A_OPS_SLOT): nil when unset.
func (d *deps) slotTime() (*time.Time, error) {
	if d.g.slot == "" {
		return nil, nil
	}
	t, err := time.Parse(time.RFC3339, d.g.slot)
	if err != nil {
		return nil, exitcode.Usagef("--slot 2026-03-08T02:00:00Z", "invalid --slot %q: want an RFC 3339 time", d.g.slot)
	}
	t = t.UTC()
	return &t, nil
}

// runEntry runs a crontab entry's command line: the command tree turns it
// into a job and its arguments (capture mode, nothing runs), which then run
// through jobs.Execute like any other run. A command that is not a job
// (metrics, jobs status) runs as it would from a shell. (Queued entries
// go to slotHandoff instead.)
func (d *deps) runEntry(ctx context.Context, req scheduler.RunRequest) error {
	d.capture = true
	if err := d.execute(ctx, req.Entry.Args); err != nil || d.captured == nil {
		return err
	}
	d.capture = false
	return d.invoke(ctx, d.captured)
}

// resolveEntry names the ledger job of a crontab line and its default
// catch-up policy, through the same command tree a person's command line
// goes through: a job command only records its job and arguments; for any
// other command the name is its path (backup-status, metrics).
func resolveEntry(args []string) (string, scheduler.CatchUp, error) {
	d := newDeps(Env{Stdout: io.Discard, Stderr: io.Discard, Getenv: func(string) string { return "" }, Now: time.Now})
	defer d.close()
	root := newRootCmd(d)
	c, _, err := root.Find(args)
	if err != nil {
		return "", scheduler.CatchUp{}, err
	}
	if c == root {
		return "", scheduler.CatchUp{}, errors.New("no ip2a-ops command after the program name")
	}
	if c.Annotations[jobAnnotation] == "" {
		return strings.ReplaceAll(strings.TrimPrefix(c.CommandPath(), root.Name()+" "), " ", "-"), scheduler.CatchUp{}, nil
	}
	d.capture = true
	if err := d.execute(context.Background(), args); err != nil {
		return "", scheduler.CatchUp{}, errors.New(oneLine(err.Error()))
	}
	if d.captured == nil { // a job command that only lists (integrity-check --list)
		return c.Name(), scheduler.CatchUp{}, nil
	}
	job, _ := jobs.Lookup(d.captured.kind)
	name, err := job.LedgerName(d.captured.args)
	if err != nil {
		return "", scheduler.CatchUp{}, err
	}
	return name, job.DefaultCatchUp(), nil
}

// jobAnnotation marks a command that runs a job (runJob) with the job's
// kind, so resolving a crontab line executes only those in capture mode,
// and `tasks enqueue KIND -- FLAGS` finds the command that reads FLAGS.
const jobAnnotation = "ip2a-ops-job"

// jobCommand is the annotations of a command that runs job.
func jobCommand(job jobs.Job) map[string]string { return map[string]string{jobAnnotation: job.Kind()} }
