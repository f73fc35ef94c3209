// Package integrity checks the consistency of the IP2A data: a catalogue of
// set-based SQL checks (plus user checks from .sql files) read from one
// consistent snapshot, each under a statement timeout, several at once. A
// check whose tables, columns or enum labels the database lacks is skipped
// with the reason. It never writes, except for the opt-in repairs, which
// write an audit_logs entry for every row they change.
package integrity

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ip2a/ip2a-ops/pkg/progress"
	"github.com/ip2a/ip2a-ops/pkg/storage"
)

// ChangedBy is written to audit_logs.changed_by for every repaired row.
const ChangedBy = "ip2a-ops"

// Severity of a check's findings.
type Severity string

// Severities, most severe first.
const (
	Critical Severity = "critical"
	Warning  Severity = "warning"
	Info     Severity = "info"
)

// Severities lists every severity, most severe first.
var Severities = []Severity{Critical, Warning, Info}

// rank orders severities: higher is more severe; 0 for an unknown one.
func (s Severity) rank() int {
	switch s {
	case Critical:
		return 3
	case Warning:
		return 2
	case Info:
		return 1
	}
	return 0
}

// AtLeast reports whether s is as severe as min or more.
func (s Severity) AtLeast(min Severity) bool { return s.rank() >= min.rank() && s.rank() > 0 }

// ParseSeverity accepts critical, warning or info (any case).
func ParseSeverity(s string) (Severity, error) {
	v := Severity(strings.ToLower(strings.TrimSpace(s)))
	if v.rank() == 0 {
		return "", fmt.Errorf("severity %q: want critical, warning or info", s)
	}
	return v, nil
}

// CheckInfo describes a check of the catalogue.
type CheckInfo struct {
	ID          string   `json:"id"`
	Category    string   `json:"category"`
	Severity    Severity `json:"severity"`
	Description string   `json:"description"`
	// Repair describes the check's safe repair ("" when it has none).
	Repair string `json:"repair,omitempty"`
	// Source is "builtin" or the path of a user check's .sql file.
	Source string `json:"source"`
	// Files marks the checks that look at attachment files in a store.
	Files bool `json:"files,omitempty"`
}

// Check statuses in CheckResult.Status.
const (
	StatusOK       = "ok"
	StatusFindings = "findings"
	StatusSkipped  = "skipped"
	StatusError    = "error"
)

// CheckResult is the outcome of one check.
type CheckResult struct {
	CheckInfo
	// Status: ok, findings, skipped (Reason says why) or error (Reason holds it).
	Status string `json:"status"`
	// Count of offending records; SampleIDs the first of their ids, sorted.
	Count     int64    `json:"count"`
	SampleIDs []string `json:"sample_ids"`
	Reason    string   `json:"reason,omitempty"`
	Seconds   float64  `json:"seconds"`
}

// Totals count check results.
type Totals struct {
	Checks   int `json:"checks"`
	OK       int `json:"ok"`
	Findings int `json:"findings"`
	Skipped  int `json:"skipped"`
	Errors   int `json:"errors"`
	// BySeverity counts the checks with findings per severity.
	BySeverity map[Severity]int `json:"by_severity"`
}

// Result is what Run found (and repaired).
type Result struct {
	// AsOf is the instant time-relative checks were evaluated at (UTC).
	AsOf   time.Time     `json:"as_of"`
	Checks []CheckResult `json:"checks"`
	Totals Totals        `json:"totals"`
	// Repairs is set when Options.Repair was on: one per repairable check
	// with findings.
	Repairs []RepairResult `json:"repairs,omitempty"`
	// Comparison with the previous run, when the caller asked for it.
	Comparison *Comparison `json:"comparison,omitempty"`
	Seconds    float64     `json:"seconds"`
}

// Failing returns the checks with findings at or above min whose findings
// were not all repaired by an applied repair, in catalogue order.
func (r Result) Failing(min Severity) []CheckResult {
	repaired := map[string]bool{}
	for _, rp := range r.Repairs {
		if rp.Applied && rp.Error == "" && rp.Remaining == 0 {
			repaired[rp.ID] = true
		}
	}
	var out []CheckResult
	for _, c := range r.Checks {
		if c.Status == StatusFindings && c.Severity.AtLeast(min) && !repaired[c.ID] {
			out = append(out, c)
		}
	}
	return out
}

// Errors returns the checks that could not run, and the repairs that failed.
func (r Result) Errors() []string {
	var out []string
	for _, c := range r.Checks {
		if c.Status == StatusError {
			out = append(out, c.ID+": "+c.Reason)
		}
	}
	for _, rp := range r.Repairs {
		if rp.Error != "" {
			out = append(out, "repair "+rp.ID+": "+rp.Error)
		}
	}
	return out
}

