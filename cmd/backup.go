package cmd

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ip2a/ip2a-ops/pkg/backup"
	"github.com/ip2a/ip2a-ops/pkg/exitcode"
	"github.com/ip2a/ip2a-ops/pkg/jobs"
	"github.com/ip2a/ip2a-ops/pkg/storage"
)

// backupOptions are the flags shared by every backup subcommand.
type backupOptions struct {
	storageURL string
	prefix     string
	workDir    string
	pgRestore  string
	identities []string
}

// backupCreateOptions are the flags of backup (= backup create).
type backupCreateOptions struct {
	pgDump         string
	recipients     []string
	recipientFiles []string
	level          int
	threads        int
	jobs           int
	pgDumpOnly     bool
	lockWait       time.Duration
	verify         string
	prune          bool
	policy         backup.Policy
}

const backupLong = `Make a logical backup of the database with pg_dump and store it in a local
directory or S3-compatible storage (--storage file:///dir or s3://bucket/prefix;
S3 settings from the app's S3_ENDPOINT_URL, S3_ACCESS_KEY_ID,
S3_SECRET_ACCESS_KEY, S3_BUCKET_NAME, S3_REGION, each overridden by
IP2A_OPS_S3_ENDPOINT, IP2A_OPS_S3_ACCESS_KEY_ID, IP2A_OPS_S3_SECRET_ACCESS_KEY,
IP2A_OPS_S3_BUCKET, IP2A_OPS_S3_REGION; IP2A_OPS_S3_PATH_STYLE=true for MinIO).

Everything is read in one exported REPEATABLE READ snapshot. Tables of 16 MiB
and more (audit_logs) have their rows copied by ip2a-ops itself (COPY, --jobs
connections); pg_dump dumps the schema and every other table. The result is
one tar stream (ip2a-ops-backup.json, pg_dump.custom, data/NNNN/*.copy),
compressed with zstd on every core, optionally encrypted to age public keys
(--recipient age1..., --recipients-file: the host making backups needs no
private key), hashed (SHA-256) and streamed into the storage with no scratch
copy of the data; the stored object is re-read and checked, and only then is
the manifest written: a backup exists once its manifest does. Exact row
counts of every table, from the same snapshot, go into the manifest.
Leftovers of interrupted runs are removed by the next run.

pg_dump must be at least the server's major version (--pg-dump PATH picks
one). --lock-wait-timeout keeps a dump from queueing the app behind a
migration waiting for a lock. pg_dump and the snapshot's connections use
--direct-url (DATABASE_DIRECT_URL) when set: they need a session of their
own, which a transaction-pooling proxy does not give; the run ledger uses
--database-url.

Exit codes: 0 backup stored and checked, 1 failed (pg_dump failed, storage
unreachable, disk full, check failed), 2 configuration error (no storage,
wrong credentials or bucket, pg_dump missing or too old, bad recipient),
4 another backup is running, 130 interrupted.`

