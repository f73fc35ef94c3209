package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ip2a/ip2a-ops/pkg/doctor"
	"github.com/ip2a/ip2a-ops/pkg/exitcode"
	"github.com/ip2a/ip2a-ops/pkg/jobs"
)

type doctorOptions struct {
	pgDump     string
	scratchURL string
	storageURL string
	crontab    string
}

func newDoctorCmd(d *deps) *cobra.Command {
	var o doctorOptions
	c := &cobra.Command{
		Use:   "doctor",
		Short: "Check that this deployment can run every job, and say what to fix",
		Long: `Check, without changing anything (except a probe object written to and
deleted from storage):

  - whether the database URL goes through a transaction-pooling proxy
    (PgBouncer pool_mode=transaction: two connections' transactions share
    server sessions); if it does, the URL must carry
    default_query_exec_mode=exec, and backup and worker, which need a
    session of their own, a direct URL (--direct-url, DATABASE_DIRECT_URL)
    that does not;
  - pg_dump is on PATH (or --pg-dump) and not older than the server;
  - the role can SELECT every table and sequence (backup, reports), and has
    what cleanup, integrity-check and audit-archive need;
  - restore drills can create a scratch database (CREATEDB) or use
    --scratch-url;
  - the ip2a_ops schema is at this binary's version;
  - audit_logs' immutability trigger and ip2a-ops's archive guard;
  - storage (when --storage-url or the S3_* variables configure one) can be
    written, read back and deleted;
  - a crontab (--crontab) is fit for Railway: UTC, five fields, at least
    5 minutes between runs; entries sharing a minute are a warning.

Exit codes: 0 no problems (warnings allowed), 1 could not run (database
unreachable), 2 configuration error, 3 problems found.`,
		Example: `  ip2a-ops doctor
  ip2a-ops doctor --crontab crontab.example --storage-url s3://ip2a-backups/prod --json`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error { return runDoctor(c.Context(), d, o) },
	}
	f := c.Flags()
	f.StringVar(&o.pgDump, "pg-dump", "pg_dump", "pg_dump to check: a path or a name on PATH (IP2A_OPS_PG_BIN, when set, is searched first)")
	envFlag(f, "pg-dump", "IP2A_OPS_PG_DUMP")
	f.StringVar(&o.scratchURL, "scratch-url", "", "database restore drills restore into (else they need CREATEDB)")
	envFlag(f, "scratch-url", "IP2A_OPS_SCRATCH_URL")
	f.StringVar(&o.storageURL, "storage-url", "", "storage to probe: file:///dir or s3://bucket/prefix (S3 settings from S3_* / IP2A_OPS_S3_*)")
	envFlag(f, "storage-url", "IP2A_OPS_STORAGE_URL")
	f.StringVar(&o.crontab, "crontab", "", "crontab file to check for Railway")
	envFlag(f, "crontab", "IP2A_OPS_CRONTAB")
	return c
}

func runDoctor(ctx context.Context, d *deps, o doctorOptions) error {
	opts := doctor.Options{PgDump: o.pgDump, ScratchURL: o.scratchURL, DirectURL: d.g.directURL, OpsSchema: d.g.schema, Now: d.now()}
	if bin := d.getenv("IP2A_OPS_PG_BIN"); bin != "" && o.pgDump == "pg_dump" {
		if _, err := os.Stat(doctor.PgDumpIn(bin)); err == nil {
			opts.PgDump = doctor.PgDumpIn(bin)
		}
	}
	if o.crontab != "" {
		b, err := os.ReadFile(o.crontab)
		if err != nil {
			return exitcode.Usagef("--crontab crontab.example", "read crontab: %v", err)
		}
		opts.Crontab, opts.CrontabName, opts.Resolve = b, o.crontab, resolveEntry
	}
	for _, j := range jobs.All() {
		for _, p := range j.NeededPrivileges() {
			opts.Needs = append(opts.Needs, doctor.Need{Job: j.Kind(), Table: p.Table, Privilege: p.Privilege})
		}
	}
	if st, err := d.storage(ctx, o.storageURL); !errors.Is(err, jobs.ErrNoStorage) {
		opts.Store, opts.StoreErr = st, err
	}
	pool, err := d.db(ctx)
	if err != nil {
		return err
	}
	opts.Pool = pool
	res, err := doctor.Run(ctx, opts)
	if err != nil {
		return err
	}
	if d.g.json {
		if err := writeJSON(d.stdout, res); err != nil {
			return err
		}
	} else {
		printDoctor(d.stdout, res)
	}
	if res.Problems > 0 {
		return fmt.Errorf("%d problems found: %w", res.Problems, exitcode.ErrProblems)
	}
	return nil
}

func printDoctor(w io.Writer, r doctor.Result) {
	marks := map[string]string{doctor.OK: "ok  ", doctor.Problem: "FIX ", doctor.Warning: "warn", doctor.Skipped: "skip"}
	for _, c := range r.Checks {
		fmt.Fprintf(w, "[%s] %s: %s\n", marks[c.Status], c.Name, c.Detail)
		if c.Fix != "" && (c.Status == doctor.Problem || c.Status == doctor.Warning) {
			fmt.Fprintf(w, "       fix: %s\n", strings.ReplaceAll(c.Fix, "\n", "\n            "))
		}
	}
	fmt.Fprintf(w, "%d problems, %d warnings\n", r.Problems, r.Warnings)
}
