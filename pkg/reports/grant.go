// Package reports builds the reports people read from the IP2A database:
// the grant report for a grant officer or funder, the membership report and
// the dues report for the local's officers. Each is read from one
// consistent snapshot of the database and written as an Excel workbook
// (pkg/reports/xlsx) and/or a PDF, with money exact to the cent, figures
// as real numbers with formats, and memory bounded however many rows the
// database has.
package reports

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ip2a/ip2a-ops/pkg/exitcode"
	"github.com/ip2a/ip2a-ops/pkg/storage"
)

// Defaults for GrantOptions' text fields.
const (
	DefaultGrantee = "IBEW Local 46"
	DefaultProgram = "Inside to Pre-Apprenticeship (IP2A)"
)

// ErrUnknownGrant is wrapped by *UnknownGrantError.
var ErrUnknownGrant = errors.New("unknown grant")

// ErrBadPeriod marks a reporting period that ends before it starts (also
// when only To is given and it falls before the grant's start).
var ErrBadPeriod = errors.New("bad reporting period")

// ErrBadStatus marks a Statuses value that is not a grant_status label.
var ErrBadStatus = errors.New("unknown grant status")

// ErrNoStatus marks Statuses asked of a database whose grants have no
// status column (the older schema).
var ErrNoStatus = errors.New("this database's grants have no status column (older schema)")

// ErrNothingToReport marks an AllActive run that found no grant to report
// on. A scheduled report that writes nothing must be seen, so it fails.
var ErrNothingToReport = errors.New("no grant to report on")

// UnknownGrantError says no grant matched and which grant numbers come
// closest (at most three, nearest first; empty when there are no grants).
type UnknownGrantError struct {
	Query   string
	Closest []string
}

func (e *UnknownGrantError) Error() string {
	if len(e.Closest) == 0 {
		return fmt.Sprintf("no grant with id or number %q (the database has no grants)", e.Query)
	}
	return fmt.Sprintf("no grant with id or number %q; closest grant numbers: %s", e.Query, strings.Join(e.Closest, ", "))
}

func (e *UnknownGrantError) Unwrap() error { return ErrUnknownGrant }

// GrantOptions configure GrantReport.
type GrantOptions struct {
	// Pool is the app database (required).
	Pool *pgxpool.Pool
	// Grant is a grant's id or grant_number (an all-digit value is tried
	// as an id first). Exactly one of Grant and AllActive.
	Grant string
	// AllActive writes one workbook per grant the app calls active:
	// is_active and not is_deleted.
	AllActive bool
	// Statuses narrows AllActive to grants whose status is one of these
	// grant_status labels (newer schema only). Empty means any status.
	Statuses []string
	// From and To bound the reporting period, inclusive calendar dates
	// (their time of day is ignored). Zero From is the grant's start date,
	// zero To is Now's date (UTC).
	From, To time.Time
	// Out is the report's file name (ending in .xlsx or .pdf; not with
	// AllActive; each format gets its own extension) or an existing
	// directory that receives grant_report_<number>_<period>.xlsx (and
	// .pdf). Empty means the current directory.
	Out string
	// Format is which files to write (default FormatXLSX).
	Format Format
	// Store, when set, receives the files instead of Out (keyed by file
	// name), written first to a temporary directory under TmpDir.
	Store storage.Store
	// Now is the clock for "generated at" and the default To; zero means
	// time.Now(). Tests freeze it.
	Now time.Time
	// ToolVersion goes into the document properties.
	ToolVersion string
	// Grantee and Program head the Summary (defaults DefaultGrantee and
	// DefaultProgram).
	Grantee, Program string
	// Schema holds the app's tables (default "public").
	Schema string
	// TmpDir is where the spreadsheet writer spills rows past its memory
	// buffer (default os.TempDir()).
	TmpDir string
}

