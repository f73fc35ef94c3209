package cmd

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/ip2a/ip2a-ops/pkg/cleanup"
	"github.com/ip2a/ip2a-ops/pkg/jobs"
)

type cleanupOptions struct {
	dryRun       bool
	resetMaxAge  time.Duration
	refreshGrace time.Duration
}

func newCleanupCmd(d *deps) *cobra.Command {
	var o cleanupOptions
	c := &cobra.Command{
		Use:         "cleanup",
		Annotations: jobCommand(jobs.Cleanup),
		Short:       "Delete expired tokens and unlock users whose lock has passed",
		Long: `The app's daily housekeeping (run it once a day, e.g. 04:00 UTC):

  1. delete expired email tokens (any type);
  2. delete password-reset tokens older than --reset-token-max-age
     (the label is read from the database's enum, not assumed);
  3. delete refresh tokens expired, or revoked, more than --refresh-grace ago;
  4. unlock users whose locked_until has passed and reset their
     failed_login_attempts, writing an audit_logs entry (changed_by ip2a-ops,
     old and new values) for every user changed.

Each step is one transaction. Tables or columns an older schema lacks are
reported as skipped. --dry-run counts and changes nothing. The counts land
in the run ledger.

Exit codes: 0 done, 1 a step failed, 2 configuration error,
4 another cleanup is running, 130 interrupted.`,
		Example: `  ip2a-ops cleanup --dry-run
  ip2a-ops cleanup --json`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error { return runCleanup(c.Context(), d, o) },
	}
	f := c.Flags()
	f.BoolVar(&o.dryRun, "dry-run", false, "count what would change and change nothing")
	f.DurationVar(&o.resetMaxAge, "reset-token-max-age", 7*24*time.Hour, "delete password-reset tokens created longer ago than this")
	envFlag(f, "reset-token-max-age", "IP2A_OPS_CLEANUP_RESET_TOKEN_MAX_AGE")
	f.DurationVar(&o.refreshGrace, "refresh-grace", 7*24*time.Hour, "delete refresh tokens expired or revoked longer ago than this")
	envFlag(f, "refresh-grace", "IP2A_OPS_CLEANUP_REFRESH_GRACE")
	return c
}

func runCleanup(ctx context.Context, d *deps, o cleanupOptions) error {
	return runJob(ctx, d, jobs.Cleanup, jobs.CleanupArgs{DryRun: o.dryRun, ResetTokenMaxAge: o.resetMaxAge, RefreshGrace: o.refreshGrace},
		printCleanup, fieldHints{"": "ip2a-ops cleanup --help"})
}

func printCleanup(w io.Writer, r cleanup.Result) {
	verb := "changed"
	if r.DryRun {
		verb = "would change (dry run)"
	}
	for _, s := range r.Steps {
		switch {
		case s.Skipped != "":
			fmt.Fprintf(w, "%-35s skipped: %s\n", s.Name, s.Skipped)
		case s.AuditEntries > 0:
			fmt.Fprintf(w, "%-35s %d rows %s, %d audit entries\n", s.Name, s.Rows, verb, s.AuditEntries)
		default:
			fmt.Fprintf(w, "%-35s %d rows %s\n", s.Name, s.Rows, verb)
		}
	}
}
