// Package cleanup is the daily housekeeping of the app's auth tables: expired
// email tokens, old password-reset tokens, expired or revoked refresh tokens,
// and users whose lock has passed. Each step is one transaction; every user
// row it changes gets an audit_logs entry, because users is audited.
package cleanup

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ip2a/ip2a-ops/pkg/dbschema"
)

// ChangedBy is written to audit_logs.changed_by for every change ip2a-ops makes.
const ChangedBy = "ip2a-ops"

// Options configure Run. Zero values mean defaults.
type Options struct {
	Pool *pgxpool.Pool
	// DryRun counts what would change and changes nothing.
	DryRun bool
	// ResetTokenMaxAge: password-reset tokens created longer ago are deleted (7 days).
	ResetTokenMaxAge time.Duration
	// RefreshGrace: refresh tokens expired or revoked longer ago are deleted (7 days).
	RefreshGrace time.Duration
	// Schema of the app's tables ("public").
	Schema string
}

// Validate names the first bad field.
func (o *Options) Validate() error {
	if o.Pool == nil {
		return errors.New("cleanup: Options.Pool is nil")
	}
	if o.ResetTokenMaxAge < 0 {
		return fmt.Errorf("cleanup: ResetTokenMaxAge must not be negative, got %s", o.ResetTokenMaxAge)
	}
	if o.RefreshGrace < 0 {
		return fmt.Errorf("cleanup: RefreshGrace must not be negative, got %s", o.RefreshGrace)
	}
	return nil
}

// Step is the outcome of one step.
type Step struct {
	Name string `json:"name"`
	// Rows deleted or updated (with DryRun: that would be).
	Rows int64 `json:"rows"`
	// AuditEntries written for changed rows of audited tables.
	AuditEntries int64 `json:"audit_entries"`
	// Skipped is the reason the step did not run (missing table or column).
	Skipped string `json:"skipped,omitempty"`
}

// Result is what Run did.
type Result struct {
	DryRun bool   `json:"dry_run"`
	Steps  []Step `json:"steps"`
}

// Total returns the rows all steps touched.
func (r Result) Total() int64 {
	var n int64
	for _, s := range r.Steps {
		n += s.Rows
	}
	return n
}

type step struct {
	name   string
	table  string
	cols   []string
	needs  func(in *dbschema.Info) string // extra requirement; "" = fine
	count  func(in *dbschema.Info) string
	apply  func(in *dbschema.Info) string
	params func(o Options) []any
}

// Run executes every step in order. A step whose table or columns are
// missing is reported as skipped; a failing step stops the run, and the
// steps done so far are in the result.
func Run(ctx context.Context, o Options) (Result, error) {
	if o.ResetTokenMaxAge == 0 {
		o.ResetTokenMaxAge = 7 * 24 * time.Hour
	}
	if o.RefreshGrace == 0 {
		o.RefreshGrace = 7 * 24 * time.Hour
	}
	if o.Schema == "" {
		o.Schema = "public"
	}
	res := Result{DryRun: o.DryRun, Steps: []Step{}}
	if err := o.Validate(); err != nil {
		return res, err
	}
	in, err := dbschema.Inspect(ctx, o.Pool, o.Schema)
	if err != nil {
		return res, err
	}
	for _, s := range steps(in) {
		st := Step{Name: s.name}
		if why := in.Missing(s.table, s.cols...); why != "" {
			st.Skipped = why
		} else if s.needs != nil {
			st.Skipped = s.needs(in)
		}
		if st.Skipped == "" {
			if err := runStep(ctx, o, in, s, &st); err != nil {
				res.Steps = append(res.Steps, st)
				return res, fmt.Errorf("cleanup step %s: %w", s.name, err)
			}
		}
		res.Steps = append(res.Steps, st)
	}
	return res, nil
}

func runStep(ctx context.Context, o Options, in *dbschema.Info, s step, st *Step) error {
	args := s.params(o)
	if o.DryRun {
		return o.Pool.QueryRow(ctx, s.count(in), args...).Scan(&st.Rows)
	}
	return pgx.BeginFunc(ctx, o.Pool, func(tx pgx.Tx) error {
		// Statement-level work only: one statement per step keeps each step
		// atomic and its locks short.
		if s.name == "unlock_users" {
			return tx.QueryRow(ctx, s.apply(in), args...).Scan(&st.Rows, &st.AuditEntries)
		}
		tag, err := tx.Exec(ctx, s.apply(in), args...)
		if err != nil {
			return err
		}
		st.Rows = tag.RowsAffected()
		return nil
	})
}