// Validate reports the first bad field by name.
func (o GrantOptions) Validate() error {
	if o.Pool == nil {
		return exitcode.Fieldf("Pool", "required")
	}
	if (o.Grant == "") == !o.AllActive {
		return exitcode.Fieldf("Grant", "give a grant id or number, or AllActive (not both)")
	}
	if !o.From.IsZero() && !o.To.IsZero() && dateOf(o.From).After(dateOf(o.To)) {
		return exitcode.Fieldf("From", "%s is after To (%s): %w", o.From.Format(time.DateOnly), o.To.Format(time.DateOnly), ErrBadPeriod)
	}
	if len(o.Statuses) > 0 && !o.AllActive {
		return exitcode.Fieldf("Statuses", "only with AllActive")
	}
	if o.AllActive && isFileName(o.Out) && o.Store == nil {
		return exitcode.Fieldf("Out", "%q is a file name, but AllActive writes several reports; give a directory", o.Out)
	}
	if err := o.Format.Validate(); err != nil {
		return exitcode.Fieldf("Format", "%w", err)
	}
	return nil
}

// GrantResult lists the workbooks written, in grant-number order, and with
// AllActive the grants left out and why.
type GrantResult struct {
	Reports []GrantReportFile `json:"reports"`
	LeftOut []LeftOutGrant    `json:"left_out,omitempty"`
	// Deliveries are where the files went besides being written.
	Deliveries []Delivery `json:"deliveries,omitempty"`
}

// GrantReportFile describes one workbook. Money is in cents.
type GrantReportFile struct {
	GrantID     int32     `json:"grant_id"`
	GrantNumber string    `json:"grant_number"`
	GrantName   string    `json:"grant_name"`
	Path        string    `json:"path"`
	From        string    `json:"from"`
	To          string    `json:"to"`
	SnapshotAt  time.Time `json:"snapshot_at"`
	Enrollments int64     `json:"enrollments"`
	Expenses    int64     `json:"expenses"`
	BudgetCents int64     `json:"budget_cents"`
	SpentCents  int64     `json:"spent_cents"`
	Bytes       int64     `json:"bytes"`
	// Files are every file written, in format order; Path and Bytes
	// describe the first.
	Files []File `json:"files"`
	// Notes are the caveats also written on the Notes sheet that a reader
	// of the run should see (older schema, truncated cells, policy).
	Notes []string `json:"notes,omitempty"`
}

func (o GrantOptions) withDefaults() GrantOptions {
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if o.Grantee == "" {
		o.Grantee = DefaultGrantee
	}
	if o.Program == "" {
		o.Program = DefaultProgram
	}
	if o.Schema == "" {
		o.Schema = "public"
	}
	if o.Out == "" {
		o.Out = "."
	}
	if o.ToolVersion == "" {
		o.ToolVersion = "dev"
	}
	return o
}

// GrantReport writes the workbook of one grant (Options.Grant) or of every
// active grant. Each workbook reads one REPEATABLE READ READ ONLY snapshot
// and is written to a temporary file in the target directory, synced and
// renamed, so a failure leaves no partial workbook. An unknown grant is an
// *UnknownGrantError; a period ending before it starts wraps ErrBadPeriod.
// With AllActive, grants not selected are listed in LeftOut; when none is
// selected the error wraps ErrNothingToReport (and LeftOut says why).
func GrantReport(ctx context.Context, opts GrantOptions) (GrantResult, error) {
	var res GrantResult
	if err := opts.Validate(); err != nil {
		return res, fmt.Errorf("grant report: %w", err)
	}
	o := opts.withDefaults()
	if o.Store == nil {
		if err := checkOutDir(o.Out); err != nil {
			return res, fmt.Errorf("grant report: %w", err)
		}
	}
	var ids []int32
	if o.AllActive {
		var err error
		if ids, res.LeftOut, err = selectGrants(ctx, o.Pool, o.Schema, o.Statuses); err != nil {
			return res, fmt.Errorf("grant report: %w", err)
		}
		if len(ids) == 0 {
			return res, fmt.Errorf("grant report: %w: %s", ErrNothingToReport, describeLeftOut(res.LeftOut))
		}
	} else {
		id, err := resolveGrant(ctx, o.Pool, o.Schema, o.Grant)
		if err != nil {
			return res, fmt.Errorf("grant report: %w", err)
		}
		ids = []int32{id}
	}
	for _, id := range ids {
		rep, err := writeGrant(ctx, o, id)
		if err != nil {
			return res, fmt.Errorf("grant report %d: %w", id, err)
		}
		res.Reports = append(res.Reports, rep)
	}
	if o.Store != nil {
		var all []File
		for _, r := range res.Reports {
			all = append(all, r.Files...)
		}
		res.Deliveries = storageDelivery(o.Store, all)
	}
	return res, nil
}

