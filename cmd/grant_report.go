package cmd

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/ip2a/ip2a-ops/pkg/exitcode"
	"github.com/ip2a/ip2a-ops/pkg/jobs"
	"github.com/ip2a/ip2a-ops/pkg/reports"
)

type grantReportOptions struct {
	grant     string
	allActive bool
	statuses  []string
	from, to  string
	lastMonth bool
	out       string
	format    string
	delivery  deliveryOptions
}

func newGrantReportCmd(d *deps) *cobra.Command {
	var o grantReportOptions
	c := &cobra.Command{
		Use:         "grant-report",
		Annotations: jobCommand(jobs.GrantReport),
		Short:       "Write a grant's Excel workbook for the grant officer or funder",
		Long: `Write the Excel workbook of one grant (--grant ID|NUMBER) or of every active
grant (--all-active, what the app itself calls active: is_active and not
deleted; the app creates every grant with status 'pending', so the status
does not count unless --status asks for it): Summary (identity, enrollment, money, outcomes,
credentials, targets), Period (figures inside the reporting period next to
the cumulative ones), Enrollments, Expenses, Expenses by category (against
the grant's allowable categories, out-of-policy spend marked) and Notes (the
definition of every figure, the soft-deleted rows left out, the time zone).

All figures come from one read-only snapshot of the database. Money is exact
to the cent and written as numbers with a currency format; dates as dates.
The detail sheets are streamed, so memory stays bounded at any size.

The reporting period is --from/--to (inclusive dates, YYYY-MM-DD); without
them it runs from the grant's start to today (UTC). --last-month is the
previous calendar month, for a monthly schedule.

The file is grant_report_<grant number>_<period>.xlsx in --out (a directory,
default the current one), or --out itself when it ends in .xlsx. It is
written to a temporary name and renamed when whole. --format pdf writes
instead a PDF summary a funder reads on paper (period, enrollment and
outcomes, targets, budget, spend and remaining, spend by category and by
month as charts, out-of-policy expenses, notes; .pdf), --format both writes
the two.

` + reportDeliveryHelp + `

--status narrows --all-active to grants with one of the given statuses
(pending, active, completed, closed, suspended; newer schema only). Every
grant --all-active leaves out is listed with the reason, and a run that
selects no grant at all fails (exit 1): a scheduled report that writes
nothing must be seen.

On the older schema without grant_enrollments, enrollment figures come from
the students the grant's expenses were charged to, and the Notes say so.

Exit codes: 0 written, 1 failed (the output cannot be written, no partial
file is left; --all-active selected no grant; a delivery failed), 2 usage
error (unknown grant, with the closest grant numbers; --from after --to; a
malformed date; an unknown --status or --format; --email without SMTP
settings), 4 another grant-report is running, 130 interrupted.`,
		Example: `  ip2a-ops grant-report --grant G-2026-001 --from 2026-07-01 --to 2026-09-30 --out reports/
  ip2a-ops grant-report --grant 3 --out q3.xlsx
  ip2a-ops grant-report --grant G-2026-001 --last-month --format both --out reports/
  ip2a-ops grant-report --all-active --last-month --out /var/lib/ip2a/reports
  ip2a-ops grant-report --all-active --status active,pending --out reports/
  ip2a-ops grant-report --all-active --last-month --format both --out s3://ip2a-reports/grants --email grants@ibew46.example`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error { return runGrantReport(c.Context(), d, o) },
	}
	f := c.Flags()
	f.StringVar(&o.grant, "grant", "", "grant id or grant number")
	f.BoolVar(&o.allActive, "all-active", false, "one workbook per active grant (is_active and not deleted)")
	f.StringSliceVar(&o.statuses, "status", nil, "with --all-active: only grants with one of these statuses (comma-separated)")
	f.StringVar(&o.from, "from", "", "first day of the reporting period, YYYY-MM-DD (default: the grant's start)")
	f.StringVar(&o.to, "to", "", "last day of the reporting period, YYYY-MM-DD (default: today, UTC)")
	f.BoolVar(&o.lastMonth, "last-month", false, "report on the previous calendar month (UTC)")
	f.StringVar(&o.out, "out", ".", "directory for the workbooks, or a file name ending in .xlsx")
	envFlag(f, "out", "IP2A_OPS_GRANT_REPORT_OUT")
	f.StringVar(&o.format, "format", "xlsx", "xlsx, pdf (a summary for a funder on paper) or both")
	envFlag(f, "format", "IP2A_OPS_GRANT_REPORT_FORMAT")
	addDeliveryFlags(f, &o.delivery, "IP2A_OPS_GRANT_REPORT")
	return c
}

// grantReportHints map grant-report's fields to its flags.
var grantReportHints = withDelivery(fieldHints{
	"Grant":    "give --grant ID|NUMBER or --all-active (one of them), e.g. ip2a-ops grant-report --grant G-2026-001",
	"Out":      "--out DIR (--all-active writes several workbooks)",
	"Statuses": "--status goes with --all-active, e.g. ip2a-ops grant-report --all-active --status active",
	"":         "ip2a-ops grant-report --help",
})

func runGrantReport(ctx context.Context, d *deps, o grantReportOptions) error {
	a := jobs.GrantReportArgs{Grant: o.grant, AllActive: o.allActive, Statuses: o.statuses, LastMonth: o.lastMonth,
		ReportDelivery: o.delivery.delivery(o.out, o.format)}
	if o.lastMonth && (o.from != "" || o.to != "") {
		return exitcode.Usagef("use --last-month or --from/--to", "--last-month cannot be combined with --from or --to")
	}
	var err error
	if a.From, a.To, err = parsePeriod(o.from, o.to); err != nil {
		return err
	}
	return runJob(ctx, d, jobs.GrantReport, a, printGrantReport, grantReportHints)
}

func printGrantReport(w io.Writer, r reports.GrantResult) {
	for _, g := range r.Reports {
		fmt.Fprintf(w, "%s  %s  %s to %s  %d enrollments  %d expenses  spent %s of %s  %d bytes\n", g.Path, g.GrantNumber,
			g.From, g.To, g.Enrollments, g.Expenses, dollars(g.SpentCents), dollars(g.BudgetCents), g.Bytes)
		for _, f := range g.Files[min(1, len(g.Files)):] {
			fmt.Fprintf(w, "  and %s  %d bytes\n", f.Path, f.Bytes)
		}
		for _, n := range g.Notes {
			fmt.Fprintf(w, "  note: %s\n", n)
		}
	}
	for _, g := range r.LeftOut {
		fmt.Fprintf(w, "left out: %s  %s: %s\n", g.GrantNumber, g.GrantName, g.Reason)
	}
	printDeliveries(w, r.Deliveries)
}

// dollars renders cents as 1234.56 without going through a float.
func dollars(c int64) string {
	sign := ""
	if c < 0 {
		sign, c = "-", -c
	}
	return fmt.Sprintf("%s%d.%02d", sign, c/100, c%100)
}
