package cmd

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ip2a/ip2a-ops/pkg/exitcode"
	"github.com/ip2a/ip2a-ops/pkg/ledger"
	"github.com/ip2a/ip2a-ops/pkg/notify"
	"github.com/ip2a/ip2a-ops/pkg/runner"
)

// notifyFlags override the environment's notification settings for the
// jobs this process runs.
type notifyFlags struct {
	pingURL    string
	webhookURL string
	emailTo    string
}

// addNotifyFlags registers the notification flags every job has.
func addNotifyFlags(pf *pflag.FlagSet, nf *notifyFlags) {
	pf.StringVar(&nf.pingURL, "ping-url", "", "healthchecks.io-style URL pinged at start, success and failure; {job} is replaced by the job name (env IP2A_OPS_PING_URL_<JOB>, IP2A_OPS_PING_URL)")
	pf.StringVar(&nf.webhookURL, "webhook-url", "", "URL that gets a JSON POST when a job fails (env IP2A_OPS_WEBHOOK_URL_<JOB>, IP2A_OPS_WEBHOOK_URL)")
	pf.StringVar(&nf.emailTo, "notify-email", "", "comma-separated addresses emailed when a job fails, through IP2A_OPS_SMTP_ADDR (env IP2A_OPS_SMTP_TO_<JOB>, IP2A_OPS_SMTP_TO)")
}

// notifyConfig is job's notification configuration: flags, then env.
func (d *deps) notifyConfig(job string) notify.Config {
	c := notify.ConfigFromEnv(d.getenv, job)
	if d.notify.pingURL != "" {
		c.PingURL = strings.ReplaceAll(d.notify.pingURL, "{job}", url.PathEscape(job))
	}
	if d.notify.webhookURL != "" {
		c.WebhookURL = d.notify.webhookURL
	}
	if d.notify.emailTo != "" {
		c.SMTP.To = notify.SplitList(d.notify.emailTo)
	}
	return c
}

// notifier returns the notifier the runner calls, or nil when nothing is
// configured for job and nothing could be waiting in the outbox.
func (d *deps) notifier() *notify.Notifier {
	return &notify.Notifier{
		Pool:   d.pool,
		Schema: d.g.schema,
		Logger: d.logger,
		Pace:   d.outboxPace,
		ConfigFunc: func(job string) notify.Config {
			s := d.notifySettings(job)
			if s.err != nil {
				// A bad setting must not stop the job: say so, send nothing.
				d.logger.Error("notification settings ignored", "job", job, "error", s.err.Error())
				return notify.Config{}
			}
			return s.cfg
		},
	}
}

// notifySettings is job's notification configuration and whether it is
// valid, worked out on the job's first run in this process.
type notifySettings struct {
	cfg notify.Config
	err error
}

// maxNotifyCached bounds the cache: ledger names are few, but a job may
// take its name from its args (sleep's job_name).
const maxNotifyCached = 1024

func (d *deps) notifySettings(job string) notifySettings {
	d.notifyMu.Lock()
	defer d.notifyMu.Unlock()
	s, ok := d.notifyCfgs[job]
	if !ok {
		s.cfg = d.notifyConfig(job)
		s.err = s.cfg.Validate()
		if d.notifyCfgs == nil || len(d.notifyCfgs) >= maxNotifyCached {
			d.notifyCfgs = map[string]notifySettings{}
		}
		d.notifyCfgs[job] = s
	}
	return s
}

// runNotifier adapts a notify.Notifier to runner.Notifier.
type runNotifier struct{ n *notify.Notifier }

func (r runNotifier) RunStarted(ctx context.Context, ev runner.Event) {
	r.n.Notify(ctx, notifyEvent(notify.PhaseStart, ev))
}

func (r runNotifier) RunFinished(ctx context.Context, ev runner.Event) {
	r.n.Notify(ctx, notifyEvent(notify.PhaseFinish, ev))
}

func notifyEvent(phase string, ev runner.Event) notify.Event {
	e := notify.Event{Phase: phase, Job: ev.Job, RunID: ev.RunID, State: ev.State, ExitCode: ev.ExitCode, Error: ev.Error,
		Host: ev.Host, Trigger: ev.Trigger, StartedAt: ev.StartedAt.UTC(), Seconds: ev.Duration.Seconds()}
	if !ev.FinishedAt.IsZero() {
		f := ev.FinishedAt.UTC()
		e.FinishedAt = &f
	}
	return e
}

