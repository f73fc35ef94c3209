package cmd

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ip2a/ip2a-ops/pkg/exitcode"
	"github.com/ip2a/ip2a-ops/pkg/integrity"
	"github.com/ip2a/ip2a-ops/pkg/jobs"
)

type integrityOptions struct {
	list             bool
	only, skip       []string
	failOn           string
	sample           int
	workers          int
	statementTimeout time.Duration
	userChecks       string
	filesDir         string
	filesURL         string
	fileConcurrency  int
	compareLast      bool
	repair, apply    bool
	asOf             string
	auditMonths      int
}

func newIntegrityCmd(d *deps) *cobra.Command {
	var o integrityOptions
	c := &cobra.Command{
		Use:         "integrity-check",
		Annotations: jobCommand(jobs.IntegrityCheck),
		Short:       "Check the consistency of the IP2A data (and repair what is safe)",
		Long: `Run a catalogue of set-based SQL checks over the app's data: members and
employments, organizations, file attachments (rows, and with --files-dir or
--files-url the files themselves), soft deletes, dues, grants and expenses,
grant enrollments, students, tokens and locks the cleanup should have
removed, and the audit trail. --list prints the catalogue.

All checks read one consistent snapshot in a read-only transaction, several
at once (--workers), each under --statement-timeout. A check whose tables,
columns or enum labels this database lacks (an older schema) is reported as
skipped with the reason. Enum labels are read from the database.

User checks: --user-checks DIR runs every DIR/*.sql too. Each file starts
with a header and holds one query returning the offending ids:
  -- id: member_without_email
  -- severity: info
  -- description: live members without an email address
  -- category: members          (optional, default "user")
  SELECT id FROM members WHERE email IS NULL AND NOT is_deleted
The query may use @now (timestamp, UTC) and @today (date).

--repair runs the safe repairs of checks with findings as a dry run that
changes nothing; add --apply to change the data. It never prompts. Each
check's repair is one transaction, and every changed row gets an audit_logs
entry (changed_by ip2a-ops, old and new values, changed_at in UTC).

Findings (and repairs) are recorded in the run ledger; --compare-last shows
what is new and what was resolved since the last run.

Exit codes: 0 no findings at or above --fail-on, 1 a check or repair could
not run (timeout, bad user query) or the run failed, 2 usage or
configuration error, 3 findings at or above --fail-on, 4 another
integrity-check is running, 130 interrupted.`,
		Example: `  ip2a-ops integrity-check
  ip2a-ops integrity-check --fail-on warning --compare-last
  ip2a-ops integrity-check --only dues,grants --json
  ip2a-ops integrity-check --files-dir /srv/ip2a/uploads
  ip2a-ops integrity-check --files-url s3://ip2a-uploads   (S3_* variables as the app)
  ip2a-ops integrity-check --repair            (dry run)
  ip2a-ops integrity-check --repair --apply`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error { return runIntegrity(c.Context(), d, o) },
	}
	f := c.Flags()
	f.BoolVar(&o.list, "list", false, "print the catalogue of checks and exit")
	f.StringSliceVar(&o.only, "only", nil, "run only these checks or categories (comma-separated)")
	f.StringSliceVar(&o.skip, "skip", nil, "do not run these checks or categories (comma-separated)")
	f.StringVar(&o.failOn, "fail-on", "critical", "exit 3 when findings of this severity or worse exist: critical, warning, info")
	envFlag(f, "fail-on", "IP2A_OPS_INTEGRITY_FAIL_ON")
	f.IntVar(&o.sample, "sample", 20, "record ids kept and shown per check")
	f.IntVar(&o.workers, "workers", 4, "checks run at once, each on its own connection")
	envFlag(f, "workers", "IP2A_OPS_INTEGRITY_WORKERS")
	f.DurationVar(&o.statementTimeout, "statement-timeout", time.Minute, "time limit of each check's query")
	envFlag(f, "statement-timeout", "IP2A_OPS_INTEGRITY_STATEMENT_TIMEOUT")
	f.StringVar(&o.userChecks, "user-checks", "", "directory of user checks (*.sql)")
	envFlag(f, "user-checks", "IP2A_OPS_INTEGRITY_USER_CHECKS")
	f.StringVar(&o.filesDir, "files-dir", "", "directory holding attachment files (file_path is relative to it)")
	envFlag(f, "files-dir", "IP2A_OPS_INTEGRITY_FILES_DIR")
	f.StringVar(&o.filesURL, "files-url", "", "store holding attachment files: s3://bucket[/prefix] (endpoint and keys from S3_* variables) or file:///dir")
	envFlag(f, "files-url", "IP2A_OPS_INTEGRITY_FILES_URL")
	f.IntVar(&o.fileConcurrency, "file-concurrency", 16, "file lookups (HEAD requests on S3) in flight at once")
	f.BoolVar(&o.compareLast, "compare-last", false, "show what is new and what was resolved since the last integrity-check run")
	f.BoolVar(&o.repair, "repair", false, "run the safe repairs of checks with findings (a dry run unless --apply)")
	f.BoolVar(&o.apply, "apply", false, "with --repair: change the data (audited)")
	c.MarkFlagsMutuallyExclusive("files-dir", "files-url")
	f.StringVar(&o.asOf, "as-of", "", "evaluate time-relative checks as of this RFC 3339 time (default: now)")
	f.IntVar(&o.auditMonths, "audit-online-months", 36, "months of audit_logs that belong online")
	return c
}

