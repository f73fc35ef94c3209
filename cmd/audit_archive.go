package cmd

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ip2a/ip2a-ops/pkg/audit"
	"github.com/ip2a/ip2a-ops/pkg/exitcode"
	"github.com/ip2a/ip2a-ops/pkg/jobs"
)

// auditArchiveOptions are the flags every audit-archive subcommand shares.
type auditArchiveOptions struct {
	storageURL   string
	prefix       string
	archiveAfter audit.Age
	retain       audit.Age
	tempDir      string
}

type auditRunOptions struct {
	until      string
	dryRun     bool
	keepOnline bool
	objectLock bool
	batch      int64
}

const auditExitCodes = `Exit codes: 0 done, 1 failed or an archive did not verify (nothing was
deleted for that month), 2 usage or configuration error, 3 ran and found
problems (rows of an already-deleted month are back in audit_logs),
4 another run is active, 130 interrupted.`

func newAuditArchiveCmd(d *deps) *cobra.Command {
	o := &auditArchiveOptions{archiveAfter: audit.DefaultArchiveAfter, retain: audit.DefaultRetain}
	var ro auditRunOptions
	c := &cobra.Command{
		Use:         "audit-archive",
		Annotations: jobCommand(jobs.AuditArchive),
		Short:       "Archive old audit_logs months to verified storage, purge past retention",
		Long: `Move audit_logs rows older than --archive-after (default 3 years) to cold
storage, one archive per calendar month of changed_at (UTC), and purge
archives older than --retain (default 7 years) unless on legal hold.

Each archive is JSON Lines (one row per line, every column) compressed with
zstd, plus a manifest (row count, id range, SHA-256 of the raw and
compressed bytes, the SHA-256 of the previous month's manifest, the
columns): readable with zstdcat and jq alone. Keys depend only on the month,
so reruns never duplicate; a month already archived is not uploaded again.

Rows are deleted only after the stored archive is read back and matches its
manifest and a fresh count in the database, in one transaction that checks
the count and id sum of what it deleted, and only when the guard is
installed ('audit-archive install-guard'). Without it the run archives and
verifies, and deletes nothing.

'audit-archive' alone is 'audit-archive run'.

Storage: --storage file:///dir or s3://bucket/prefix (env
IP2A_OPS_AUDIT_STORAGE); S3 endpoint and keys come from S3_ENDPOINT_URL,
S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY, S3_REGION (or IP2A_OPS_S3_*).

` + auditExitCodes,
		Example: `  ip2a-ops audit-archive --storage s3://ip2a-audit-archive --dry-run
  ip2a-ops audit-archive install-guard --print
  ip2a-ops audit-archive status
  ip2a-ops audit-archive search --from 2022-01-01 --to 2022-07-01 --record-id 1234 --format csv`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error { return runAuditArchive(c.Context(), d, o, ro) },
	}
	pf := c.PersistentFlags()
	pf.StringVar(&o.storageURL, "storage", "", "where archives are stored: file:///dir, /dir or s3://bucket/prefix")
	envFlag(pf, "storage", "IP2A_OPS_AUDIT_STORAGE")
	pf.StringVar(&o.prefix, "prefix", audit.DefaultPrefix, "key prefix of the archives inside the store")
	envFlag(pf, "prefix", "IP2A_OPS_AUDIT_PREFIX")
	pf.Var(&o.archiveAfter, "archive-after", "archive whole months older than this (3y, 36mo, 2y6mo)")
	envFlag(pf, "archive-after", "IP2A_OPS_AUDIT_ARCHIVE_AFTER")
	pf.Var(&o.retain, "retain", "delete archives of months older than this, unless on legal hold")
	envFlag(pf, "retain", "IP2A_OPS_AUDIT_RETAIN")
	pf.StringVar(&o.tempDir, "temp-dir", "", "directory for the compressed month while it is uploaded (default: system temp)")
	envFlag(pf, "temp-dir", "IP2A_OPS_AUDIT_TEMP_DIR")
	addAuditRunFlags(c, &ro)

	run := &cobra.Command{
		Use:         "run",
		Annotations: jobCommand(jobs.AuditArchive),
		Short:       "Archive, verify and (with the guard) delete every eligible month",
		Long:        "Archive every whole month older than --archive-after, verify, and delete its rows when the guard is installed.\n\n" + auditExitCodes,
		Args:        cobra.NoArgs,
		RunE:        func(c *cobra.Command, args []string) error { return runAuditArchive(c.Context(), d, o, ro) },
	}
	addAuditRunFlags(run, &ro)
	c.AddCommand(run, newAuditGuardCmd(d, o), newAuditStatusCmd(d, o), newAuditVerifyCmd(d, o), newAuditPurgeCmd(d, o),
		newAuditHoldCmd(d, o), newAuditReleaseCmd(d, o), newAuditSearchCmd(d, o), newAuditRestoreCmd(d, o))
	return c
}

