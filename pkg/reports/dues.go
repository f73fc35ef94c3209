package reports

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ip2a/ip2a-ops/pkg/exitcode"
)

// ErrNoPeriods marks a dues report whose months hold no dues period.
var ErrNoPeriods = errors.New("no dues period in the months asked for")

// DuesOptions configure DuesReport. Output.Now is also the day overdue
// ages are counted to (UTC).
type DuesOptions struct {
	Output
	// From and To select the dues periods by month: every period whose
	// year and month fall from From's month to To's month (required; the
	// days are ignored).
	From, To time.Time
}

// Validate reports the first bad field by name.
func (o DuesOptions) Validate() error {
	if err := o.Output.validate(); err != nil {
		return err
	}
	if o.From.IsZero() || o.To.IsZero() {
		return exitcode.Fieldf("From", "required, and To (the months of the dues periods)")
	}
	if monthOf(o.From).After(monthOf(o.To)) {
		return exitcode.Fieldf("From", "%s is after To (%s): %w", o.From.Format("2006-01"), o.To.Format("2006-01"), ErrBadPeriod)
	}
	return nil
}

func monthOf(t time.Time) time.Time { return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC) }

// DuesResult is what the run reports: the files and the headline figures
// (cents), as written in them.
type DuesResult struct {
	Files            []File    `json:"files"`
	From             string    `json:"from"`
	To               string    `json:"to"`
	AsOf             string    `json:"as_of"`
	SnapshotAt       time.Time `json:"snapshot_at"`
	Periods          int       `json:"periods"`
	Payments         int64     `json:"payments"`
	BilledCents      int64     `json:"billed_cents"`
	PaidCents        int64     `json:"paid_cents"`
	OutstandingCents int64     `json:"outstanding_cents"`
	WaivedCents      int64     `json:"waived_cents"`
	WrittenOffCents  int64     `json:"written_off_cents"`
	// OtherDifferenceCents is billed - paid - outstanding - waived -
	// written off: what PAID rows were paid short (positive) or over.
	OtherDifferenceCents     int64    `json:"other_difference_cents"`
	OverdueMembers           int64    `json:"overdue_members"`
	OverdueCents             int64    `json:"overdue_cents"`
	PendingAdjustments       int64    `json:"pending_adjustments"`
	PendingAdjustmentsCents  int64    `json:"pending_adjustments_cents"`
	ApprovedAdjustments      int64    `json:"approved_adjustments"`
	ApprovedAdjustmentsCents int64    `json:"approved_adjustments_cents"`
	Notes                    []string `json:"notes,omitempty"`
	// Deliveries are where the files went besides being written.
	Deliveries []Delivery `json:"deliveries,omitempty"`
}

// DuesReport writes the dues report of the periods from From's month to
// To's month, from one snapshot: billed, paid, outstanding, waived and
// written off per period, by classification and by payment method; the
// members overdue past the grace period with amounts and age buckets; the
// adjustments pending and approved. A month range without periods wraps
// ErrNoPeriods.
func DuesReport(ctx context.Context, opts DuesOptions) (DuesResult, error) {
	var res DuesResult
	if err := opts.Validate(); err != nil {
		return res, fmt.Errorf("dues report: %w", err)
	}
	o := opts
	o.Output = o.Output.withDefaults()
	o.From, o.To = monthOf(o.From), monthOf(o.To)
	var d *dues
	files, err := produce(ctx, o.Output, func(tx pgx.Tx) (document, error) {
		var err error
		d, err = loadDues(ctx, tx, o)
		return &duesDoc{tx: tx, d: d}, err
	})
	if err != nil {
		return res, fmt.Errorf("dues report: %w", err)
	}
	res = d.result()
	res.Files = files
	res.Deliveries = storageDelivery(o.Store, files)
	return res, nil
}

// duesDoc is the dues report in the snapshot it was read from.
type duesDoc struct {
	tx pgx.Tx
	d  *dues
}

// fileName is dues_report_YYYY-MM for one month, else
// dues_report_YYYY-MM_YYYY-MM.
func (d *duesDoc) fileName() string {
	from, to := d.d.o.From.Format("2006-01"), d.d.o.To.Format("2006-01")
	if from == to {
		return "dues_report_" + from
	}
	return "dues_report_" + from + "_" + to
}

func (d *duesDoc) write(ctx context.Context, ext string, w io.Writer) error {
	if ext == "pdf" {
		return d.d.writePDF(w)
	}
	return d.d.workbook(ctx, d.tx, w)
}
