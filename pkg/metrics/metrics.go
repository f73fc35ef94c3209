// Package metrics collects what an operator of the IP2A database wants on a
// dashboard: the app's admin figures (users, members, audit volume, dues
// collected, students enrolled; soft-deleted rows excluded), database health
// (size, largest tables, dead tuples, connections, oldest transaction) and
// job health from the run ledger, and renders them for Prometheus. It also
// decides which jobs are stale for `jobs status --check`. A figure whose
// table or column an older schema lacks is reported as skipped, never an
// error.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ip2a/ip2a-ops/pkg/dbschema"
)

// Options configure Collect. Zero values mean the defaults in brackets.
type Options struct {
	Pool *pgxpool.Pool
	// AppSchema holds the app's tables ["public"].
	AppSchema string
	// OpsSchema holds the run ledger ["ip2a_ops"]; when it does not exist the
	// job section is skipped.
	OpsSchema string
	// Now is the clock "today", "this week" and "30 days" are measured
	// from, in UTC [time.Now()].
	Now time.Time
	// LargestTables is how many tables the database section lists [10].
	LargestTables int
}

// Validate names the first bad field.
func (o Options) Validate() error {
	switch {
	case o.Pool == nil:
		return errors.New("Pool: required")
	case o.LargestTables < 0:
		return fmt.Errorf("LargestTables: %d is negative", o.LargestTables)
	}
	return nil
}