// integrityHints map integrity-check's fields to its flags.
var integrityHints = fieldHints{
	"FailOn":     "--fail-on critical|warning|info",
	"FilesDir":   "--files-dir DIR",
	"FilesURL":   "--files-url s3://bucket/prefix with S3_ENDPOINT_URL, S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY",
	"UserChecks": "fix the user check or --user-checks",
	"Only":       "ip2a-ops integrity-check --list",
	"":           "ip2a-ops integrity-check --help",
}

func runIntegrity(ctx context.Context, d *deps, o integrityOptions) error {
	if o.apply && !o.repair {
		return exitcode.Usagef("ip2a-ops integrity-check --repair --apply", "--apply needs --repair")
	}
	if o.sample < 1 || o.workers < 1 || o.fileConcurrency < 1 || o.auditMonths < 1 || o.statementTimeout <= 0 {
		return exitcode.Usagef("ip2a-ops integrity-check --help", "--sample, --workers, --file-concurrency, --audit-online-months and --statement-timeout must be positive")
	}
	a := jobs.IntegrityArgs{Only: o.only, Skip: o.skip, FailOn: o.failOn, Sample: o.sample, Workers: o.workers,
		StatementTimeout: o.statementTimeout, UserChecks: o.userChecks, FilesDir: o.filesDir, FilesURL: o.filesURL,
		FileConcurrency: o.fileConcurrency, CompareLast: o.compareLast, Repair: o.repair, Apply: o.apply, AuditOnlineMonths: o.auditMonths}
	if o.asOf != "" {
		t, err := time.Parse(time.RFC3339, o.asOf)
		if err != nil {
			return exitcode.Usagef("--as-of 2026-11-01T00:00:00Z", "invalid --as-of: %v", err)
		}
		a.AsOf = t
	}
	if o.list {
		d.hints = integrityHints
		cat, err := integrity.Catalogue(o.userChecks)
		if err != nil {
			return exitcode.FieldUsage("UserChecks", err)
		}
		sel, err := integrity.Select(cat, o.only, o.skip)
		if err != nil {
			return exitcode.FieldUsage("Only", err)
		}
		if d.g.json {
			return writeJSON(d.stdout, sel)
		}
		printCatalogue(d.stdout, sel)
		return nil
	}
	return runJob(ctx, d, jobs.IntegrityCheck, a, printIntegrity, integrityHints)
}