func steps(in *dbschema.Info) []step {
	resetLabel, _ := in.Label("token_type_enum", "PASSWORD_RESET")
	revokedAt := "updated_at"
	if in.HasColumns("refresh_tokens", "revoked_at") {
		revokedAt = "coalesce(revoked_at, updated_at AT TIME ZONE 'UTC')"
	}
	return []step{
		{
			name: "expired_email_tokens", table: "email_tokens", cols: []string{"expires_at"},
			count:  func(*dbschema.Info) string { return `SELECT count(*) FROM email_tokens WHERE expires_at < now()` },
			apply:  func(*dbschema.Info) string { return `DELETE FROM email_tokens WHERE expires_at < now()` },
			params: func(Options) []any { return nil },
		},
		{
			name: "old_password_reset_tokens", table: "email_tokens", cols: []string{"token_type", "created_at", "expires_at"},
			needs: func(in *dbschema.Info) string {
				if resetLabel == "" {
					return "enum token_type_enum has no PASSWORD_RESET label"
				}
				return ""
			},
			// created_at is naive UTC (the app's mixin), so compare in UTC.
			// Expired ones belong to the step before, so a dry run's counts
			// add up to what a real run changes.
			count: func(*dbschema.Info) string {
				return `SELECT count(*) FROM email_tokens WHERE token_type::text = $1 AND expires_at >= now() AND created_at < (now() AT TIME ZONE 'UTC') - $2::interval`
			},
			apply: func(*dbschema.Info) string {
				return `DELETE FROM email_tokens WHERE token_type::text = $1 AND expires_at >= now() AND created_at < (now() AT TIME ZONE 'UTC') - $2::interval`
			},
			params: func(o Options) []any { return []any{resetLabel, o.ResetTokenMaxAge.String()} },
		},
		{
			name: "expired_or_revoked_refresh_tokens", table: "refresh_tokens", cols: []string{"expires_at", "is_revoked", "updated_at"},
			count: func(*dbschema.Info) string {
				return `SELECT count(*) FROM refresh_tokens WHERE expires_at < now() - $1::interval OR (is_revoked AND ` + timestamptz(revokedAt) + ` < now() - $1::interval)`
			},
			apply: func(*dbschema.Info) string {
				return `DELETE FROM refresh_tokens WHERE expires_at < now() - $1::interval OR (is_revoked AND ` + timestamptz(revokedAt) + ` < now() - $1::interval)`
			},
			params: func(o Options) []any { return []any{o.RefreshGrace.String()} },
		},
		{
			name: "unlock_users", table: "users", cols: []string{"id", "locked_until", "failed_login_attempts", "updated_at"},
			needs: func(in *dbschema.Info) string {
				return in.Missing("audit_logs", "table_name", "record_id", "action", "old_values", "new_values", "changed_fields", "changed_by", "changed_at", "notes")
			},
			count: func(*dbschema.Info) string {
				return `SELECT count(*) FROM users WHERE locked_until IS NOT NULL AND locked_until < now()`
			},
			// One statement: lock the rows, update them and write their audit
			// entries, so a crash leaves neither without the other.
			apply: func(*dbschema.Info) string {
				return `WITH old AS (
					SELECT id, locked_until, failed_login_attempts FROM users
					WHERE locked_until IS NOT NULL AND locked_until < now() FOR UPDATE
				), upd AS (
					UPDATE users u SET locked_until = NULL, failed_login_attempts = 0, updated_at = now() AT TIME ZONE 'UTC'
					FROM old WHERE u.id = old.id RETURNING u.id
				), aud AS (
					INSERT INTO audit_logs (table_name, record_id, action, old_values, new_values, changed_fields, changed_by, changed_at, notes)
					SELECT 'users', old.id::text, 'UPDATE',
						jsonb_build_object('locked_until', old.locked_until, 'failed_login_attempts', old.failed_login_attempts),
						jsonb_build_object('locked_until', NULL, 'failed_login_attempts', 0),
						'["locked_until", "failed_login_attempts"]'::jsonb, '` + ChangedBy + `', now() AT TIME ZONE 'UTC',
						'cleanup: lock expired, user unlocked'
					FROM old JOIN upd ON upd.id = old.id
					RETURNING 1
				)
				SELECT (SELECT count(*) FROM upd), (SELECT count(*) FROM aud)`
			},
			params: func(Options) []any { return nil },
		},
	}
}

// timestamptz turns the app's naive UTC columns into timestamptz for
// comparison with now(); expressions already of that type pass through.
func timestamptz(expr string) string {
	if expr == "updated_at" {
		return "(updated_at AT TIME ZONE 'UTC')"
	}
	return expr
}