func addAuditRunFlags(c *cobra.Command, ro *auditRunOptions) {
	f := c.Flags()
	f.StringVar(&ro.until, "until", "", "archive only months up to and including this one (YYYY-MM)")
	f.BoolVar(&ro.dryRun, "dry-run", false, "list the months that would be archived and change nothing")
	f.BoolVar(&ro.keepOnline, "keep-online", false, "archive and verify, but delete no rows")
	f.BoolVar(&ro.objectLock, "object-lock", false, "ask S3 to retain each object until the month is past --retain (bucket needs Object Lock)")
	envFlag(f, "object-lock", "IP2A_OPS_AUDIT_OBJECT_LOCK")
	f.Int64Var(&ro.batch, "delete-batch", 50_000, "rows per DELETE statement inside a delete transaction (an id span when ids follow time, else pages holding about that many rows)")
}

// auditHints map the audit jobs' fields to their flags.
var auditHints = fieldHints{
	"Storage.None": "--storage file:///var/backups/ip2a-audit or s3://ip2a-audit-archive (or IP2A_OPS_AUDIT_STORAGE)",
	"Storage":      "--storage file:///dir or s3://bucket/prefix",
	"DeleteBatch":  "--delete-batch 50000",
	"":             "ip2a-ops audit-archive --help",
}

func (o *auditArchiveOptions) args() jobs.AuditStore {
	return jobs.AuditStore{Storage: o.storageURL, Prefix: o.prefix, ArchiveAfter: o.archiveAfter, Retain: o.retain, TempDir: o.tempDir}
}

// auditConfig opens what the commands that are not runs need (status,
// search); withStore false skips the store.
func auditConfig(ctx context.Context, d *deps, o *auditArchiveOptions, withStore bool) (audit.Config, error) {
	d.hints = auditHints
	return jobs.OpenAudit(ctx, d.jobEnv(), o.args(), withStore)
}

func parseMonthArg(flag, s string) (audit.Month, error) {
	m, err := audit.ParseMonth(s)
	if err != nil {
		return m, exitcode.Usagef(flag+" YYYY-MM, e.g. 2022-03", "%v", err)
	}
	return m, nil
}

func runAuditArchive(ctx context.Context, d *deps, o *auditArchiveOptions, ro auditRunOptions) error {
	a := jobs.AuditArchiveArgs{AuditStore: o.args(), DryRun: ro.dryRun, KeepOnline: ro.keepOnline, ObjectLock: ro.objectLock, DeleteBatch: ro.batch}
	if ro.until != "" {
		m, err := parseMonthArg("--until", ro.until)
		if err != nil {
			return err
		}
		a.Until = m
	}
	return runJob(ctx, d, jobs.AuditArchive, a, printAuditRun, auditHints)
}