// runNotifier is what execute gives the runner.
func (d *deps) runNotifier() runner.Notifier { return runNotifier{d.notifier()} }

func newNotifyCmd(d *deps, rootFlags *pflag.FlagSet) *cobra.Command {
	addNotifyFlags(rootFlags, &d.notify)
	c := &cobra.Command{
		Use:   "notify",
		Short: "Test notification settings, list and retry undelivered notifications",
		Long: `Every job pings its healthchecks.io-style URL at start, on success and on
failure (URL/start, URL, URL/<exit code>, each with ?rid=<run uuid>), and on
failure POSTs a JSON webhook and sends an email. Settings per job come from
--ping-url/--webhook-url/--notify-email, else IP2A_OPS_PING_URL_<JOB>,
IP2A_OPS_WEBHOOK_URL_<JOB>, IP2A_OPS_SMTP_TO_<JOB>, else the same names
without the job suffix (<JOB> is the job name upper-cased, '-' as '_').
SMTP: IP2A_OPS_SMTP_ADDR (host:port), IP2A_OPS_SMTP_FROM,
IP2A_OPS_SMTP_USERNAME, IP2A_OPS_SMTP_PASSWORD, IP2A_OPS_SMTP_TLS (auto,
implicit, starttls).

A notification that cannot be delivered never fails the job: it is kept in
ip2a_ops.notifications and retried by the next run of any job (backoff from
1 minute doubling to 6 hours, at most 8 attempts, at most 7 days).`,
	}
	c.AddCommand(newNotifyTestCmd(d), newNotifyListCmd(d), newNotifyRetryCmd(d))
	return c
}

type notifyTestOptions struct {
	job  string
	fail bool
}

func newNotifyTestCmd(d *deps) *cobra.Command {
	var o notifyTestOptions
	c := &cobra.Command{
		Use:   "test",
		Short: "Send a test notification on every channel configured for a job",
		Long: `Send a test event for --job on every configured channel, now, without the
outbox: a success ping, or with --fail a failure ping (exit 1), webhook and
email. Prints each channel's outcome with its target redacted.

Exit codes: 0 all delivered, 1 a channel failed, 2 nothing configured or a
bad setting.`,
		Example: `  IP2A_OPS_PING_URL_BACKUP=https://hc-ping.com/<uuid> ip2a-ops notify test --job backup
  ip2a-ops notify test --job backup --fail --json`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error { return runNotifyTest(c.Context(), d, o) },
	}
	c.Flags().StringVar(&o.job, "job", "", "job whose settings to test (required)")
	c.Flags().BoolVar(&o.fail, "fail", false, "send a failure (exit 1) instead of a success")
	return c
}