func printCatalogue(w io.Writer, list []integrity.CheckInfo) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tCATEGORY\tSEVERITY\tREPAIR\tDESCRIPTION")
	for _, c := range list {
		rep := "-"
		if c.Repair != "" {
			rep = "yes"
		}
		desc := c.Description
		if c.Source != "builtin" {
			desc += " [" + c.Source + "]"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.ID, c.Category, c.Severity, rep, desc)
	}
	_ = tw.Flush()
}

func printIntegrity(w io.Writer, r integrity.Result) {
	t := r.Totals
	fmt.Fprintf(w, "integrity-check as of %s: %d checks, %d ok, %d with findings, %d skipped, %d errors (%.2fs)\n",
		r.AsOf.Format(time.RFC3339), t.Checks, t.OK, t.Findings, t.Skipped, t.Errors, r.Seconds)
	for _, sev := range integrity.Severities {
		var lines []integrity.CheckResult
		for _, c := range r.Checks {
			if c.Status == integrity.StatusFindings && c.Severity == sev {
				lines = append(lines, c)
			}
		}
		if len(lines) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n%s\n", strings.ToUpper(string(sev)))
		for _, c := range lines {
			fmt.Fprintf(w, "  %-45s %6d  %s\n", c.ID, c.Count, c.Description)
			more := ""
			if int64(len(c.SampleIDs)) < c.Count {
				more = fmt.Sprintf(" (first %d of %d)", len(c.SampleIDs), c.Count)
			}
			fmt.Fprintf(w, "  %-45s         ids: %s%s\n", "", strings.Join(c.SampleIDs, " "), more)
		}
	}
	section := func(title, status string) {
		first := true
		for _, c := range r.Checks {
			if c.Status != status {
				continue
			}
			if first {
				fmt.Fprintf(w, "\n%s\n", title)
				first = false
			}
			fmt.Fprintf(w, "  %-45s %s\n", c.ID, c.Reason)
		}
	}
	section("SKIPPED", integrity.StatusSkipped)
	section("COULD NOT RUN", integrity.StatusError)
	if len(r.Repairs) > 0 {
		verb, head := "rows would change", "REPAIRS (dry run: nothing changed; add --apply to change)"
		if r.Repairs[0].Applied {
			verb, head = "rows changed", "REPAIRS (applied; audit_logs entries written)"
		}
		fmt.Fprintf(w, "\n%s\n", head)
		for _, rp := range r.Repairs {
			if rp.Error != "" {
				fmt.Fprintf(w, "  %-45s failed: %s\n", rp.ID, rp.Error)
				continue
			}
			fmt.Fprintf(w, "  %-45s %d %s, %d audit entries, %d left for a person: %s\n", rp.ID, rp.Rows, verb, rp.AuditEntries, rp.Remaining, rp.Description)
		}
	}
	if cmp := r.Comparison; cmp != nil {
		if cmp.PreviousRunID == 0 {
			fmt.Fprintf(w, "\nCOMPARED WITH THE LAST RUN: no earlier integrity-check run in the ledger\n")
			return
		}
		fmt.Fprintf(w, "\nCOMPARED WITH RUN %d (as of %s)\n", cmp.PreviousRunID, cmp.PreviousAsOf.Format(time.RFC3339))
		if len(cmp.New)+len(cmp.Resolved)+len(cmp.Changed) == 0 {
			fmt.Fprintln(w, "  no change")
		}
		for _, d := range cmp.New {
			fmt.Fprintf(w, "  new       %-45s %d\n", d.ID, d.After)
		}
		for _, d := range cmp.Resolved {
			fmt.Fprintf(w, "  resolved  %-45s was %d\n", d.ID, d.Before)
		}
		for _, d := range cmp.Changed {
			fmt.Fprintf(w, "  changed   %-45s %d -> %d\n", d.ID, d.Before, d.After)
		}
	}
}
