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

type duesReportOptions struct {
	period    string
	from, to  string
	lastMonth bool
	out       string
	format    string
	delivery  deliveryOptions
}

func newDuesReportCmd(d *deps) *cobra.Command {
	var o duesReportOptions
	c := &cobra.Command{
		Use:         "dues-report",
		Annotations: jobCommand(jobs.DuesReport),
		Short:       "Write the dues report: billed, paid, outstanding, overdue, adjustments",
		Long: `Write the dues report of one dues period (--period YYYY-MM) or of the periods
of a range of months (--from YYYY-MM --to YYYY-MM; --last-month for a monthly
schedule), from one read-only snapshot of the database: Summary, By period,
By classification and By payment method (billed, paid, outstanding, waived,
written off, every payment method the database defines, Stripe labels
included), Overdue (members with dues still open past the grace period:
amounts, days and 30/60/90+ day buckets, counted to today, UTC), Adjustments
(pending, approved, denied) and Notes (what every figure means). Totals are
summed in the database and exact to the cent.

The file is dues_report_<YYYY-MM>[_<YYYY-MM>].xlsx (and/or .pdf, --format)
in --out (a directory, default the current one), or --out itself when it
ends in .xlsx or .pdf. It is written to a temporary name and renamed when
whole.

` + reportDeliveryHelp + `

Exit codes: 0 written, 1 failed (no dues period in those months: a
scheduled report that writes nothing must be seen; the output cannot be
written, no partial file is left; a delivery failed), 2 usage error (a
malformed month, --from after --to, --period with --from/--to, --email
without SMTP settings), 4 another dues-report is running, 130 interrupted.`,
		Example: `  ip2a-ops dues-report --period 2026-09 --out reports/
  ip2a-ops dues-report --from 2026-01 --to 2026-06 --out h1.xlsx
  ip2a-ops dues-report --last-month --out /var/lib/ip2a/reports --json
  ip2a-ops dues-report --last-month --format both --out s3://ip2a-reports/dues --email treasurer@ibew46.example`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error { return runDuesReport(c.Context(), d, o) },
	}
	f := c.Flags()
	f.StringVar(&o.period, "period", "", "one dues period, YYYY-MM")
	f.StringVar(&o.from, "from", "", "first month of a range, YYYY-MM")
	f.StringVar(&o.to, "to", "", "last month of a range, YYYY-MM (default: --from)")
	f.BoolVar(&o.lastMonth, "last-month", false, "the previous calendar month's period (UTC)")
	f.StringVar(&o.out, "out", ".", "directory for the report, or a file name ending in .xlsx or .pdf")
	envFlag(f, "out", "IP2A_OPS_DUES_REPORT_OUT")
	f.StringVar(&o.format, "format", "xlsx", "xlsx, pdf or both")
	envFlag(f, "format", "IP2A_OPS_DUES_REPORT_FORMAT")
	addDeliveryFlags(f, &o.delivery, "IP2A_OPS_DUES_REPORT")
	return c
}

// duesMonths turns --period or --from/--to into the first and last month.
func duesMonths(o duesReportOptions) (from, to time.Time, err error) {
	month := func(flag, v string) (time.Time, error) {
		t, err := time.Parse("2006-01", v)
		if err != nil {
			return t, exitcode.Usagef(flag+" 2026-09", "%s %q is not a month (YYYY-MM)", flag, v)
		}
		return t, nil
	}
	given := 0
	for _, b := range []bool{o.period != "", o.from != "" || o.to != "", o.lastMonth} {
		if b {
			given++
		}
	}
	const hint = "ip2a-ops dues-report --period 2026-09   (or --from 2026-01 --to 2026-06, or --last-month)"
	switch {
	case given != 1:
		return from, to, exitcode.Usagef(hint, "give one of --period, --from/--to, --last-month")
	case o.period != "":
		from, err = month("--period", o.period)
		return from, from, err
	case o.from == "":
		return from, to, exitcode.Usagef(hint, "--to needs --from")
	}
	if from, err = month("--from", o.from); err != nil {
		return from, to, err
	}
	to = from
	if o.to != "" {
		if to, err = month("--to", o.to); err != nil {
			return from, to, err
		}
	}
	if from.After(to) {
		return from, to, exitcode.Usagef("--from must be on or before --to", "--from %s is after --to %s", o.from, o.to)
	}
	return from, to, nil
}

// duesReportHints map dues-report's fields to its flags.
var duesReportHints = withDelivery(fieldHints{
	"From": "--from must be on or before --to",
	"":     "ip2a-ops dues-report --help",
})

func runDuesReport(ctx context.Context, d *deps, o duesReportOptions) error {
	a := jobs.DuesReportArgs{ReportDelivery: o.delivery.delivery(o.out, o.format)}
	if o.lastMonth {
		if o.period != "" || o.from != "" || o.to != "" {
			return exitcode.Usagef("ip2a-ops dues-report --last-month", "give one of --period, --from/--to, --last-month")
		}
		a.LastMonth = true
	} else {
		var err error
		if a.From, a.To, err = duesMonths(o); err != nil {
			return err
		}
	}
	return runJob(ctx, d, jobs.DuesReport, a, printDuesReport, duesReportHints)
}

func printDuesReport(w io.Writer, r reports.DuesResult) {
	for _, f := range r.Files {
		fmt.Fprintf(w, "%s  %d bytes\n", f.Path, f.Bytes)
	}
	fmt.Fprintf(w, "%s to %s: %d periods, %d payments: billed %s, paid %s, outstanding %s, waived %s, written off %s\n",
		r.From, r.To, r.Periods, r.Payments, dollars(r.BilledCents), dollars(r.PaidCents), dollars(r.OutstandingCents),
		dollars(r.WaivedCents), dollars(r.WrittenOffCents))
	fmt.Fprintf(w, "overdue as of %s: %d members, %s; adjustments: %d pending (%s), %d approved (%s)\n", r.AsOf,
		r.OverdueMembers, dollars(r.OverdueCents), r.PendingAdjustments, dollars(r.PendingAdjustmentsCents),
		r.ApprovedAdjustments, dollars(r.ApprovedAdjustmentsCents))
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	printDeliveries(w, r.Deliveries)
}