func printAuditRun(w io.Writer, r audit.RunResult) {
	verb := ""
	if r.DryRun {
		verb = " (dry run: nothing written)"
	}
	fmt.Fprintf(w, "months older than %s: %d%s\n", r.LastEligible.Next(), len(r.Months), verb)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, m := range r.Months {
		what := []string{}
		switch {
		case r.DryRun && m.Problem == "":
			what = append(what, "would archive")
		case m.Uploaded:
			what = append(what, "archived")
		case m.Problem == "":
			what = append(what, "already archived")
		}
		if m.Verified {
			what = append(what, "verified")
		}
		if m.Deleted > 0 {
			what = append(what, fmt.Sprintf("deleted %d rows", m.Deleted))
		}
		if m.Problem != "" {
			what = append(what, "PROBLEM: "+m.Problem)
		}
		fmt.Fprintf(tw, "%s\t%d rows\t%s\n", m.Month, m.Rows, strings.Join(what, ", "))
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "uploaded %d months (%d rows, %s), verified %d, deleted %d rows\n", r.MonthsUploaded, r.RowsArchived, byteSize(r.BytesUploaded), r.MonthsVerified, r.RowsDeleted)
	if r.DeleteSkipped != "" {
		fmt.Fprintf(w, "no rows deleted: %s\n", r.DeleteSkipped)
	}
}

