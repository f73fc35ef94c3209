// Package reports builds the reports a grant officer or funder reads: an
// Excel workbook per grant, read from one consistent snapshot of the IP2A
// database, with money exact to the cent, figures as real numbers with
// formats, and memory bounded however many rows the grant has.
package reports

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
	"unicode"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ip2a/ip2a-ops/pkg/exitcode"
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
	// Out is the workbook's file name (ending in .xlsx; not with AllActive)
	// or an existing directory that receives grant_report_<number>_<period>.xlsx.
	// Empty means the current directory.
	Out string
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
	if o.AllActive && isXLSXName(o.Out) {
		return exitcode.Fieldf("Out", "%q is a file name, but AllActive writes several workbooks; give a directory", o.Out)
	}
	return nil
}

// GrantResult lists the workbooks written, in grant-number order, and with
// AllActive the grants left out and why.
type GrantResult struct {
	Reports []GrantReportFile `json:"reports"`
	LeftOut []LeftOutGrant    `json:"left_out,omitempty"`
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
	if err := checkOutDir(o.Out); err != nil {
		return res, fmt.Errorf("grant report: %w", err)
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

// writeGrant reads one grant's snapshot and writes its workbook.
func writeGrant(ctx context.Context, o GrantOptions, id int32) (GrantReportFile, error) {
	var rep GrantReportFile
	tx, err := o.Pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return rep, fmt.Errorf("begin snapshot: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, "SET LOCAL search_path TO "+pgx.Identifier{o.Schema}.Sanitize()); err != nil {
		return rep, fmt.Errorf("set search_path: %w", err)
	}
	s, err := loadSnapshot(ctx, tx, o, id)
	if err != nil {
		return rep, err
	}
	path := o.Out
	if !isXLSXName(path) {
		path = filepath.Join(path, FileName(s.grant.number, s.grant.id, s.from, s.to))
	}
	n, err := writeFileAtomic(path, func(f *os.File) error { return buildWorkbook(ctx, tx, s, f) })
	if err != nil {
		return rep, err
	}
	return GrantReportFile{GrantID: s.grant.id, GrantNumber: s.grant.number, GrantName: s.grant.name, Path: path,
		From: s.from.Format(time.DateOnly), To: s.to.Format(time.DateOnly), SnapshotAt: s.snapshotAt,
		Enrollments: s.enr.total, Expenses: s.exp.count.toDate, BudgetCents: s.grant.budget, SpentCents: s.exp.spent.toDate,
		Bytes: n, Notes: s.runNotes()}, nil
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

func isXLSXName(p string) bool { return strings.EqualFold(filepath.Ext(p), ".xlsx") }

func dateOf(t time.Time) time.Time {
	y, m, d := t.Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// checkOutDir fails early when the output directory does not exist, so no
// snapshot is read for a workbook that cannot be written.
func checkOutDir(out string) error {
	dir := out
	if isXLSXName(out) {
		dir = filepath.Dir(out)
	}
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("output directory: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("output directory %s: %w", dir, syscall.ENOTDIR)
	}
	return nil
}

// writeFileAtomic writes path through a temporary file in the same
// directory: write, fsync, close, rename, then fsync the directory. On any
// error the temporary file is removed and path is untouched.
func writeFileAtomic(path string, write func(*os.File) error) (int64, error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".grant_report_*.xlsx.tmp")
	if err != nil {
		return 0, fmt.Errorf("create output: %w", err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if err := write(f); err != nil {
		return 0, err
	}
	if err := f.Sync(); err != nil {
		return 0, fmt.Errorf("write output: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("write output: %w", err)
	}
	if err := f.Close(); err != nil {
		return 0, fmt.Errorf("write output: %w", err)
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		return 0, fmt.Errorf("write output: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return 0, fmt.Errorf("write output: %w", err)
	}
	ok = true
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return st.Size(), nil
}