func newBackupCmd(d *deps) *cobra.Command {
	var o backupOptions
	var co backupCreateOptions
	c := &cobra.Command{
		Use:         "backup",
		Annotations: jobCommand(jobs.Backup),
		Short:       "Verified, encrypted, retained logical backups (create, list, verify, restore, prune, status)",
		Long:        backupLong,
		Example: `  ip2a-ops backup --storage file:///var/backups/ip2a --recipients-file /etc/ip2a-ops/recipients.txt --prune
  ip2a-ops backup --storage s3://ip2a-backups/prod
  ip2a-ops backup list --storage s3://ip2a-backups/prod --json
  ip2a-ops backup verify latest --level restore --identity /secure/ops.agekey
  ip2a-ops backup status --max-age 26h`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error { return runBackup(c.Context(), d, o, co) },
	}
	pf := c.PersistentFlags()
	pf.StringVar(&o.storageURL, "storage", "", "where backups live: file:///dir, a path, or s3://bucket/prefix (default: S3_BUCKET_NAME when set)")
	envFlag(pf, "storage", "IP2A_OPS_BACKUP_STORAGE")
	pf.StringVar(&o.prefix, "prefix", backup.DefaultPrefix, "key prefix of the backups inside the storage")
	envFlag(pf, "prefix", "IP2A_OPS_BACKUP_PREFIX")
	pf.StringVar(&o.workDir, "work-dir", "", "scratch directory for pg_dump's archive of the tables not copied by ip2a-ops, and for restores (default $TMPDIR)")
	envFlag(pf, "work-dir", "IP2A_OPS_BACKUP_WORK_DIR")
	pf.StringVar(&o.pgRestore, "pg-restore", "", "pg_restore binary (default: beside pg_dump, else the newest found)")
	envFlag(pf, "pg-restore", "IP2A_OPS_PG_RESTORE")
	pf.StringSliceVar(&o.identities, "identity", nil, "age identity file to decrypt encrypted backups (verify --level contents|restore, restore)")
	envFlag(pf, "identity", "IP2A_OPS_BACKUP_IDENTITY")
	addCreateFlags(c, &co)

	create := &cobra.Command{
		Use:         "create",
		Annotations: jobCommand(jobs.Backup),
		Short:       "Make a backup (the same as plain 'ip2a-ops backup')",
		Long:        backupLong,
		Args:        cobra.NoArgs,
	}
	var co2 backupCreateOptions
	addCreateFlags(create, &co2)
	create.RunE = func(c *cobra.Command, args []string) error { return runBackup(c.Context(), d, o, co2) }
	c.AddCommand(create, newBackupListCmd(d, &o), newBackupStatusCmd(d, &o), newBackupVerifyCmd(d, &o),
		newBackupRestoreCmd(d, &o), newBackupPruneCmd(d, &o))
	return c
}

func addCreateFlags(c *cobra.Command, co *backupCreateOptions) {
	f := c.Flags()
	f.StringVar(&co.pgDump, "pg-dump", "", "pg_dump binary (default: the newest on PATH or under /usr/lib/postgresql/*/bin, at least the server's version)")
	envFlag(f, "pg-dump", "IP2A_OPS_PG_DUMP")
	f.StringSliceVar(&co.recipients, "recipient", nil, "encrypt to this age public key (age1...); repeat for several")
	envFlag(f, "recipient", "IP2A_OPS_BACKUP_RECIPIENTS")
	f.StringSliceVar(&co.recipientFiles, "recipients-file", nil, "file of age public keys, one per line (# comments)")
	envFlag(f, "recipients-file", "IP2A_OPS_BACKUP_RECIPIENTS_FILE")
	f.IntVar(&co.level, "compression", 2, "zstd level: 1 fastest, 2 default, 3 better, 4 smallest")
	envFlag(f, "compression", "IP2A_OPS_BACKUP_COMPRESSION")
	f.IntVar(&co.threads, "threads", 0, "compression threads (default: min(CPUs, 4))")
	f.IntVar(&co.jobs, "jobs", 2, "connections copying big tables' rows at once (one table each)")
	envFlag(f, "jobs", "IP2A_OPS_BACKUP_JOBS")
	f.BoolVar(&co.pgDumpOnly, "pg-dump-only", false, "leave every table's rows to pg_dump (slower; the pg_dump archive inside then restores with pg_restore alone)")
	f.DurationVar(&co.lockWait, "lock-wait-timeout", 30*time.Second, "fail instead of waiting longer than this for a table lock")
	envFlag(f, "lock-wait-timeout", "IP2A_OPS_BACKUP_LOCK_WAIT_TIMEOUT")
	f.StringVar(&co.verify, "verify", "checksum", "after storing: checksum (re-read and hash the stored object) or none")
	f.BoolVar(&co.prune, "prune", false, "apply the retention policy (--keep-*) after a successful backup")
	addPolicyFlags(c, &co.policy)
}

func addPolicyFlags(c *cobra.Command, p *backup.Policy) {
	f := c.Flags()
	f.IntVar(&p.KeepLast, "keep-last", 0, "keep the newest N backups")
	f.IntVar(&p.KeepDaily, "keep-daily", backup.DefaultPolicy.KeepDaily, "keep the newest backup of each of the last N days with backups")
	f.IntVar(&p.KeepWeekly, "keep-weekly", backup.DefaultPolicy.KeepWeekly, "... of the last N ISO weeks with backups")
	f.IntVar(&p.KeepMonthly, "keep-monthly", backup.DefaultPolicy.KeepMonthly, "... of the last N months with backups")
	f.IntVar(&p.KeepYearly, "keep-yearly", 0, "... of the last N years with backups")
	for _, n := range []string{"last", "daily", "weekly", "monthly", "yearly"} {
		envFlag(f, "keep-"+n, "IP2A_OPS_BACKUP_KEEP_"+strings.ToUpper(n))
	}
}