func (r *Result) total() {
	t := Totals{Checks: len(r.Checks), BySeverity: map[Severity]int{}}
	for _, s := range Severities {
		t.BySeverity[s] = 0
	}
	for _, c := range r.Checks {
		switch c.Status {
		case StatusOK:
			t.OK++
		case StatusFindings:
			t.Findings++
			t.BySeverity[c.Severity]++
		case StatusSkipped:
			t.Skipped++
		case StatusError:
			t.Errors++
		}
	}
	r.Totals = t
}

// Options configure Run. Zero values mean defaults.
type Options struct {
	Pool *pgxpool.Pool
	// Schema holding the app's tables ("public").
	Schema string
	// Now is the instant time-relative checks are evaluated at (future
	// dates, grace periods, the audit window); zero means time.Now().
	Now time.Time
	// Only and Skip select checks by id or category; empty Only means all.
	Only, Skip []string
	// UserChecksDir holds user checks as .sql files ("" for none).
	UserChecksDir string
	// Workers is how many checks run at once (4), each on its own
	// connection sharing the snapshot; at most the pool's size minus one.
	Workers int
	// StatementTimeout bounds each check's query (60s).
	StatementTimeout time.Duration
	// SampleSize is how many record ids a finding keeps (20).
	SampleSize int
	// Files is where attachment files live (file_attachments.file_path is a
	// key in it); nil skips the file checks.
	Files storage.Store
	// FileConcurrency bounds concurrent Stat calls on Files (16).
	FileConcurrency int
	// AuditOnlineMonths is how many months of audit_logs belong online (36).
	AuditOnlineMonths int
	// Repair runs the safe repairs of checks with findings; without Apply
	// it is a dry run that only counts.
	Repair bool
	Apply  bool
	// Tracker, when set, counts the checks done of those to run, and while
	// the missing-files check stats files, the files checked of its total.
	Tracker *progress.Tracker
	// Progress, when set, is called after each check finishes (from
	// several goroutines, one call at a time).
	Progress func(CheckResult)
}

// Validate names the first bad field.
func (o *Options) Validate() error {
	switch {
	case o.Pool == nil:
		return errors.New("integrity: Options.Pool is nil")
	case o.Workers < 0:
		return fmt.Errorf("integrity: Options.Workers must not be negative, got %d", o.Workers)
	case o.StatementTimeout < 0:
		return fmt.Errorf("integrity: Options.StatementTimeout must not be negative, got %s", o.StatementTimeout)
	case o.SampleSize < 0:
		return fmt.Errorf("integrity: Options.SampleSize must not be negative, got %d", o.SampleSize)
	case o.FileConcurrency < 0:
		return fmt.Errorf("integrity: Options.FileConcurrency must not be negative, got %d", o.FileConcurrency)
	case o.AuditOnlineMonths < 0:
		return fmt.Errorf("integrity: Options.AuditOnlineMonths must not be negative, got %d", o.AuditOnlineMonths)
	case o.Apply && !o.Repair:
		return errors.New("integrity: Options.Apply needs Options.Repair")
	}
	return nil
}

func (o Options) withDefaults() Options {
	if o.Schema == "" {
		o.Schema = "public"
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	o.Now = o.Now.UTC().Truncate(time.Microsecond)
	if o.Workers == 0 {
		o.Workers = 4
	}
	if o.StatementTimeout == 0 {
		o.StatementTimeout = 60 * time.Second
	}
	if o.SampleSize == 0 {
		o.SampleSize = 20
	}
	if o.FileConcurrency == 0 {
		o.FileConcurrency = 16
	}
	if o.AuditOnlineMonths == 0 {
		o.AuditOnlineMonths = 36
	}
	return o
}

// UnknownSelectionError names --only/--skip entries that match no check id
// or category.
type UnknownSelectionError struct{ Names []string }

func (e *UnknownSelectionError) Error() string {
	return "integrity: no check or category named " + strings.Join(e.Names, ", ")
}

// Select returns the checks of list chosen by only and skip (ids or
// categories), in list order; an unknown name is an *UnknownSelectionError.
func Select(list []CheckInfo, only, skip []string) ([]CheckInfo, error) {
	known := map[string]bool{}
	for _, c := range list {
		known[c.ID], known[c.Category] = true, true
	}
	var unknown []string
	for _, n := range append(slices.Clone(only), skip...) {
		if !known[n] {
			unknown = append(unknown, n)
		}
	}
	if len(unknown) > 0 {
		return nil, &UnknownSelectionError{Names: unknown}
	}
	var out []CheckInfo
	for _, c := range list {
		match := func(names []string) bool { return slices.Contains(names, c.ID) || slices.Contains(names, c.Category) }
		if (len(only) == 0 || match(only)) && !match(skip) {
			out = append(out, c)
		}
	}
	return out, nil
}

// Catalogue returns the built-in checks followed by the user checks of
// userDir ("" for none), as --list shows them.
func Catalogue(userDir string) ([]CheckInfo, error) {
	checks, err := allChecks(userDir)
	if err != nil {
		return nil, err
	}
	out := make([]CheckInfo, len(checks))
	for i, c := range checks {
		out[i] = c.info()
	}
	return out, nil
}
