package cmd

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/ip2a/ip2a-ops/pkg/backup"
	"github.com/ip2a/ip2a-ops/pkg/exitcode"
	"github.com/ip2a/ip2a-ops/pkg/jobs"
)

func newBackupVerifyCmd(d *deps, o *backupOptions) *cobra.Command {
	var level, scratchURL string
	var nJobs int
	c := &cobra.Command{
		Use:         "verify [ID|latest]",
		Annotations: jobCommand(jobs.BackupVerify),
		Short:       "Check a backup: checksum, contents, or a full restore drill",
		Long: `Check one backup (default: the latest) at a level, each including the ones
before it:

  checksum  re-read the stored object and compare its size and SHA-256;
  contents  decrypt (--identity), decompress and check the archive's SHA-256,
            then decode every archive entry (pg_restore to /dev/null);
  restore   restore into a scratch database - a throwaway local cluster by
            default, or a new database on the server at --scratch-url,
            dropped afterwards - and compare the exact row count of every
            table with the manifest, and check the audit triggers came back.

The result is written into the backup's manifest (a new revision) and the
run ledger. Any mismatch is exit 1, never 0.

Exit codes: 0 passed, 1 failed or could not verify, 2 configuration error
(unknown backup, no identity file), 4 another verify is running,
130 interrupted.`,
		Example: `  ip2a-ops backup verify
  ip2a-ops backup verify latest --level restore --identity /secure/ops.agekey
  ip2a-ops backup verify 20261129T020000Z-1a2b --level contents`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			ctx := c.Context()
			id := "latest"
			if len(args) == 1 {
				id = args[0]
			}
			return runJob(ctx, d, jobs.BackupVerify, jobs.BackupVerifyArgs{BackupStore: o.args(), ID: id, Level: level,
				ScratchURL: scratchURL, Jobs: nJobs}, printVerify, backupHints)
		},
	}
	f := c.Flags()
	f.StringVar(&level, "level", "checksum", "checksum, contents or restore")
	f.StringVar(&scratchURL, "scratch-url", "", "server for the restore drill's scratch database (needs CREATEDB; default: a throwaway local cluster)")
	envFlag(f, "scratch-url", "IP2A_OPS_SCRATCH_URL")
	f.IntVar(&nJobs, "jobs", 2, "restore connections at once (pg_restore --jobs, and COPY of the big tables)")
	return c
}

func printVerify(w io.Writer, r backup.VerifyResult) {
	if r.ID == "" {
		return
	}
	verdict := "PASSED"
	if !r.OK {
		verdict = "FAILED"
	}
	fmt.Fprintf(w, "backup %s verify --level %s: %s in %.1fs\n", r.ID, r.Level, verdict, r.Seconds)
	if r.Entries > 0 {
		fmt.Fprintf(w, "  %d archive entries decoded\n", r.Entries)
	}
	if r.Tables > 0 {
		fmt.Fprintf(w, "  restored in %.1fs; %d tables compared, %d differ; audit triggers: %v\n", r.RestoreSeconds, r.Tables, len(r.Mismatches), r.TriggersChecked)
	}
	for _, m := range r.Mismatches {
		fmt.Fprintf(w, "  MISMATCH %s\n", m)
	}
	if r.Error != "" {
		fmt.Fprintf(w, "  %s\n", r.Error)
	}
}

