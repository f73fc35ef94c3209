package cmd

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/ip2a/ip2a-ops/pkg/exitcode"
	"github.com/ip2a/ip2a-ops/pkg/jobs"
	"github.com/ip2a/ip2a-ops/pkg/reports"
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
		Use:         "membership-report",
		Annotations: jobCommand(jobs.MembershipReport),
		Short:       "Write the membership report: headcount, changes, employment, age of membership",
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
		RunE: func(c *cobra.Command, args []string) error { return runMembershipReport(c.Context(), d, o) },
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

// parsePeriod parses --from and --to (either may be empty) and checks
// that the period does not end before it starts.
func parsePeriod(from, to string) (f, t time.Time, err error) {
	if f, err = parseDay("--from", from); err != nil {
		return f, t, err
	}
	if t, err = parseDay("--to", to); err != nil {
		return f, t, err
	}
	if !f.IsZero() && !t.IsZero() && f.After(t) {
		return f, t, exitcode.Usagef("--from must be on or before --to", "--from %s is after --to %s", from, to)
	}
	return f, t, nil
}

// membershipReportHints map membership-report's fields to its flags.
var membershipReportHints = withDelivery(fieldHints{
	"From":      "--from must be on or before --to",
	"LastMonth": "use --last-month or --as-of/--from/--to",
	"":          "ip2a-ops membership-report --help",
})

func runMembershipReport(ctx context.Context, d *deps, o membershipReportOptions) error {
	a := jobs.MembershipReportArgs{LastMonth: o.lastMonth, ReportDelivery: o.delivery.delivery(o.out, o.format)}
	var err error
	if a.AsOf, err = parseDay("--as-of", o.asOf); err != nil {
		return err
	}
	if a.From, a.To, err = parsePeriod(o.from, o.to); err != nil {
		return err
	}
	return runJob(ctx, d, jobs.MembershipReport, a, printMembershipReport, membershipReportHints)
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