func newAuditGuardCmd(d *deps, o *auditArchiveOptions) *cobra.Command {
	var print bool
	c := &cobra.Command{
		Use:         "install-guard",
		Annotations: jobCommand(jobs.AuditInstallGuard),
		Short:       "Let ip2a-ops delete verified months while audit_logs stays immutable for everyone else",
		Long: `Install (opt-in) the triggers that keep audit_logs immutable for everybody
while letting ip2a-ops delete the rows of months it has archived and verified:
UPDATE is always refused; DELETE is refused unless the transaction set
ip2a_ops.archive_delete to a month or a range of months (2019-01..2022-03)
that ip2a-ops's own table (which the app's role cannot write) records as
verified, and every deleted row lies in one of those verified months;
TRUNCATE is refused. On the older schema (no trigger) the triggers are
created too. Installing it again upgrades a guard of an earlier release.
Run it as the owner of audit_logs. --print shows the SQL and changes
nothing.

Exit codes: 0 installed (or printed), 1 failed (not the table owner?),
2 configuration error.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if print {
				fmt.Fprint(d.stdout, audit.GuardSQL(d.g.schema))
				return nil
			}
			return runJob(c.Context(), d, jobs.AuditInstallGuard, jobs.AuditStoreArgs{AuditStore: o.args()}, func(w io.Writer, st audit.GuardStatus) {
				fmt.Fprintf(w, "audit guard installed (checks %s.audit_archive_months)\n", st.Schema)
			}, auditHints)
		},
	}
	c.Flags().BoolVar(&print, "print", false, "print the SQL and change nothing")
	return c
}

func newAuditStatusCmd(d *deps, o *auditArchiveOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Months online, archived, pending and on hold; sizes; whether the guard is installed",
		Long:  "Show the state of audit archiving from the database (storage is not read).\n\nExit codes: 0 shown, 1 failed, 2 configuration error.",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cfg, err := auditConfig(c.Context(), d, o, false)
			if err != nil {
				return err
			}
			st, err := audit.Status(c.Context(), audit.StatusOptions{Config: cfg, ArchiveAfter: o.archiveAfter, Retain: o.retain})
			if err != nil {
				return err
			}
			if d.g.json {
				return writeJSON(d.stdout, st)
			}
			printAuditStatus(d.stdout, st)
			return nil
		},
	}
}

func printAuditStatus(w io.Writer, s audit.StatusResult) {
	if s.Guard.Installed {
		fmt.Fprintf(w, "guard:            installed (deletes allowed only for months verified in %s.audit_archive_months)\n", s.Guard.Schema)
		if s.Guard.Version < 2 {
			fmt.Fprintln(w, "                  from an earlier release: months are deleted one by one; run 'ip2a-ops audit-archive install-guard' again to upgrade it")
		}
	} else {
		trig := "the app's trigger is absent (older schema)"
		if s.Guard.AppTrigger {
			trig = "the app's trigger refuses UPDATE/DELETE"
		}
		fmt.Fprintf(w, "guard:            NOT installed (%s; run 'ip2a-ops audit-archive install-guard' so archived months can be deleted)\n", trig)
	}
	oldest := "none"
	if s.OldestOnline != nil {
		oldest = s.OldestOnline.Format(time.RFC3339)
	}
	fmt.Fprintf(w, "online:           %d rows in %d months, oldest %s, table %s\n", s.OnlineRows, len(s.Online), oldest, byteSize(s.TableBytes))
	archived := 0
	for _, m := range s.Months {
		if m.State != audit.StatePurged {
			archived++
		}
	}
	fmt.Fprintf(w, "archived:         %d months, %d rows, %s compressed\n", archived, s.ArchivedRows, byteSize(s.ArchivedBytes))
	fmt.Fprintf(w, "pending:          %d months up to %s still online: %s\n", len(s.Pending), s.LastEligible, monthList(s.Pending))
	fmt.Fprintf(w, "past retention:   %s\n", monthList(s.PurgeDue))
	if len(s.Holds) == 0 {
		fmt.Fprintln(w, "legal holds:      none")
	}
	for _, h := range s.Holds {
		fmt.Fprintf(w, "legal hold:       %s  %s (by %s, %s)\n", h.Month, h.Reason, h.By, h.At.UTC().Format(time.DateOnly))
	}
	if len(s.Months) > 0 {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "MONTH\tSTATE\tROWS\tBYTES\tIDS")
		for _, m := range s.Months {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d-%d\n", m.Month, m.State, m.RowCount, m.CompressedBytes, m.MinID, m.MaxID)
		}
		_ = tw.Flush()
	}
}

func monthList(ms []audit.Month) string {
	switch len(ms) {
	case 0:
		return "none"
	case 1:
		return ms[0].String()
	}
	return fmt.Sprintf("%s .. %s (%d)", ms[0], ms[len(ms)-1], len(ms))
}

func newAuditVerifyCmd(d *deps, o *auditArchiveOptions) *cobra.Command {
	return &cobra.Command{
		Use:         "verify",
		Annotations: jobCommand(jobs.AuditVerify),
		Short:       "Read every archive back and check it against its manifest and the chain",
		Long:        "Read every stored archive back (manifest hash, compressed and raw hashes, row count and id sum) and check the chain of manifests.\n\nExit codes: 0 every archive verified, 1 an archive or the chain does not match (or storage failed), 2 configuration error, 4 another verify is running, 130 interrupted.",
		Args:        cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			return runJob(c.Context(), d, jobs.AuditVerify, jobs.AuditStoreArgs{AuditStore: o.args()}, func(w io.Writer, r audit.VerifyResult) {
				for _, m := range r.Months {
					if m.OK {
						fmt.Fprintf(w, "%s  %-8s  %d rows  ok\n", m.Month, m.State, m.Rows)
					} else {
						fmt.Fprintf(w, "%s  %-8s  %d rows  FAILED: %s\n", m.Month, m.State, m.Rows, m.Problem)
					}
				}
				for _, k := range r.Unrecorded {
					fmt.Fprintf(w, "unrecorded manifest (left by an interrupted run; the next run overwrites it): %s\n", k)
				}
				fmt.Fprintf(w, "%d months verified, %d failed\n", r.OK, r.Failed)
			}, auditHints)
		},
	}
}

func newAuditPurgeCmd(d *deps, o *auditArchiveOptions) *cobra.Command {
	var apply bool
	c := &cobra.Command{
		Use:         "purge",
		Annotations: jobCommand(jobs.AuditPurge),
		Short:       "Delete archives past --retain (dry run unless --apply), except months on legal hold",
		Long: `Delete the archives of months older than --retain (default 7 years),
except months on legal hold and months whose rows are still online. A dry
run unless --apply. Each purge first stores a deletion record (with the
manifest, so the chain stays checkable) under purged/ and then is recorded
in the ledger and in ip2a_ops.audit_purges.

Exit codes: 0 done, 1 failed, 2 configuration error, 4 another purge is
running, 130 interrupted.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			return runJob(c.Context(), d, jobs.AuditPurge, jobs.AuditPurgeArgs{AuditStore: o.args(), Apply: apply}, func(w io.Writer, r audit.PurgeResult) {
				for _, m := range r.Months {
					line := fmt.Sprintf("%s  %d rows  %s", m.Month, m.Rows, m.Action)
					if m.Reason != "" {
						line += ": " + m.Reason
					}
					fmt.Fprintln(w, line)
				}
				if !r.Apply {
					fmt.Fprintf(w, "dry run: %d months past retention (before %s); --apply to purge\n", len(r.Months)-r.Kept, r.Before.Format(time.DateOnly))
				} else {
					fmt.Fprintf(w, "purged %d months, kept %d\n", r.Purged, r.Kept)
				}
			}, auditHints)
		},
	}
	c.Flags().BoolVar(&apply, "apply", false, "really delete (default: dry run)")
	return c
}

