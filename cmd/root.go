package cmd

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/ip2a/ip2a-ops/pkg/exitcode"
	"github.com/ip2a/ip2a-ops/pkg/migrate"
	"github.com/ip2a/ip2a-ops/pkg/runner"
)

const rootLong = `ip2a-ops runs the scheduled maintenance of the IP2A database: backups,
audit-log archiving, integrity checks, grant, membership and dues reports
and cleanup. Every run,
whatever started it (a person, cron, systemd, Railway, the daemon), is
recorded in a run ledger in the database (schema ip2a_ops) and can be seen
with 'ip2a-ops jobs status'.

Configuration precedence: command-line flag > environment variable > default.
The database comes from --database-url, else DATABASE_URL (postgres:// or
postgresql://), else libpq's PG* variables (PGHOST, PGUSER, PGPASSWORD, ...).
Behind a transaction-pooling proxy (PgBouncer pool_mode=transaction), add
default_query_exec_mode=exec to that URL and give a direct connection with
--direct-url (DATABASE_DIRECT_URL) for what needs a session of its own:
backup's pg_dump and snapshot, and the worker's LISTEN; everything else
uses the pooled URL.
'ip2a-ops doctor' tells whether the URL goes through such a proxy.

New here? 'ip2a-ops demo' runs every job against a throwaway database.
Exit codes: 'ip2a-ops help exit-codes'.`

func newRootCmd(d *deps) *cobra.Command {
	root := &cobra.Command{
		Use:           "ip2a-ops",
		Short:         "Scheduled maintenance of the IP2A database",
		Long:          rootLong,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(c *cobra.Command, args []string) error {
			d.ran = true
			if err := applyEnv(c, d.getenv); err != nil {
				return exitcode.Usagef("fix or unset the variable", "%v", err)
			}
			if d.g.trigger != "" && !runner.ValidTrigger(d.g.trigger) {
				return exitcode.Usagef("--trigger manual|cron|systemd|railway|daemon|queue", "invalid trigger %q", d.g.trigger)
			}
			return d.setupLogger()
		},
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return exitcode.UsageError(err, c.CommandPath()+" --help")
	})
	pf := root.PersistentFlags()
	pf.StringVar(&d.g.databaseURL, "database-url", "", "database connection string (env DATABASE_URL; else libpq PG* variables)")
	pf.StringVar(&d.g.directURL, "direct-url", "", "direct connection, not through a transaction-pooling proxy, for backup's pg_dump and snapshot and the worker's LISTEN (default: --database-url)")
	envFlag(pf, "direct-url", "DATABASE_DIRECT_URL")
	pf.StringVar(&d.g.logFormat, "log-format", "auto", "log format on stderr: text, json, or auto (text on a terminal, JSON otherwise)")
	envFlag(pf, "log-format", "IP2A_OPS_LOG_FORMAT")
	pf.StringVar(&d.g.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	envFlag(pf, "log-level", "IP2A_OPS_LOG_LEVEL")
	pf.BoolVar(&d.g.json, "json", false, "print the result as one JSON document on stdout")
	envFlag(pf, "json", "IP2A_OPS_JSON")
	pf.StringVar(&d.g.progress, "progress", "auto", "live progress of a job on stderr: auto (at a terminal, run by hand, without --json), always, never")
	envFlag(pf, "progress", "IP2A_OPS_PROGRESS")
	pf.StringVar(&d.g.trigger, "trigger", "", "what started this run: manual, cron, systemd, railway, daemon, queue (default: detected)")
	envFlag(pf, "trigger", "IP2A_OPS_TRIGGER")
	pf.StringVar(&d.g.schema, "schema", migrate.DefaultSchema, "schema holding ip2a-ops's own tables (the run ledger)")
	envFlag(pf, "schema", "IP2A_OPS_SCHEMA")
	pf.BoolVar(&d.g.autoMigrate, "auto-migrate", false, "create or upgrade ip2a-ops's schema on first use (for Railway cron services)")
	envFlag(pf, "auto-migrate", "IP2A_OPS_AUTO_MIGRATE")
	pf.DurationVar(&d.g.maxRuntime, "max-runtime", 0, "cancel a job that runs longer than this and record it failed (0: no limit)")
	envFlag(pf, "max-runtime", "IP2A_OPS_MAX_RUNTIME")
	pf.DurationVar(&d.g.heartbeat, "heartbeat", 15*time.Second, "how often a running job refreshes its ledger heartbeat")
	envFlag(pf, "heartbeat", "IP2A_OPS_HEARTBEAT")
	pf.DurationVar(&d.g.staleAfter, "stale-after", 2*time.Minute, "a running job whose heartbeat is older than this is abandoned and no longer blocks the job; at least twice the heartbeat interval (15s): a lower value is raised to that, with a warning")
	envFlag(pf, "stale-after", "IP2A_OPS_STALE_AFTER")
	pf.DurationVar(&d.g.connectTimeout, "connect-timeout", 10*time.Second, "how long to wait for the database to answer")
	envFlag(pf, "connect-timeout", "IP2A_OPS_CONNECT_TIMEOUT")
	_ = pf.MarkHidden("heartbeat")
	pf.StringVar(&d.g.slot, "slot", "", "RFC 3339 time of the scheduled slot this run fills (set by the daemon; recorded in the ledger)")
	envFlag(pf, "slot", "IP2A_OPS_SLOT")
	_ = pf.MarkHidden("slot")

	root.AddCommand(
		newVersionCmd(d),
		newExitCodesTopic(),
		newMigrateCmd(d),
		newJobsCmd(d),
		newBackupCmd(d),
		newCleanupCmd(d),
		newIntegrityCmd(d),
		newGrantReportCmd(d),
		newMembershipReportCmd(d), newDuesReportCmd(d),
		newDaemonCmd(d), newScheduleCmd(d),
		newDemoCmd(d),
		newSleepJobCmd(d),
		newNotifyCmd(d, pf),
		newMetricsCmd(d),
		newAuditArchiveCmd(d),
		newDoctorCmd(d),
		newWorkerCmd(d), newTasksCmd(d),
	)
	return root
}

func newExitCodesTopic() *cobra.Command {
	return &cobra.Command{
		Use:   "exit-codes",
		Short: "The exit codes every command uses",
		Long:  exitcode.Help(),
	}
}