// backupHints map the backup jobs' fields to their flags.
var backupHints = fieldHints{
	"Storage.None":   "--storage file:///var/backups/ip2a or s3://ip2a-backups/prod (or IP2A_OPS_BACKUP_STORAGE, or S3_BUCKET_NAME)",
	"Storage":        "--storage file:///dir or s3://bucket/prefix",
	"Identities":     "--identity /path/to/key.txt (an age identity file: AGE-SECRET-KEY-1...)",
	"Recipients":     "--recipient age1... (an age X25519 public key, from age-keygen -y)",
	"RecipientFiles": "--recipients-file /etc/ip2a-ops/recipients.txt (age1... public keys, one per line)",
	"Verify":         "--verify checksum|none   (deeper checks: ip2a-ops backup verify --level contents|restore)",
	"Level":          "--level checksum|contents|restore",
	"Policy":         "--keep-daily 7 --keep-weekly 4 --keep-monthly 12",
	"KeepLast":       "--keep-last N (N >= 0)",
	"KeepDaily":      "--keep-daily 7",
	"KeepWeekly":     "--keep-weekly 4",
	"KeepMonthly":    "--keep-monthly 12",
	"KeepYearly":     "--keep-yearly N (N >= 0)",
	"":               "ip2a-ops backup --help",
}

func (o *backupOptions) args() jobs.BackupStore {
	return jobs.BackupStore{Storage: o.storageURL, Prefix: o.prefix, WorkDir: o.workDir, PgRestore: o.pgRestore, Identities: o.identities}
}

// backupStore opens the configured storage for the commands that read it
// outside a run (list, status).
func backupStore(ctx context.Context, d *deps, o *backupOptions) (storage.Store, error) {
	d.hints = backupHints
	return jobs.OpenBackupStore(ctx, d.jobEnv(), o.args())
}

func runBackup(ctx context.Context, d *deps, o backupOptions, co backupCreateOptions) error {
	return runJob(ctx, d, jobs.Backup, jobs.BackupArgs{BackupStore: o.args(), PgDump: co.pgDump, Recipients: co.recipients,
		RecipientFiles: co.recipientFiles, Compression: co.level, Threads: co.threads, Jobs: co.jobs, PgDumpOnly: co.pgDumpOnly,
		LockWait: co.lockWait, Verify: co.verify, Prune: co.prune, Policy: co.policy}, printCreate, backupHints)
}

func printCreate(w io.Writer, r jobs.BackupResult) {
	if r.Stage != "done" {
		if len(r.Cleaned) > 0 {
			fmt.Fprintf(w, "removed %d leftovers of interrupted runs\n", len(r.Cleaned))
		}
		fmt.Fprintf(w, "backup failed at stage %s; nothing was added to %s\n", r.Stage, r.Store)
		return
	}
	enc := "not encrypted"
	if r.Encrypted {
		enc = "encrypted (age)"
	}
	fmt.Fprintf(w, "backup %s of %s stored in %s\n", r.ID, r.Database, r.Store)
	fmt.Fprintf(w, "  dump %s -> stored %s (zstd, %.1fx), %s, sha256 checked: %t\n", byteSize(r.DumpBytes), byteSize(r.StoredBytes), r.Ratio, enc, r.Verified)
	fmt.Fprintf(w, "  %d archive entries, %d tables, %d rows counted in the dump's snapshot\n", r.Entries, r.Tables, r.Rows)
	if len(r.CopiedTables) > 0 {
		fmt.Fprintf(w, "  rows copied by ip2a-ops (the rest by pg_dump): %s\n", strings.Join(r.CopiedTables, ", "))
	}
	fmt.Fprintf(w, "  dump+compress+store %.1fs, store finish %.1fs, check %.1fs, total %.1fs\n", r.DumpSeconds, r.UploadSeconds, r.VerifySeconds, r.TotalSeconds)
	if len(r.Cleaned) > 0 {
		fmt.Fprintf(w, "  removed %d leftovers of interrupted runs\n", len(r.Cleaned))
	}
	if r.Prune != nil {
		printPrune(w, *r.Prune)
	}
}