func newAuditHoldCmd(d *deps, o *auditArchiveOptions) *cobra.Command {
	var reason string
	c := &cobra.Command{
		Use:         "hold MONTH --reason TEXT",
		Annotations: jobCommand(jobs.AuditHold),
		Short:       "Put a month on legal hold: purge keeps its archive",
		Long:        "Put MONTH (YYYY-MM) on legal hold; purge keeps its archive until released.\n\nExit codes: 0 held, 1 failed, 2 bad month (malformed or in the future) or no reason.",
		Args:        cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			m, err := parseMonthArg("hold", args[0])
			if err != nil {
				return err
			}
			return runJob(c.Context(), d, jobs.AuditHold, jobs.AuditHoldArgs{AuditStore: o.args(), Month: m, Reason: reason}, func(w io.Writer, h audit.Hold) {
				fmt.Fprintf(w, "%s on legal hold: %s\n", h.Month, h.Reason)
			}, holdHints)
		},
	}
	c.Flags().StringVar(&reason, "reason", "", "why (case or request); required")
	return c
}

// holdHints map a hold's fields to the command line.
var holdHints = fieldHints{
	"Month":  "a month that has started (YYYY-MM)",
	"Reason": `--reason "case 19-CA-123456"`,
	"":       "ip2a-ops audit-archive --help",
}

func newAuditReleaseCmd(d *deps, o *auditArchiveOptions) *cobra.Command {
	return &cobra.Command{
		Use:         "release MONTH",
		Annotations: jobCommand(jobs.AuditRelease),
		Short:       "End a month's legal hold",
		Long:        "End MONTH's legal hold (kept on record).\n\nExit codes: 0 released, 1 failed, 2 bad month or no active hold.",
		Args:        cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			m, err := parseMonthArg("release", args[0])
			if err != nil {
				return err
			}
			return runJob(c.Context(), d, jobs.AuditRelease, jobs.AuditHoldArgs{AuditStore: o.args(), Month: m}, func(w io.Writer, h audit.Hold) {
				fmt.Fprintf(w, "%s released from legal hold (%s)\n", h.Month, h.Reason)
			}, holdHints)
		},
	}
}

