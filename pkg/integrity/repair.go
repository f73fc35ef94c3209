package integrity

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// repair is a check's safe repair: UPDATEs of the rows the check finds,
// re-evaluated on the current data (not the snapshot) when it runs.
type repair struct {
	description string
	targets     func(q *qctx) []repairTarget
}

// repairTarget updates table (alias t) where where holds, with set.
type repairTarget struct {
	table string
	where string
	set   []assignment
}

// assignment is column = expression; the expression sees the row's old values.
type assignment struct{ col, expr string }

// RepairResult is what a check's repair did (or, in a dry run, would do).
type RepairResult struct {
	ID          string `json:"id"`
	Description string `json:"description"`
	// Applied is false for a dry run.
	Applied bool `json:"applied"`
	// Rows changed (would change); AuditEntries written for them.
	Rows         int64    `json:"rows"`
	AuditEntries int64    `json:"audit_entries"`
	SampleIDs    []string `json:"sample_ids"`
	// Remaining: offending records the repair does not cover (the check's
	// count minus Rows, never negative), left for a person.
	Remaining int64  `json:"remaining"`
	Error     string `json:"error,omitempty"`
}

var auditCols = []string{"table_name", "record_id", "action", "old_values", "new_values", "changed_fields", "changed_by", "changed_at", "notes"}

// runRepairs repairs (or counts) every check of res with findings and a
// repair, each in its own transaction.
func runRepairs(ctx context.Context, o Options, s *schemaInfo, checks map[string]*check, res *Result) {
	q := &qctx{s: s, opts: o}
	for _, cr := range res.Checks {
		c := checks[cr.ID]
		if cr.Status != StatusFindings || c == nil || c.repair == nil {
			continue
		}
		rr := RepairResult{ID: c.id, Description: c.repair.description, Applied: o.Apply, SampleIDs: []string{}}
		var err error
		if o.Apply {
			if why := s.Missing("audit_logs", auditCols...); why != "" {
				err = fmt.Errorf("cannot write audit entries: %s", why)
			} else {
				err = applyRepair(ctx, o, q, c, &rr)
			}
		} else {
			err = countRepair(ctx, o, q, c, &rr)
		}
		if err != nil {
			rr.Error = err.Error()
			rr.Rows, rr.AuditEntries = 0, 0
		}
		rr.Remaining = max(0, cr.Count-rr.Rows)
		res.Repairs = append(res.Repairs, rr)
	}
}

func countRepair(ctx context.Context, o Options, q *qctx, c *check, rr *RepairResult) error {
	var parts []string
	for _, t := range c.repair.targets(q) {
		parts = append(parts, fmt.Sprintf(`SELECT %s AS id, t.id AS n FROM %s t WHERE %s`, idExpr(c, t.table), ident(t.table), t.where))
	}
	if len(parts) == 0 {
		return nil
	}
	sql := `WITH f AS MATERIALIZED (` + strings.Join(parts, " UNION ALL ") + `)
		SELECT (SELECT count(*) FROM f), ARRAY(SELECT id FROM f ORDER BY id LIMIT @sample)`
	return o.Pool.QueryRow(ctx, sql, args(o)).Scan(&rr.Rows, &rr.SampleIDs)
}

// applyRepair runs every target of c in one transaction: each statement
// locks the rows, updates them and writes one audit_logs entry per row, so
// a crash leaves neither a change without its entry nor the reverse.
func applyRepair(ctx context.Context, o Options, q *qctx, c *check, rr *RepairResult) error {
	return pgx.BeginFunc(ctx, o.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, fmt.Sprintf("SET LOCAL statement_timeout = %d", o.StatementTimeout.Milliseconds())); err != nil {
			return err
		}
		for _, t := range c.repair.targets(q) {
			var rows, audits int64
			var ids []string
			if err := tx.QueryRow(ctx, repairSQL(q.s, c, t), args(o)).Scan(&rows, &audits, &ids); err != nil {
				return fmt.Errorf("repair %s: %w", t.table, err)
			}
			if rows != audits {
				return fmt.Errorf("repair %s: %d rows changed but %d audit entries written", t.table, rows, audits)
			}
			rr.Rows += rows
			rr.AuditEntries += audits
			rr.SampleIDs = append(rr.SampleIDs, ids...)
		}
		if len(rr.SampleIDs) > o.SampleSize {
			rr.SampleIDs = rr.SampleIDs[:o.SampleSize]
		}
		return nil
	})
}

// idExpr is how c names a record of table in its findings ("table:id" for
// the checks that span tables).
func idExpr(c *check, table string) string {
	if c.category == catSoftDelete {
		return quoteLiteral(table) + ` || ':' || t.id`
	}
	return `t.id::text`
}

func repairSQL(s *schemaInfo, c *check, t repairTarget) string {
	var cols, sets, oldKV, newKV, fields []string
	for _, a := range t.set {
		cols = append(cols, "t."+ident(a.col))
		sets = append(sets, ident(a.col)+" = "+a.expr)
		oldKV = append(oldKV, quoteLiteral(a.col)+", old."+ident(a.col))
		newKV = append(newKV, quoteLiteral(a.col)+", upd."+ident(a.col))
		fields = append(fields, `"`+a.col+`"`)
	}
	ut := ""
	if !containsCol(t.set, "updated_at") {
		// The app's mixin moves updated_at on every change; so do we. Most
		// tables keep naive UTC times, member_notes timestamptz: a naive
		// time there would be read in the session's time zone.
		ut = `, updated_at = (now() AT TIME ZONE 'UTC')`
		if s.ColumnType(t.table, "updated_at") == "timestamp with time zone" {
			ut = `, updated_at = now()`
		}
	}
	tbl := ident(t.table)
	return `WITH old AS (
			SELECT t.id, ` + strings.Join(cols, ", ") + ` FROM ` + tbl + ` t WHERE ` + t.where + ` FOR UPDATE
		), upd AS (
			UPDATE ` + tbl + ` t SET ` + strings.Join(sets, ", ") + ut + ` FROM old WHERE t.id = old.id
			RETURNING t.id, ` + strings.Join(cols, ", ") + `
		), aud AS (
			INSERT INTO audit_logs (` + strings.Join(auditCols, ", ") + `)
			SELECT ` + quoteLiteral(t.table) + `, old.id::text, 'UPDATE', jsonb_build_object(` + strings.Join(oldKV, ", ") + `),
				jsonb_build_object(` + strings.Join(newKV, ", ") + `), '[` + strings.Join(fields, ", ") + `]'::jsonb, ` + quoteLiteral(ChangedBy) + `,
				now() AT TIME ZONE 'UTC', ` + quoteLiteral("integrity-check repair "+c.id+": "+c.repair.description) + `
			FROM old JOIN upd ON upd.id = old.id
			RETURNING record_id
		)
		SELECT (SELECT count(*) FROM upd), (SELECT count(*) FROM aud),
			ARRAY(SELECT ` + strings.Replace(idExpr(c, t.table), "t.id", "old.id", 1) + ` FROM old ORDER BY old.id LIMIT @sample)`
}

func containsCol(set []assignment, col string) bool {
	for _, a := range set {
		if a.col == col {
			return true
		}
	}
	return false
}

// args are the named parameters every query may use.
func args(o Options) pgx.NamedArgs {
	now := o.Now.UTC()
	return pgx.NamedArgs{
		"now":    now,
		"today":  time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC),
		"sample": o.SampleSize,
	}
}
