package reports

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ip2a/ip2a-ops/pkg/exitcode"
)

// MembershipOptions configure MembershipReport.
type MembershipOptions struct {
	Output
	// AsOf is the day the headcount and employment are counted on (zero:
	// To, else Now's date, UTC).
	AsOf time.Time
	// From and To bound the period whose changes are listed, inclusive
	// dates. Zero From is the first day of AsOf's month; zero To is AsOf.
	From, To time.Time
}

// Validate reports the first bad field by name.
func (o MembershipOptions) Validate() error {
	if err := o.Output.validate(); err != nil {
		return err
	}
	if !o.From.IsZero() && !o.To.IsZero() && dateOf(o.From).After(dateOf(o.To)) {
		return exitcode.Fieldf("From", "%s is after To (%s): %w", o.From.Format(time.DateOnly), o.To.Format(time.DateOnly), ErrBadPeriod)
	}
	return nil
}

// MembershipResult is what the run reports: the files and the headline
// figures, as written in them.
type MembershipResult struct {
	Files      []File       `json:"files"`
	AsOf       string       `json:"as_of"`
	From       string       `json:"from"`
	To         string       `json:"to"`
	SnapshotAt time.Time    `json:"snapshot_at"`
	Members    int64        `json:"members"`
	ByStatus   []labelCount `json:"by_status"`
	NewMembers int64        `json:"new_members"`
	Removed    int64        `json:"removed"`
	// StatusChanges are those audit_logs records; UnauditedChanges are
	// members whose record changed in the period with a status other than
	// ACTIVE and no audit row.
	StatusChanges     int64    `json:"status_changes"`
	UnauditedChanges  int64    `json:"unaudited_status_changes"`
	WithEmployment    int64    `json:"with_employment"`
	WithoutEmployment int64    `json:"without_employment"`
	Notes             []string `json:"notes,omitempty"`
	// Deliveries are where the files went besides being written.
	Deliveries []Delivery `json:"deliveries,omitempty"`
}

// MembershipReport writes the membership report from one snapshot:
// headcount by status and classification as of AsOf, the changes in the
// period (new members, removals, status changes from audit_logs and from
// the data), current employment by employer, age of membership, and the
// meaning of every figure on its Notes sheet.
func MembershipReport(ctx context.Context, opts MembershipOptions) (MembershipResult, error) {
	var res MembershipResult
	if err := opts.Validate(); err != nil {
		return res, fmt.Errorf("membership report: %w", err)
	}
	o := opts
	o.Output = o.Output.withDefaults()
	switch {
	case !o.AsOf.IsZero():
	case !o.To.IsZero():
		o.AsOf = o.To
	default:
		o.AsOf = o.Now.UTC()
	}
	o.AsOf = dateOf(o.AsOf)
	if o.To.IsZero() {
		o.To = o.AsOf
	}
	if o.From.IsZero() {
		o.From = time.Date(o.AsOf.Year(), o.AsOf.Month(), 1, 0, 0, 0, 0, time.UTC)
	}
	o.From, o.To = dateOf(o.From), dateOf(o.To)
	if o.From.After(o.To) {
		return res, exitcode.Fieldf("From", "membership report: period %s ends before it starts: %w", periodText(o.From, o.To), ErrBadPeriod)
	}
	var m *membership
	files, err := produce(ctx, o.Output, func(tx pgx.Tx) (document, error) {
		var err error
		m, err = loadMembership(ctx, tx, o)
		return &membershipDoc{tx: tx, m: m}, err
	})
	if err != nil {
		return res, fmt.Errorf("membership report: %w", err)
	}
	res = m.result()
	res.Files = files
	res.Deliveries = storageDelivery(o.Store, files)
	return res, nil
}

// membershipDoc is the membership report in the snapshot it was read from.
type membershipDoc struct {
	tx pgx.Tx
	m  *membership
}

func (d *membershipDoc) fileName() string {
	return "membership_report_" + d.m.o.AsOf.Format(time.DateOnly)
}

func (d *membershipDoc) write(ctx context.Context, ext string, w io.Writer) error {
	if ext == "pdf" {
		return d.m.writePDF(w)
	}
	return d.m.workbook(ctx, d.tx, w)
}
