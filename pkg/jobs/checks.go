package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/ip2a/ip2a-ops/pkg/cleanup"
	"github.com/ip2a/ip2a-ops/pkg/exitcode"
	"github.com/ip2a/ip2a-ops/pkg/integrity"
	"github.com/ip2a/ip2a-ops/pkg/ledger"
	"github.com/ip2a/ip2a-ops/pkg/reports"
	"github.com/ip2a/ip2a-ops/pkg/storage"
)

// IntegrityArgs are the arguments of integrity-check (version 1).
type IntegrityArgs struct {
	Versioned
	Only              []string      `json:"only,omitempty"`
	Skip              []string      `json:"skip,omitempty"`
	FailOn            string        `json:"fail_on,omitempty"`
	Sample            int           `json:"sample,omitempty"`
	Workers           int           `json:"workers,omitempty"`
	StatementTimeout  time.Duration `json:"statement_timeout,omitempty"`
	UserChecks        string        `json:"user_checks,omitempty"`
	FilesDir          string        `json:"files_dir,omitempty"`
	FilesURL          string        `json:"files_url,omitempty"`
	FileConcurrency   int           `json:"file_concurrency,omitempty"`
	CompareLast       bool          `json:"compare_last,omitempty"`
	Repair            bool          `json:"repair,omitempty"`
	Apply             bool          `json:"apply,omitempty"`
	AsOf              time.Time     `json:"as_of"`
	AuditOnlineMonths int           `json:"audit_online_months,omitempty"`
}

// IntegrityCheck runs the check catalogue (and safe repairs), compares
// with the last run when asked, and finds problems (exit 3) at or above
// FailOn (critical by default).
var IntegrityCheck = &Def[IntegrityArgs, integrity.Result]{
	Name: "integrity-check", Version: 1,
	Privileges: []Privilege{{"member_employments", "SELECT"}},
	Prepare: func(ctx context.Context, env Env, a IntegrityArgs) (Body[integrity.Result], error) {
		failOn := integrity.Critical
		if a.FailOn != "" {
			var err error
			if failOn, err = integrity.ParseSeverity(a.FailOn); err != nil {
				return nil, exitcode.FieldUsage("FailOn", err)
			}
		}
		if a.FilesDir != "" && a.FilesURL != "" {
			return nil, exitcode.Fieldf("FilesDir", "FilesDir and FilesURL both set")
		}
		cat, err := integrity.Catalogue(a.UserChecks)
		if err != nil {
			return nil, exitcode.FieldUsage("UserChecks", err)
		}
		sel, err := integrity.Select(cat, a.Only, a.Skip)
		if err != nil {
			return nil, exitcode.FieldUsage("Only", err)
		}
		var files storage.Store
		switch {
		case a.FilesDir != "":
			abs, err := filepath.Abs(a.FilesDir)
			if err == nil {
				files, err = env.Storage(ctx, abs)
			}
			if err != nil {
				return nil, exitcode.FieldUsage("FilesDir", err)
			}
		case a.FilesURL != "":
			if files, err = env.Storage(ctx, a.FilesURL); err != nil {
				return nil, exitcode.FieldUsage("FilesURL", err)
			}
		}
		pool, err := env.DB(ctx)
		if err != nil {
			return nil, err
		}
		opts := integrity.Options{Pool: pool, Now: a.AsOf, Only: a.Only, Skip: a.Skip, UserChecksDir: a.UserChecks,
			Workers: a.Workers, StatementTimeout: a.StatementTimeout, SampleSize: a.Sample, Files: files,
			FileConcurrency: a.FileConcurrency, AuditOnlineMonths: a.AuditOnlineMonths, Repair: a.Repair, Apply: a.Apply}
		if err := opts.Validate(); err != nil {
			return nil, usage(err)
		}
		return func(ctx context.Context, env Env) (integrity.Result, error) {
			opts.Tracker = env.Tracker
			done := 0
			opts.Progress = func(r integrity.CheckResult) {
				done++
				env.summary(map[string]any{"checks_done": done, "checks": len(sel)})
				env.Logger.Debug("check done", "check", r.ID, "status", r.Status, "count", r.Count, "seconds", r.Seconds)
			}
			res, err := integrity.Run(ctx, opts)
			if err != nil {
				return res, err
			}
			if a.CompareLast {
				if res.Comparison, err = compareLast(ctx, env, res); err != nil {
					return res, err
				}
			}
			if errs := res.Errors(); len(errs) > 0 {
				return res, errors.New("could not run: " + strings.Join(errs, "; "))
			}
			if failing := res.Failing(failOn); len(failing) > 0 {
				ids := make([]string, len(failing))
				for i, f := range failing {
					ids[i] = f.ID
				}
				return res, fmt.Errorf("%d checks with findings at or above %s (%s): %w", len(failing), failOn, strings.Join(ids, ", "), exitcode.ErrProblems)
			}
			return res, nil
		}, nil
	},
}

// compareLast compares res with the last successful integrity-check in
// the ledger (an empty comparison when there is none).
func compareLast(ctx context.Context, env Env, res integrity.Result) (*integrity.Comparison, error) {
	l, err := env.Ledger(ctx)
	if err != nil {
		return nil, err
	}
	prev, err := l.History(ctx, ledger.HistoryFilter{Job: "integrity-check", State: ledger.Succeeded, Limit: 1})
	if err != nil {
		return nil, err
	}
	if len(prev) == 0 || len(prev[0].Summary) == 0 {
		return &integrity.Comparison{New: []integrity.CheckDelta{}, Resolved: []integrity.CheckDelta{}, Changed: []integrity.CheckDelta{}}, nil
	}
	var p integrity.Result
	if err := json.Unmarshal(prev[0].Summary, &p); err != nil {
		return nil, fmt.Errorf("read run %d's summary: %w", prev[0].ID, err)
	}
	return integrity.Compare(prev[0].ID, p, res), nil
}