// byteSize renders n bytes in binary units (512 B, 1.5 KiB, 3.2 GiB).
func byteSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func newBackupListCmd(d *deps, o *backupOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the backups (those with a manifest), oldest first",
		Long: `List every backup in the storage, oldest first: ID, start time, stored size,
rows, encryption and the last verification. Objects of interrupted runs have
no manifest and are not backups: they are not listed.

With --json: {"store": ..., "backups": [manifest, ...], "unreadable": [...]};
each manifest as written (see docs/backup.md).

Exit codes: 0 listed, 1 storage unreachable, 2 configuration error.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			ctx := c.Context()
			st, err := backupStore(ctx, d, o)
			if err != nil {
				return err
			}
			l, err := backup.List(ctx, backup.ListOptions{Store: st, Prefix: o.prefix})
			if err != nil {
				return err
			}
			if d.g.json {
				return writeJSON(d.stdout, struct {
					Store string `json:"store"`
					backup.ListResult
				}{st.String(), l})
			}
			w := d.stdout
			if len(l.Backups) == 0 {
				fmt.Fprintf(w, "no backups in %s\n", st)
			} else {
				fmt.Fprintf(w, "%-22s %-20s %10s %10s %-9s %s\n", "ID", "STARTED", "STORED", "ROWS", "ENCRYPTED", "LAST CHECK")
			}
			for _, m := range l.Backups {
				s := backup.Summarize(m)
				last := s.LastCheck
				if last == "" {
					last = "never verified"
				}
				enc := "no"
				if m.Object.Encryption != "" {
					enc = m.Object.Encryption
				}
				fmt.Fprintf(w, "%-22s %-20s %10s %10d %-9s %s\n", m.ID, m.StartedAt.UTC().Format("2006-01-02 15:04:05Z"), byteSize(m.Object.Size), m.TotalRows(), enc, last)
			}
			for _, u := range l.Unreadable {
				fmt.Fprintf(w, "unreadable manifest: %s\n", u)
			}
			return nil
		},
	}
}

func newBackupStatusCmd(d *deps, o *backupOptions) *cobra.Command {
	var maxAge time.Duration
	c := &cobra.Command{
		Use:   "status",
		Short: "Exit 3 when the newest verified backup is older than --max-age (a dead-man's switch)",
		Long: `Report the newest backup and the newest verified one (whose latest check
passed). When the newest verified backup started longer ago than --max-age,
or there is none, exit 3: point an uptime probe or cron alert at it to hear
about backups that silently stopped.

Exit codes: 0 fresh, 1 storage unreachable, 2 configuration error, 3 stale.`,
		Example: `  ip2a-ops backup status --max-age 26h`,
		Args:    cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			ctx := c.Context()
			st, err := backupStore(ctx, d, o)
			if err != nil {
				return err
			}
			res, err := backup.Status(ctx, backup.StatusOptions{Store: st, Prefix: o.prefix, MaxAge: maxAge, Now: d.now})
			if err != nil {
				return err
			}
			if d.g.json {
				if err := writeJSON(d.stdout, res); err != nil {
					return err
				}
			} else {
				w := d.stdout
				if res.Newest != nil {
					fmt.Fprintf(w, "newest backup:          %s (%s)\n", res.Newest.ID, orNever(res.Newest.LastCheck))
				}
				if res.NewestVerified != nil {
					fmt.Fprintf(w, "newest verified backup: %s, %s old (max %s)\n", res.NewestVerified.ID, (time.Duration(res.AgeSeconds) * time.Second).Round(time.Minute), maxAge)
				}
				if !res.Stale {
					fmt.Fprintln(w, "status: ok")
				}
			}
			if res.Stale {
				return fmt.Errorf("backups are stale: %s: %w", res.Reason, exitcode.ErrProblems)
			}
			return nil
		},
	}
	c.Flags().DurationVar(&maxAge, "max-age", 26*time.Hour, "the newest verified backup must be younger than this")
	envFlag(c.Flags(), "max-age", "IP2A_OPS_BACKUP_MAX_AGE")
	return c
}

func orNever(s string) string {
	if s == "" {
		return "never verified"
	}
	return "last check " + s
}