func newBackupRestoreCmd(d *deps, o *backupOptions) *cobra.Command {
	var target string
	var force, keepOwners bool
	var nJobs int
	c := &cobra.Command{
		Use:         "restore ID|latest --target-url URL",
		Annotations: jobCommand(jobs.BackupRestore),
		Short:       "Restore a backup into another database and compare row counts",
		Long: `Download a backup, check its SHA-256, decrypt (--identity), decompress to a
scratch file and restore it with pg_restore --jobs into --target-url, then
compare every table's row count with the manifest. The runs that were going
on in the source when the backup was taken (the backup's own at least) are
marked abandoned in the restored ledger, so they block nothing there.

It refuses the backup's source database (recognised by the server's system
identifier and the database name, whatever the URL looks like) and a target
that already has tables, unless --force (which drops and replaces the
backup's objects in it). Objects are owned by the restoring user unless
--keep-owners.

Exit codes: 0 restored and counts match, 1 failed or counts differ,
2 refused or configuration error, 4 another restore is running,
130 interrupted.`,
		Example: `  createdb ip2a_restored
  ip2a-ops backup restore latest --target-url postgres://ops@db.internal/ip2a_restored --identity /secure/ops.agekey`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			ctx := c.Context()
			if target == "" {
				return exitcode.Usagef("--target-url postgres://user@host/empty_database", "restore needs --target-url")
			}
			return runJob(ctx, d, jobs.BackupRestore, jobs.BackupRestoreArgs{BackupStore: o.args(), ID: args[0], TargetURL: target,
				Force: force, KeepOwners: keepOwners, Jobs: nJobs}, func(w io.Writer, r backup.RestoreResult) {
				if r.Tables == 0 {
					return
				}
				fmt.Fprintf(w, "restored backup %s into %s in %.1fs: %d entries, %d tables, %d rows; %d tables differ\n",
					r.ID, r.Target, r.Seconds, r.Entries, r.Tables, r.Rows, len(r.Mismatches))
				for _, m := range r.Mismatches {
					fmt.Fprintf(w, "  MISMATCH %s\n", m)
				}
			}, backupHints)
		},
	}
	f := c.Flags()
	f.StringVar(&target, "target-url", "", "database to restore into (must exist; empty unless --force)")
	f.BoolVar(&force, "force", false, "restore into a database that has tables, replacing the backup's objects")
	f.BoolVar(&keepOwners, "keep-owners", false, "restore ownership and privileges (the roles must exist on the target)")
	f.IntVar(&nJobs, "jobs", 2, "restore connections at once (pg_restore --jobs, and COPY of the big tables)")
	return c
}

func newBackupPruneCmd(d *deps, o *backupOptions) *cobra.Command {
	var p backup.Policy
	var apply bool
	c := &cobra.Command{
		Use:         "prune",
		Annotations: jobCommand(jobs.BackupPrune),
		Short:       "Apply grandfather-father-son retention (dry run unless --apply)",
		Long: `Decide from the manifests which backups to keep: the newest --keep-last, and
the newest backup of each of the last --keep-daily days, --keep-weekly ISO
weeks, --keep-monthly months and --keep-yearly years that have backups (UTC).
The defaults follow the app's runbook: 7 daily, 4 weekly, 12 monthly. The
newest verified backup is never deleted. Without --apply nothing is deleted;
with it, each backup's manifest is deleted, then its data, and every
deletion is listed in the run ledger's summary.

Exit codes: 0 done, 1 storage failed, 2 configuration error, 4 another prune
is running, 130 interrupted.`,
		Example: `  ip2a-ops backup prune
  ip2a-ops backup prune --apply --keep-daily 7 --keep-weekly 4 --keep-monthly 12`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			return runJob(c.Context(), d, jobs.BackupPrune, jobs.BackupPruneArgs{BackupStore: o.args(), Policy: p, Apply: apply}, printPrune, backupHints)
		},
	}
	addPolicyFlags(c, &p)
	c.Flags().BoolVar(&apply, "apply", false, "delete (default: only show what would be deleted)")
	return c
}

func printPrune(w io.Writer, r backup.PruneResult) {
	verb := "deleted"
	if r.DryRun {
		verb = "would delete (dry run; --apply to delete)"
	}
	for _, dc := range r.Decisions {
		if dc.Keep {
			fmt.Fprintf(w, "keep   %s  %v\n", dc.ID, dc.Reasons)
		}
	}
	for _, del := range r.Deleted {
		fmt.Fprintf(w, "delete %s  %s\n", del.ID, byteSize(del.Bytes))
	}
	fmt.Fprintf(w, "prune: %d kept, %d %s, %s freed\n", r.Kept, len(r.Deleted), verb, byteSize(r.FreedBytes))
}