// GrantReportArgs are the arguments of grant-report (version 1).
type GrantReportArgs struct {
	Versioned
	Grant     string `json:"grant,omitempty"`
	AllActive bool   `json:"all_active,omitempty"`
	// Statuses narrows AllActive to these grant_status labels.
	Statuses []string `json:"statuses,omitempty"`
	// From and To are inclusive dates (zero: the library's defaults).
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	// LastMonth reports on the previous calendar month (UTC) of the run's
	// clock, for a monthly schedule; not with From or To.
	LastMonth bool `json:"last_month,omitempty"`
	ReportDelivery
}

// LastMonth is the previous calendar month of now (UTC), as inclusive dates.
func LastMonth(now time.Time) (from, to time.Time) {
	first := time.Date(now.UTC().Year(), now.UTC().Month(), 1, 0, 0, 0, 0, time.UTC)
	return first.AddDate(0, -1, 0), first.AddDate(0, 0, -1)
}

// GrantReport writes grant workbooks.
var GrantReport = &Def[GrantReportArgs, reports.GrantResult]{
	Name: "grant-report", Version: 1,
	Files: func(r reports.GrantResult) []File {
		var out []File
		for _, f := range r.Reports {
			out = append(out, absFile(f.Path))
		}
		return out
	},
	Prepare: func(ctx context.Context, env Env, a GrantReportArgs) (Body[reports.GrantResult], error) {
		from, to := a.From, a.To
		if a.LastMonth {
			if !from.IsZero() || !to.IsZero() {
				return nil, exitcode.Fieldf("LastMonth", "cannot be combined with From or To")
			}
			from, to = LastMonth(env.Now())
		}
		out, err := a.prepare(ctx, env, "grant-report")
		if err != nil {
			return nil, err
		}
		opts := reports.GrantOptions{Pool: out.Pool, Grant: a.Grant, AllActive: a.AllActive, Statuses: a.Statuses, From: from, To: to,
			Out: out.Out, Store: out.Store, Format: out.Format, Now: env.Now(), ToolVersion: env.Version}
		if err := opts.Validate(); err != nil {
			return nil, usage(err)
		}
		return func(ctx context.Context, env Env) (reports.GrantResult, error) {
			res, err := reports.GrantReport(ctx, opts)
			if err != nil {
				return res, err
			}
			var files []reports.File
			var names []string
			for _, r := range res.Reports {
				files = append(files, r.Files...)
				names = append(names, r.GrantNumber+" ("+r.From+" to "+r.To+")")
			}
			d, err := a.email(ctx, out, files, "Grant report: "+strings.Join(names, ", "),
				"The grant reports of "+strings.Join(names, ", ")+".")
			if d != nil {
				res.Deliveries = append(res.Deliveries, *d)
			}
			return res, err
		}, nil
	},
}

// CleanupArgs are the arguments of cleanup (version 1).
type CleanupArgs struct {
	Versioned
	DryRun           bool          `json:"dry_run,omitempty"`
	ResetTokenMaxAge time.Duration `json:"reset_token_max_age,omitempty"`
	RefreshGrace     time.Duration `json:"refresh_grace,omitempty"`
}

// Cleanup deletes expired tokens and unlocks users whose lock passed.
var Cleanup = &Def[CleanupArgs, cleanup.Result]{
	Name: "cleanup", Version: 1,
	Privileges: []Privilege{{"email_tokens", "DELETE"}, {"refresh_tokens", "DELETE"}, {"users", "UPDATE"}, {"audit_logs", "INSERT"}},
	Prepare: func(ctx context.Context, env Env, a CleanupArgs) (Body[cleanup.Result], error) {
		pool, err := env.DB(ctx)
		if err != nil {
			return nil, err
		}
		opts := cleanup.Options{Pool: pool, DryRun: a.DryRun, ResetTokenMaxAge: a.ResetTokenMaxAge, RefreshGrace: a.RefreshGrace}
		if err := opts.Validate(); err != nil {
			return nil, usage(err)
		}
		return func(ctx context.Context, env Env) (cleanup.Result, error) { return cleanup.Run(ctx, opts) }, nil
	},
}

// SleepArgs are the arguments of sleep (version 1).
type SleepArgs struct {
	Versioned
	For time.Duration `json:"for"`
	// JobName is the name recorded in the ledger ("sleep").
	JobName string `json:"job_name,omitempty"`
}

// SleepResult is what a sleep did.
type SleepResult struct {
	Slept float64 `json:"slept_seconds"`
}

// Sleep only waits: it exercises the runner, ledger, locks, schedules
// and signals without touching data.
var Sleep = &Def[SleepArgs, SleepResult]{
	Name: "sleep", Version: 1,
	NameOf: func(a SleepArgs) string { return a.JobName },
	Prepare: func(ctx context.Context, env Env, a SleepArgs) (Body[SleepResult], error) {
		return func(ctx context.Context, env Env) (SleepResult, error) {
			start := time.Now()
			select {
			case <-time.After(a.For):
				return SleepResult{Slept: time.Since(start).Seconds()}, nil
			case <-ctx.Done():
				return SleepResult{Slept: time.Since(start).Seconds()}, ctx.Err()
			}
		}, nil
	},
}