// describeLeftOut summarises why no grant was selected, for the error.
func describeLeftOut(left []LeftOutGrant) string {
	if len(left) == 0 {
		return "the database has no grants"
	}
	why := map[string]int{}
	var order []string
	for _, g := range left {
		if why[g.Reason] == 0 {
			order = append(order, g.Reason)
		}
		why[g.Reason]++
	}
	parts := make([]string, len(order))
	for i, r := range order {
		parts[i] = fmt.Sprintf("%d %s", why[r], r)
	}
	return fmt.Sprintf("all %d grants left out: %s", len(left), strings.Join(parts, "; "))
}

// writeGrant reads one grant's snapshot and writes its files.
func writeGrant(ctx context.Context, o GrantOptions, id int32) (GrantReportFile, error) {
	var rep GrantReportFile
	err := inSnapshot(ctx, o.Pool, o.Schema, func(tx pgx.Tx) error {
		s, err := loadSnapshot(ctx, tx, o, id)
		if err != nil {
			return err
		}
		files, err := writeDocument(ctx, destination{Out: o.Out, Store: o.Store, TmpDir: o.TmpDir}, o.Format, &grantDoc{tx: tx, s: s})
		if err != nil {
			return err
		}
		rep = GrantReportFile{GrantID: s.grant.id, GrantNumber: s.grant.number, GrantName: s.grant.name, Path: files[0].Path,
			From: s.from.Format(time.DateOnly), To: s.to.Format(time.DateOnly), SnapshotAt: s.snapshotAt,
			Enrollments: s.enr.total, Expenses: s.exp.count.toDate, BudgetCents: s.grant.budget, SpentCents: s.exp.spent.toDate,
			Bytes: files[0].Bytes, Files: files, Notes: s.runNotes()}
		return nil
	})
	return rep, err
}

// grantDoc is one grant's report, in the snapshot it was read from.
type grantDoc struct {
	tx pgx.Tx
	s  *snapshot
}

func (d *grantDoc) fileName() string {
	return strings.TrimSuffix(FileName(d.s.grant.number, d.s.grant.id, d.s.from, d.s.to), ".xlsx")
}

func (d *grantDoc) write(ctx context.Context, ext string, w io.Writer) error {
	if ext == "pdf" {
		return d.writePDF(ctx, w)
	}
	return buildWorkbook(ctx, d.tx, d.s, w)
}

// FileName is the workbook name for a grant and period:
// grant_report_<number, or id when empty>_<period>.xlsx, where period is
// YYYY-MM for one whole calendar month and FROM_TO (YYYY-MM-DD) otherwise.
// Characters other than letters, digits, '-' and '.' become '_'.
func FileName(number string, id int32, from, to time.Time) string {
	key := safeName(number)
	if key == "" {
		key = fmt.Sprint(id)
	}
	return "grant_report_" + key + "_" + periodLabel(from, to) + ".xlsx"
}

func periodLabel(from, to time.Time) string {
	if from.Day() == 1 && from.Year() == to.Year() && from.Month() == to.Month() && to.AddDate(0, 0, 1).Day() == 1 {
		return from.Format("2006-01")
	}
	return from.Format(time.DateOnly) + "_" + to.Format(time.DateOnly)
}

func safeName(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case unicode.IsLetter(r), unicode.IsDigit(r), r == '-', r == '.':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	return strings.Trim(b.String(), ".")
}

func dateOf(t time.Time) time.Time {
	y, m, d := t.Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}