func newAuditSearchCmd(d *deps, o *auditArchiveOptions) *cobra.Command {
	var from, to, out string
	var so audit.SearchOptions
	c := &cobra.Command{
		Use:   "search --from DATE --to DATE [filters]",
		Short: "Stream matching audit rows from the archives and the live table (JSON Lines or CSV)",
		Long: `Stream the audit rows with changed_at in [--from, --to) (UTC; YYYY-MM-DD,
YYYY-MM or RFC 3339) matching every filter given, from the archives of
months already deleted from audit_logs and from audit_logs itself, without
restoring anything: each row once, as JSON Lines (the archive's own lines)
or CSV. The legal-discovery path.

Exit codes: 0 done, 1 failed or an archive did not match its record,
2 bad flags.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			var err error
			if so.From, err = parseWhen("--from", from); err != nil {
				return err
			}
			if so.To, err = parseWhen("--to", to); err != nil {
				return err
			}
			if !so.From.Before(so.To) {
				return exitcode.Usagef("--from 2022-01-01 --to 2022-07-01", "--to %s is not after --from %s", to, from)
			}
			if so.Format != "jsonl" && so.Format != "csv" {
				return exitcode.Usagef("--format jsonl|csv", "unknown format %q", so.Format)
			}
			cfg, err := auditConfig(c.Context(), d, o, true)
			if err != nil {
				return err
			}
			so.Config, so.Out = cfg, d.stdout
			if out != "" {
				f, err := os.Create(out)
				if err != nil {
					return exitcode.Usagef("--out a writable path", "%v", err)
				}
				defer f.Close()
				so.Out = f
			}
			res, err := audit.Search(c.Context(), so)
			d.logger.Info("audit search", "rows", res.Rows, "from_archives", res.FromArchives, "from_live", res.FromLive, "archives_read", len(res.Archives))
			if len(res.Purged) > 0 {
				fmt.Fprintf(d.stderr, "note: %d months in range were purged past retention: %s\n", len(res.Purged), monthList(res.Purged))
			}
			if err != nil {
				return err
			}
			if out != "" {
				fmt.Fprintf(d.stdout, "%d rows written to %s (%d from archives, %d from audit_logs)\n", res.Rows, out, res.FromArchives, res.FromLive)
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&from, "from", "", "first instant (inclusive), UTC")
	f.StringVar(&to, "to", "", "end (exclusive), UTC")
	f.StringVar(&so.Table, "table", "", "only rows with this table_name")
	f.StringVar(&so.RecordID, "record-id", "", "only rows with this record_id")
	f.StringVar(&so.ChangedBy, "changed-by", "", "only rows with this changed_by")
	f.StringVar(&so.Action, "action", "", "only rows with this action (READ, CREATE, UPDATE, DELETE, ...)")
	f.StringVar(&so.Format, "format", "jsonl", "jsonl or csv")
	f.StringVar(&out, "out", "", "write to this file instead of stdout")
	return c
}

func parseWhen(flag, s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", time.DateOnly, "2006-01"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	if s == "" {
		return time.Time{}, exitcode.Usagef(flag+" 2022-01-01", "%s is required", flag)
	}
	return time.Time{}, exitcode.Usagef(flag+" 2022-01-01 (or 2022-01, or RFC 3339)", "%s %q: not a date", flag, s)
}

func newAuditRestoreCmd(d *deps, o *auditArchiveOptions) *cobra.Command {
	var into string
	c := &cobra.Command{
		Use:         "restore MONTH --into TABLE",
		Annotations: jobCommand(jobs.AuditRestore),
		Short:       "Verify a month's archive and load it into a table of your choice",
		Long:        "Verify MONTH's archive and load its rows into TABLE (created from the manifest's columns when missing; never audit_logs itself) in one transaction.\n\nExit codes: 0 restored, 1 failed or the archive did not verify, 2 bad month or table.",
		Args:        cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			m, err := parseMonthArg("restore", args[0])
			if err != nil {
				return err
			}
			return runJob(c.Context(), d, jobs.AuditRestore, jobs.AuditRestoreArgs{AuditStore: o.args(), Month: m, Into: into}, func(w io.Writer, res audit.RestoreResult) {
				fmt.Fprintf(w, "restored %d rows of %s into %s\n", res.Rows, res.Month, res.Into)
			}, fieldHints{"": "restore 2022-03 --into audit_logs_2022_03", "Storage.None": auditHints["Storage.None"], "Storage": auditHints["Storage"]})
		},
	}
	c.Flags().StringVar(&into, "into", "", "table to load the rows into (required)")
	return c
}