func runNotifyTest(ctx context.Context, d *deps, o notifyTestOptions) error {
	if o.job == "" {
		return exitcode.Usagef("ip2a-ops notify test --job backup", "--job is required")
	}
	cfg := d.notifyConfig(o.job)
	if err := cfg.Validate(); err != nil {
		return exitcode.Usagef("fix the IP2A_OPS_* notification variables or flags", "notification settings for %s: %v", o.job, err)
	}
	if !cfg.Any() {
		return exitcode.Usagef("set IP2A_OPS_PING_URL_"+strings.ToUpper(strings.ReplaceAll(o.job, "-", "_"))+", IP2A_OPS_WEBHOOK_URL or IP2A_OPS_SMTP_*", "no notification configured for %s", o.job)
	}
	now := d.now().UTC()
	ev := notify.Event{Phase: notify.PhaseFinish, Job: o.job, State: ledger.Succeeded, Host: hostname(), Trigger: "manual",
		StartedAt: now, FinishedAt: &now}
	if o.fail {
		ev.State, ev.ExitCode, ev.Error = ledger.Failed, exitcode.Failed, "test notification from ip2a-ops notify test"
	}
	// No outbox: a test must say now whether it got through.
	n := &notify.Notifier{ConfigFunc: func(string) notify.Config { return cfg }, Logger: d.logger}
	res := n.Notify(ctx, ev)
	failed := 0
	for _, s := range res.Sent {
		if !s.Delivered {
			failed++
		}
	}
	if d.g.json {
		if err := writeJSON(d.stdout, map[string]any{"job": o.job, "deliveries": res.Sent}); err != nil {
			return err
		}
	} else {
		for _, s := range res.Sent {
			if s.Delivered {
				fmt.Fprintf(d.stdout, "%-8s %s: delivered\n", s.Channel, s.Target)
			} else {
				fmt.Fprintf(d.stdout, "%-8s %s: FAILED: %s\n", s.Channel, s.Target, s.Error)
			}
		}
		if len(res.Sent) == 0 {
			fmt.Fprintln(d.stdout, "nothing sent: webhook and email are only sent for failures (try --fail)")
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d notifications not delivered", failed, len(res.Sent))
	}
	return nil
}

func newNotifyListCmd(d *deps) *cobra.Command {
	var state string
	var limit int
	c := &cobra.Command{
		Use:   "list",
		Short: "List queued and past undelivered notifications (the outbox)",
		Long: `List the outbox, newest first: notifications that failed when their run
ended, with their state (pending, delivered on a retry, gave_up,
superseded by a newer ping), attempts and last error. Targets are shown
redacted; the outbox never stores a URL token or password.

Exit codes: 0 shown, 1 the database could not be read, 2 configuration error.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			ctx := c.Context()
			pool, err := d.opsDB(ctx)
			if err != nil {
				return err
			}
			list, err := notify.List(ctx, notify.ListOptions{Pool: pool, Schema: d.g.schema, State: state, Limit: limit})
			if err != nil {
				return err
			}
			if d.g.json {
				return writeJSON(d.stdout, map[string]any{"notifications": list})
			}
			printNotifications(d.stdout, list, d.now())
			return nil
		},
	}
	c.Flags().StringVar(&state, "state", "", "only this state: pending, delivered, gave_up, superseded")
	c.Flags().IntVar(&limit, "limit", 50, "at most this many")
	return c
}

func printNotifications(w io.Writer, list []notify.Notification, now time.Time) {
	if len(list) == 0 {
		fmt.Fprintln(w, "no undelivered notifications")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tJOB\tRUN\tCHANNEL\tTARGET\tSTATE\tATTEMPTS\tNEXT ATTEMPT\tLAST ERROR")
	for _, n := range list {
		next := "-"
		if n.State == "pending" {
			next = "now"
			if n.NextAttemptAt.After(now) {
				next = "in " + n.NextAttemptAt.Sub(now).Round(time.Second).String()
			}
		}
		fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\t%s\t%d\t%s\t%s\n", n.ID, n.Job, n.RunID, n.Channel, n.Target, n.State, n.Attempts, next, truncate(n.LastError, 80))
	}
	tw.Flush()
}

func newNotifyRetryCmd(d *deps) *cobra.Command {
	return &cobra.Command{
		Use:   "retry",
		Short: "Retry due undelivered notifications now",
		Long: `Deliver the outbox's due notifications now, as the next run of any job
would. Notifications whose job has no target configured in this process's
environment are left for a process that has it.

Exit codes: 0 nothing failed, 1 a retry failed again (it stays queued or
is given up), 2 configuration error.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			ctx := c.Context()
			if _, err := d.opsDB(ctx); err != nil {
				return err
			}
			out, err := d.notifier().Retry(ctx)
			if err != nil {
				return err
			}
			failed := 0
			for _, r := range out {
				if !r.Delivered {
					failed++
				}
			}
			if d.g.json {
				if err := writeJSON(d.stdout, map[string]any{"retried": out}); err != nil {
					return err
				}
			} else {
				for _, r := range out {
					state := "delivered"
					switch {
					case r.GaveUp:
						state = "gave up: " + r.Error
					case !r.Delivered:
						state = "failed again: " + r.Error
					}
					fmt.Fprintf(d.stdout, "%d %s run %d %s %s: %s\n", r.ID, r.Job, r.RunID, r.Channel, r.Target, state)
				}
				fmt.Fprintf(d.stdout, "%d retried, %d delivered\n", len(out), len(out)-failed)
			}
			if failed > 0 {
				return fmt.Errorf("%d notifications still not delivered", failed)
			}
			return nil
		},
	}
}
