package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/ip2a/ip2a-ops/pkg/exitcode"
	"github.com/ip2a/ip2a-ops/pkg/reports"
	"github.com/ip2a/ip2a-ops/pkg/runner"
)

type membershipReportOptions struct {
	asOf      string
	from, to  string
	lastMonth bool
	out       string
	format    string
	delivery  deliveryOptions
}

func newMembershipReportCmd(d *deps) *cobra.Command {
	var o membershipReportOptions
	c := &cobra.Command{
		Use:   "membership-report",
		Short: "Write the membership report: headcount, changes, employment, age of membership",
		Long: `Write the membership report of the local from one read-only snapshot of the
database: Summary, Headcount (members on the roll by classification and
status), Changes (new members, members removed, status changes from
audit_logs and, where the audit trail is silent, from the data, each row
saying which), Employers (members currently employed, by employer), Without
employment (members on the roll with no current employment, with their last
employer) and Notes (what every figure means).

--as-of is the day the roll, the headcount and employment are counted on
(default: --to, else today, UTC). --from/--to is the period whose changes are
listed (default: the month of --as-of up to it); --last-month is the
previous calendar month, as of its last day, for a monthly schedule.

The file is membership_report_<as-of>.xlsx (and/or .pdf, --format) in --out
(a directory, default the current one), or --out itself when it ends in
.xlsx or .pdf. It is written to a temporary name and renamed when whole.

` + reportDeliveryHelp + `

Exit codes: 0 written, 1 failed (the output cannot be written, no partial
file is left; a delivery failed), 2 usage error (a malformed date, --from
after --to, --format unknown, --email without SMTP settings), 4 another
membership-report is running, 130 interrupted.`,
		Example: `  ip2a-ops membership-report --out reports/
  ip2a-ops membership-report --as-of 2026-06-30 --from 2026-01-01 --to 2026-06-30 --out h1.xlsx
  ip2a-ops membership-report --last-month --out /var/lib/ip2a/reports --json
  ip2a-ops membership-report --last-month --format both --out s3://ip2a-reports/membership --email officers@ibew46.example`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error { return runMembershipReport(c.Context(), d, c, o) },
	}
	f := c.Flags()
	f.StringVar(&o.asOf, "as-of", "", "day the headcount and employment are counted on, YYYY-MM-DD (default: --to, else today, UTC)")
	f.StringVar(&o.from, "from", "", "first day of the changes listed, YYYY-MM-DD (default: the first of the --as-of month)")
	f.StringVar(&o.to, "to", "", "last day of the changes listed, YYYY-MM-DD (default: --as-of)")
	f.BoolVar(&o.lastMonth, "last-month", false, "the previous calendar month (UTC), as of its last day")
	f.StringVar(&o.out, "out", ".", "directory for the report, or a file name ending in .xlsx or .pdf")
	envFlag(f, "out", "IP2A_OPS_MEMBERSHIP_REPORT_OUT")
	f.StringVar(&o.format, "format", "xlsx", "xlsx, pdf or both")
	envFlag(f, "format", "IP2A_OPS_MEMBERSHIP_REPORT_FORMAT")
	addDeliveryFlags(f, &o.delivery, "IP2A_OPS_MEMBERSHIP_REPORT")
	return c
}

// parseDay parses a YYYY-MM-DD flag value; empty is the zero time.
func parseDay(flag, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.DateOnly, v)
	if err != nil {
		return t, exitcode.Usagef(flag+" 2026-07-01", "%s %q is not a date (YYYY-MM-DD)", flag, v)
	}
	return t, nil
}

// reportOutput is the Output every report command fills the same way:
// --format, --out (a path, or storage), the database and the clock; it
// also checks the delivery flags, before any report is read.
func reportOutput(ctx context.Context, d *deps, job, out, format string, del deliveryOptions) (reports.Output, error) {
	f := reports.Format(format)
	if err := f.Validate(); err != nil {
		return reports.Output{}, exitcode.Usagef("--format xlsx|pdf|both", "--%v", err)
	}
	if err := checkDelivery(d, job, del); err != nil {
		return reports.Output{}, err
	}
	dir, store, err := reportDestination(ctx, d, out)
	if err != nil {
		return reports.Output{}, err
	}
	pool, err := d.opsDB(ctx)
	if err != nil {
		return reports.Output{}, err
	}
	return reports.Output{Pool: pool, Out: dir, Store: store, Format: f, Now: d.now(), ToolVersion: versionString()}, nil
}

func runMembershipReport(ctx context.Context, d *deps, c *cobra.Command, o membershipReportOptions) error {
	from, to, err := grantReportPeriod(grantReportOptions{from: o.from, to: o.to, lastMonth: o.lastMonth}, d.now())
	if err != nil {
		return err
	}
	asOf, err := parseDay("--as-of", o.asOf)
	if err != nil {
		return err
	}
	const job = "membership-report"
	out, err := reportOutput(ctx, d, job, o.out, o.format, o.delivery)
	if err != nil {
		return err
	}
	opts := reports.MembershipOptions{Output: out, AsOf: asOf, From: from, To: to}
	return executeReport(ctx, d, c, job, opts.Validate, func(ctx context.Context) (reports.MembershipResult, error) {
		res, err := reports.MembershipReport(ctx, opts)
		if err != nil {
			return res, err
		}
		del, err := emailReport(ctx, d, job, o.delivery, out.Store, res.Files, "Membership report as of "+res.AsOf,
			reportBody(res, printMembershipReport))
		if del != nil {
			res.Deliveries = append(res.Deliveries, *del)
		}
		return res, err
	}, printMembershipReport)
}

// executeReport checks a report's options (a bad one is a usage error)
// and runs it as job through the runner, a period that ends before it
// starts being a usage error too.
func executeReport[T any](ctx context.Context, d *deps, c *cobra.Command, job string, validate func() error,
	fn func(ctx context.Context) (T, error), text func(io.Writer, T)) error {
	if err := validate(); err != nil {
		return exitcode.Usagef("ip2a-ops "+job+" --help", "%v", err)
	}
	return execute(ctx, d, c, job, func(ctx context.Context, run *runner.Run) (T, error) {
		res, err := fn(ctx)
		if errors.Is(err, reports.ErrBadPeriod) {
			return res, &exitcode.UsageError{Err: err, Hint: "--from must be on or before --to"}
		}
		return res, err
	}, text)
}

func printMembershipReport(w io.Writer, r reports.MembershipResult) {
	for _, f := range r.Files {
		fmt.Fprintf(w, "%s  %d bytes\n", f.Path, f.Bytes)
	}
	fmt.Fprintf(w, "as of %s: %d members", r.AsOf, r.Members)
	for _, s := range r.ByStatus {
		fmt.Fprintf(w, ", %d %s", s.N, s.Label)
	}
	fmt.Fprintf(w, "\n%s to %s: %d new, %d removed, %d status changes in audit_logs, %d more from the data\n",
		r.From, r.To, r.NewMembers, r.Removed, r.StatusChanges, r.UnauditedChanges)
	fmt.Fprintf(w, "employment: %d with, %d without\n", r.WithEmployment, r.WithoutEmployment)
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	printDeliveries(w, r.Deliveries)
}