func (o Options) withDefaults() Options {
	if o.AppSchema == "" {
		o.AppSchema = "public"
	}
	if o.OpsSchema == "" {
		o.OpsSchema = "ip2a_ops"
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	o.Now = o.Now.UTC()
	if o.LargestTables == 0 {
		o.LargestTables = 10
	}
	return o
}

// Result is everything Collect measured. Its JSON is the `metrics --json`
// contract: fields are only added.
type Result struct {
	CollectedAt time.Time `json:"collected_at"`
	// Admin figures by name (see AdminMetrics); money in dollars.
	Admin map[string]float64 `json:"admin"`
	// Skipped names each admin figure that could not be computed, and why.
	Skipped  map[string]string `json:"skipped"`
	Database Database          `json:"database"`
	// Jobs is nil when the ops schema does not exist (JobsSkipped says so).
	Jobs        []JobHealth `json:"jobs"`
	JobsSkipped string      `json:"jobs_skipped,omitempty"`
	// PendingNotifications waiting in the outbox (-1 when unknown).
	PendingNotifications int64 `json:"pending_notifications"`
}

// AdminMetric describes one admin figure.
type AdminMetric struct {
	// Name in Result.Admin and --json; Prom is the Prometheus metric name
	// (gauges carry no _total suffix, money its unit).
	Name, Prom, Help string
}

// AdminMetrics lists the admin figures in output order.
var AdminMetrics = []AdminMetric{
	{"users_total", "ip2a_users", "User accounts, soft-deleted excluded."},
	{"users_active_today", "ip2a_users_active_today", "Users whose last_login is today (UTC)."},
	{"members_total", "ip2a_members", "Members, soft-deleted excluded."},
	{"members_active", "ip2a_members_active", "Members whose status is ACTIVE, soft-deleted excluded."},
	{"audit_rows_today", "ip2a_audit_rows_today", "audit_logs rows changed today (UTC)."},
	{"audit_rows_this_week", "ip2a_audit_rows_this_week", "audit_logs rows changed since Monday 00:00 UTC."},
	{"dues_collected_30d", "ip2a_dues_collected_30d_dollars", "Sum of amount_paid of PAID and PARTIAL dues payments with a payment_date in the last 30 days, in dollars."},
	{"students_enrolled", "ip2a_students_enrolled", "Students whose status is ENROLLED, soft-deleted excluded."},
}

// Collect measures everything. It fails only when the database cannot be
// read at all; a missing table or column skips that figure.
func Collect(ctx context.Context, opts Options) (Result, error) {
	if err := opts.Validate(); err != nil {
		return Result{}, fmt.Errorf("collect metrics: %w", err)
	}
	o := opts.withDefaults()
	info, err := dbschema.Inspect(ctx, o.Pool, o.AppSchema)
	if err != nil {
		return Result{}, fmt.Errorf("collect metrics: %w", err)
	}
	res := Result{CollectedAt: o.Now, Admin: map[string]float64{}, Skipped: map[string]string{}, PendingNotifications: -1}
	if err := collectAdmin(ctx, o, info, &res); err != nil {
		return Result{}, fmt.Errorf("collect metrics: admin: %w", err)
	}
	if res.Database, err = collectDatabase(ctx, o); err != nil {
		return Result{}, fmt.Errorf("collect metrics: database: %w", err)
	}
	if err := collectJobs(ctx, o, &res); err != nil {
		return Result{}, fmt.Errorf("collect metrics: jobs: %w", err)
	}
	return res, nil
}

// notDeleted is the soft-delete filter for table, or "true" when the table
// has no soft delete. Both columns are checked: the app sets them together
// but nothing enforces it and its own code filters either.
func notDeleted(info *dbschema.Info, table string) string {
	var parts []string
	if info.HasColumns(table, "is_deleted") {
		parts = append(parts, "NOT coalesce(is_deleted, false)")
	}
	if info.HasColumns(table, "deleted_at") {
		parts = append(parts, "deleted_at IS NULL")
	}
	if len(parts) == 0 {
		return "true"
	}
	return strings.Join(parts, " AND ")
}

func collectAdmin(ctx context.Context, o Options, info *dbschema.Info, res *Result) error {
	day := o.Now.Truncate(24 * time.Hour)
	week := day.AddDate(0, 0, -((int(day.Weekday()) + 6) % 7))
	ts := func(t time.Time) string { return t.Format("2006-01-02 15:04:05") }
	tbl := func(name string) string { return pgx.Identifier{o.AppSchema, name}.Sanitize() }

	type figure struct {
		name  string
		table string
		cols  []string
		// label: enum type and label the figure filters on ("" none).
		enumType, label string
		sql             func(label string) (string, []any)
	}
	figures := []figure{
		{name: "users_total", table: "users", sql: func(string) (string, []any) {
			return "SELECT count(*) FROM " + tbl("users") + " WHERE " + notDeleted(info, "users"), nil
		}},
		{name: "users_active_today", table: "users", cols: []string{"last_login"}, sql: func(string) (string, []any) {
			return "SELECT count(*) FROM " + tbl("users") + " WHERE last_login >= $1 AND " + notDeleted(info, "users"), []any{day}
		}},
		{name: "members_total", table: "members", sql: func(string) (string, []any) {
			return "SELECT count(*) FROM " + tbl("members") + " WHERE " + notDeleted(info, "members"), nil
		}},
		{name: "members_active", table: "members", cols: []string{"status"}, enumType: "memberstatus", label: "ACTIVE", sql: func(l string) (string, []any) {
			return "SELECT count(*) FROM " + tbl("members") + " WHERE status::text = $1 AND " + notDeleted(info, "members"), []any{l}
		}},
		{name: "audit_rows_today", table: "audit_logs", cols: []string{"changed_at"}, sql: func(string) (string, []any) {
			// changed_at is a naive timestamp in UTC: compare with naive UTC.
			return "SELECT count(*) FROM " + tbl("audit_logs") + " WHERE changed_at >= $1::timestamp", []any{ts(day)}
		}},
		{name: "audit_rows_this_week", table: "audit_logs", cols: []string{"changed_at"}, sql: func(string) (string, []any) {
			return "SELECT count(*) FROM " + tbl("audit_logs") + " WHERE changed_at >= $1::timestamp", []any{ts(week)}
		}},
		{name: "dues_collected_30d", table: "dues_payments", cols: []string{"amount_paid", "payment_date", "status"}, enumType: "duespaymentstatus", label: "PAID", sql: func(paid string) (string, []any) {
			partial, _ := info.Label("duespaymentstatus", "PARTIAL")
			return "SELECT coalesce(sum(amount_paid), 0)::float8 FROM " + tbl("dues_payments") + " WHERE status::text = ANY($1) AND payment_date >= $2::date AND payment_date <= $3::date AND " +
				notDeleted(info, "dues_payments"), []any{[]string{paid, partial}, day.AddDate(0, 0, -30).Format("2006-01-02"), day.Format("2006-01-02")}
		}},
		{name: "students_enrolled", table: "students", cols: []string{"status"}, enumType: "student_status_enum", label: "ENROLLED", sql: func(l string) (string, []any) {
			return "SELECT count(*) FROM " + tbl("students") + " WHERE status::text = $1 AND " + notDeleted(info, "students"), []any{l}
		}},
	}
	for _, f := range figures {
		if why := info.Missing(f.table, f.cols...); why != "" {
			res.Skipped[f.name] = why
			continue
		}
		label := ""
		if f.enumType != "" {
			l, ok := info.Label(f.enumType, f.label)
			if !ok {
				res.Skipped[f.name] = fmt.Sprintf("enum %s has no label %s", f.enumType, f.label)
				continue
			}
			label = l
		}
		q, args := f.sql(label)
		var v float64
		if err := o.Pool.QueryRow(ctx, "SELECT ("+q+")::float8", args...).Scan(&v); err != nil {
			return fmt.Errorf("%s: %w", f.name, err)
		}
		res.Admin[f.name] = v
	}
	return nil
}
