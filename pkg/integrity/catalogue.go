package integrity

import (
	"fmt"
	"sort"
	"strings"
)

// Categories of the built-in checks.
const (
	catMembers       = "members"
	catOrganizations = "organizations"
	catAttachments   = "attachments"
	catSoftDelete    = "soft_delete"
	catDues          = "dues"
	catGrants        = "grants"
	catGrantEnroll   = "grant_enrollments"
	catStudents      = "students"
	catAuth          = "auth"
	catAudit         = "audit"
)

// MaxAttachmentBytes is the largest file_size the app accepts (100 MB).
const MaxAttachmentBytes = 100 * 1024 * 1024

// builtinChecks is the catalogue, in the order it runs and prints. Every
// query is one set-based statement returning the offending ids.
func builtinChecks() []*check {
	memberStatus := func(l string) label { return label{"memberstatus", l} }
	dues := func(l string) label { return label{"duespaymentstatus", l} }
	return []*check{
		// Members and employments (the original checker's core, corrected).
		{
			id: "employment_orphan_member", category: catMembers, severity: Critical,
			description: "member_employments rows whose member does not exist",
			needs:       []need{{"member_employments", []string{"id", "member_id"}}, {"members", []string{"id"}}},
			query: func(q *qctx) string {
				return `SELECT e.id FROM member_employments e WHERE NOT EXISTS (SELECT 1 FROM members m WHERE m.id = e.member_id)`
			},
		},
		{
			id: "employment_orphan_organization", category: catMembers, severity: Critical,
			description: "member_employments rows whose organization does not exist",
			needs:       []need{{"member_employments", []string{"id", "organization_id"}}, {"organizations", []string{"id"}}},
			query: func(q *qctx) string {
				return `SELECT e.id FROM member_employments e WHERE NOT EXISTS (SELECT 1 FROM organizations o WHERE o.id = e.organization_id)`
			},
		},
		{
			id: "member_required_blank", category: catMembers, severity: Warning,
			description: "members with a blank member_number, first_name or last_name",
			needs:       []need{{"members", []string{"id", "member_number", "first_name", "last_name"}}},
			query: func(q *qctx) string {
				return `SELECT m.id FROM members m WHERE (coalesce(btrim(m.member_number), '') = '' OR coalesce(btrim(m.first_name), '') = '' OR coalesce(btrim(m.last_name), '') = '')` + q.notDeleted("members", "m")
			},
		},
		{
			id: "member_number_duplicate", category: catMembers, severity: Critical,
			description: "members whose member_number equals another's ignoring case and surrounding spaces",
			needs:       []need{{"members", []string{"id", "member_number"}}},
			query: func(q *qctx) string {
				return `SELECT m.id FROM members m JOIN (SELECT lower(btrim(member_number)) AS k FROM members GROUP BY 1 HAVING count(*) > 1) d
					ON d.k = lower(btrim(m.member_number))`
			},
		},
		{
			id: "member_hire_date_future", category: catMembers, severity: Warning,
			description: "members whose hire_date is in the future",
			needs:       []need{{"members", []string{"id", "hire_date"}}},
			query: func(q *qctx) string {
				return `SELECT m.id FROM members m WHERE m.hire_date > @today::date` + q.notDeleted("members", "m")
			},
		},
		{
			id: "employment_end_before_start", category: catMembers, severity: Warning,
			description: "member_employments rows whose end_date is before start_date",
			needs:       []need{{"member_employments", []string{"id", "start_date", "end_date"}}},
			query: func(q *qctx) string {
				return `SELECT e.id FROM member_employments e WHERE e.end_date < e.start_date`
			},
		},
		{
			id: "employment_current_with_end_date", category: catMembers, severity: Warning,
			description: "member_employments rows marked is_current that have an end_date",
			needs:       []need{{"member_employments", []string{"id", "is_current", "end_date", "updated_at"}}},
			query: func(q *qctx) string {
				return `SELECT e.id FROM member_employments e WHERE e.is_current AND e.end_date IS NOT NULL`
			},
			repair: &repair{
				description: "set is_current = false where the end_date has passed (a future end_date is left for a person)",
				targets: func(q *qctx) []repairTarget {
					return []repairTarget{{table: "member_employments", where: `t.is_current AND t.end_date IS NOT NULL AND t.end_date <= @today::date`,
						set: []assignment{{"is_current", "false"}}}}
				},
			},
		},
		{
			id: "member_several_current_employments", category: catMembers, severity: Warning,
			description: "members with more than one current employment (ids are member ids)",
			needs:       []need{{"member_employments", []string{"member_id", "is_current"}}},
			query: func(q *qctx) string {
				return `SELECT e.member_id AS id FROM member_employments e WHERE e.is_current GROUP BY e.member_id HAVING count(*) > 1`
			},
		},
		{
			id: "employment_rate_out_of_range", category: catMembers, severity: Info,
			description: "member_employments rows whose hourly_rate is outside 10-150",
			needs:       []need{{"member_employments", []string{"id", "hourly_rate"}}},
			query: func(q *qctx) string {
				return `SELECT e.id FROM member_employments e WHERE e.hourly_rate NOT BETWEEN 10 AND 150`
			},
		},
		{
			id: "member_active_without_employment", category: catMembers, severity: Info,
			description: "ACTIVE members with no current employment",
			needs:       []need{{"members", []string{"id", "status"}}, {"member_employments", []string{"member_id", "is_current"}}},
			labels:      []label{memberStatus("ACTIVE")},
			query: func(q *qctx) string {
				return `SELECT m.id FROM members m WHERE m.status = ` + q.L("memberstatus", "ACTIVE") + q.notDeleted("members", "m") + `
					AND NOT EXISTS (SELECT 1 FROM member_employments e WHERE e.member_id = m.id AND e.is_current)`
			},
		},

		// Organizations and contacts.
		{
			id: "contact_orphan_organization", category: catOrganizations, severity: Critical,
			description: "organization_contacts rows whose organization does not exist",
			needs:       []need{{"organization_contacts", []string{"id", "organization_id"}}, {"organizations", []string{"id"}}},
			query: func(q *qctx) string {
				return `SELECT c.id FROM organization_contacts c WHERE NOT EXISTS (SELECT 1 FROM organizations o WHERE o.id = c.organization_id)`
			},
		},
		{
			id: "organization_several_primary_contacts", category: catOrganizations, severity: Warning,
			description: "organizations with more than one live primary contact (ids are organization ids)",
			needs:       []need{{"organization_contacts", []string{"organization_id", "is_primary"}}},
			query: func(q *qctx) string {
				return `SELECT c.organization_id AS id FROM organization_contacts c WHERE c.is_primary` + q.notDeleted("organization_contacts", "c") + `
					GROUP BY c.organization_id HAVING count(*) > 1`
			},
		},
		{
			id: "organization_without_contacts", category: catOrganizations, severity: Info,
			description: "live organizations without any live contact",
			needs:       []need{{"organizations", []string{"id"}}, {"organization_contacts", []string{"organization_id"}}},
			query: func(q *qctx) string {
				return `SELECT o.id FROM organizations o WHERE true` + q.notDeleted("organizations", "o") + `
					AND NOT EXISTS (SELECT 1 FROM organization_contacts c WHERE c.organization_id = o.id` + q.notDeleted("organization_contacts", "c") + `)`
			},
		},

		// File attachments (polymorphic, no foreign key).
		{
			id: "attachment_orphan_record", category: catAttachments, severity: Warning,
			description: "live file_attachments whose record (record_type, record_id) does not exist",
			needs:       []need{{"file_attachments", []string{"id", "record_type", "record_id"}}},
			query: func(q *qctx) string {
				var parts []string
				for _, m := range recordTypes(q.s) {
					parts = append(parts, fmt.Sprintf(`SELECT f.id FROM file_attachments f WHERE f.record_type IN (%s)%s
						AND NOT EXISTS (SELECT 1 FROM %s x WHERE x.id = f.record_id)`, m.names, q.notDeleted("file_attachments", "f"), ident(m.table)))
				}
				return strings.Join(parts, "\nUNION ALL\n")
			},
		},
		{
			id: "attachment_unknown_record_type", category: catAttachments, severity: Warning,
			description: "live file_attachments whose record_type names no table",
			needs:       []need{{"file_attachments", []string{"id", "record_type"}}},
			query: func(q *qctx) string {
				var names []string
				for _, m := range recordTypes(q.s) {
					names = append(names, m.names)
				}
				return `SELECT f.id FROM file_attachments f WHERE f.record_type NOT IN (` + strings.Join(names, ", ") + `)` + q.notDeleted("file_attachments", "f")
			},
		},
		{
			id: "attachment_empty_path", category: catAttachments, severity: Warning,
			description: "live file_attachments with an empty file_path",
			needs:       []need{{"file_attachments", []string{"id", "file_path"}}},
			query: func(q *qctx) string {
				return `SELECT f.id FROM file_attachments f WHERE coalesce(btrim(f.file_path), '') = ''` + q.notDeleted("file_attachments", "f")
			},
		},
		{
			id: "attachment_size_out_of_range", category: catAttachments, severity: Info,
			description: "live file_attachments whose file_size is not between 1 byte and 100 MB",
			needs:       []need{{"file_attachments", []string{"id", "file_size"}}},
			query: func(q *qctx) string {
				return fmt.Sprintf(`SELECT f.id FROM file_attachments f WHERE (f.file_size < 1 OR f.file_size > %d)`, MaxAttachmentBytes) + q.notDeleted("file_attachments", "f")
			},
		},
		{
			id: "attachment_file_missing", category: catAttachments, severity: Warning, files: true,
			description: "live file_attachments whose file is missing from the file store (local directory or S3)",
			needs:       []need{{"file_attachments", []string{"id", "file_path"}}},
			applies:     func(s *schemaInfo) string { return "" },
			query: func(q *qctx) string {
				return `SELECT f.id, f.file_path FROM file_attachments f WHERE coalesce(btrim(f.file_path), '') <> ''` + q.notDeleted("file_attachments", "f")
			},
		},

		// Soft delete: the app sets is_deleted and deleted_at together, but
		// nothing enforces it and app code filters on one or the other.
		{
			id: "soft_delete_flag_without_timestamp", category: catSoftDelete, severity: Warning,
			description: "rows with is_deleted but no deleted_at, on every table with both (ids are table:id)",
			applies:     needSoftDeleteTables,
			query: func(q *qctx) string {
				return softDeleteQuery(q, "t.is_deleted AND t.deleted_at IS NULL")
			},
			repair: &repair{
				description: "set deleted_at = updated_at, or created_at where updated_at is empty (the flag is kept; the time of the last change is the best known deletion time)",
				targets: func(q *qctx) []repairTarget {
					var out []repairTarget
					for _, t := range q.s.tablesWith("id", "is_deleted", "deleted_at", "updated_at") {
						// member_notes.updated_at is nullable and has no default.
						when := "t.updated_at"
						if q.s.HasColumns(t, "created_at") {
							when = "coalesce(t.updated_at, t.created_at)"
						}
						out = append(out, repairTarget{table: t, where: "t.is_deleted AND t.deleted_at IS NULL", set: []assignment{{"deleted_at", when}}})
					}
					return out
				},
			},
		},
		{
			id: "soft_delete_timestamp_without_flag", category: catSoftDelete, severity: Warning,
			description: "rows with a deleted_at but is_deleted false, on every table with both (ids are table:id)",
			applies:     needSoftDeleteTables,
			query: func(q *qctx) string {
				return softDeleteQuery(q, "NOT t.is_deleted AND t.deleted_at IS NOT NULL")
			},
		},

		// Dues.
		{
			id: "dues_paid_underpaid", category: catDues, severity: Warning,
			description: "dues_payments marked PAID with amount_paid below amount_due",
			needs:       []need{{"dues_payments", []string{"id", "status", "amount_paid", "amount_due"}}},
			labels:      []label{dues("PAID")},
			query: func(q *qctx) string {
				return `SELECT p.id FROM dues_payments p WHERE p.status = ` + q.L("duespaymentstatus", "PAID") + ` AND p.amount_paid < p.amount_due` + q.notDeleted("dues_payments", "p")
			},
		},
		{
			id: "dues_unpaid_not_overdue", category: catDues, severity: Warning,
			description: "dues_payments still PENDING or DUE with nothing paid after the period's grace period ended",
			needs:       []need{{"dues_payments", []string{"id", "period_id", "status", "amount_paid", "updated_at"}}, {"dues_periods", []string{"id", "grace_period_end"}}},
			labels:      []label{dues("PENDING"), dues("DUE"), dues("OVERDUE")},
			query: func(q *qctx) string {
				return `SELECT p.id FROM dues_payments p JOIN dues_periods d ON d.id = p.period_id WHERE ` + duesUnpaidPastGrace(q, "p", "d") + q.notDeleted("dues_payments", "p")
			},
			repair: &repair{
				description: "set status = OVERDUE",
				targets: func(q *qctx) []repairTarget {
					return []repairTarget{{table: "dues_payments",
						where: `EXISTS (SELECT 1 FROM dues_periods d WHERE d.id = t.period_id AND ` + duesUnpaidPastGrace(q, "t", "d") + `)` + q.notDeleted("dues_payments", "t"),
						set:   []assignment{{"status", q.L("duespaymentstatus", "OVERDUE")}}}}
				},
			},
		},
		{
			id: "dues_duplicate_payment", category: catDues, severity: Warning,
			description: "live dues_payments rows that share a member and period with another",
			needs:       []need{{"dues_payments", []string{"id", "member_id", "period_id"}}},
			query: func(q *qctx) string {
				nd := q.notDeleted("dues_payments", "x")
				return `SELECT p.id FROM dues_payments p JOIN (SELECT x.member_id, x.period_id FROM dues_payments x WHERE true` + nd + `
					GROUP BY 1, 2 HAVING count(*) > 1) d ON d.member_id = p.member_id AND d.period_id = p.period_id WHERE true` + q.notDeleted("dues_payments", "p")
			},
		},
		{
			id: "dues_deceased_member", category: catDues, severity: Warning,
			description: "open dues (PENDING or DUE) billed to DECEASED members",
			needs:       []need{{"dues_payments", []string{"id", "member_id", "status"}}, {"members", []string{"id", "status"}}},
			labels:      []label{memberStatus("DECEASED"), dues("PENDING"), dues("DUE")},
			query: func(q *qctx) string {
				return `SELECT p.id FROM dues_payments p JOIN members m ON m.id = p.member_id
					WHERE m.status = ` + q.L("memberstatus", "DECEASED") + ` AND p.status IN (` + q.L("duespaymentstatus", "PENDING") + `, ` + q.L("duespaymentstatus", "DUE") + `)` + q.notDeleted("dues_payments", "p")
			},
		},

		// Grants and expenses.
		{
			id: "grant_end_before_start", category: catGrants, severity: Critical,
			description: "grants whose end_date is before start_date",
			needs:       []need{{"grants", []string{"id", "start_date", "end_date"}}},
			query: func(q *qctx) string {
				return `SELECT g.id FROM grants g WHERE g.end_date < g.start_date` + q.notDeleted("grants", "g")
			},
		},
		{
			id: "expense_outside_grant_period", category: catGrants, severity: Warning,
			description: "live expenses charged to a grant but purchased outside the grant's period",
			needs:       []need{{"expenses", []string{"id", "grant_id", "purchased_at"}}, {"grants", []string{"id", "start_date", "end_date"}}},
			query: func(q *qctx) string {
				return `SELECT e.id FROM expenses e JOIN grants g ON g.id = e.grant_id WHERE (e.purchased_at < g.start_date OR e.purchased_at > g.end_date)` + q.notDeleted("expenses", "e")
			},
		},
		{
			id: "expense_category_not_allowed", category: catGrants, severity: Warning,
			description: "live expenses charged to a grant whose allowable_categories list does not include the expense's category",
			needs:       []need{{"expenses", []string{"id", "grant_id", "category"}}, {"grants", []string{"id", "allowable_categories"}}},
			query: func(q *qctx) string {
				return `SELECT e.id FROM expenses e JOIN grants g ON g.id = e.grant_id
					WHERE jsonb_typeof(g.allowable_categories::jsonb) = 'array' AND NOT (g.allowable_categories::jsonb ? coalesce(e.category, ''))` + q.notDeleted("expenses", "e")
			},
		},
		{
			id: "grant_overspent", category: catGrants, severity: Critical,
			description: "grants whose live expenses add up to more than total_amount (the budget)",
			needs:       []need{{"expenses", []string{"grant_id", "total_price"}}, {"grants", []string{"id", "total_amount"}}},
			query: func(q *qctx) string {
				return `SELECT g.id FROM grants g JOIN (SELECT e.grant_id, sum(e.total_price) AS spent FROM expenses e WHERE e.grant_id IS NOT NULL` + q.notDeleted("expenses", "e") + `
					GROUP BY 1) s ON s.grant_id = g.id WHERE s.spent > g.total_amount` + q.notDeleted("grants", "g")
			},
		},
		{
			id: "grant_enrollment_after_grant_end", category: catGrants, severity: Warning,
			description: "live grant_enrollments dated after their grant ended",
			needs:       []need{{"grant_enrollments", []string{"id", "grant_id", "enrollment_date"}}, {"grants", []string{"id", "end_date"}}},
			query: func(q *qctx) string {
				return `SELECT ge.id FROM grant_enrollments ge JOIN grants g ON g.id = ge.grant_id WHERE ge.enrollment_date > g.end_date` + q.notDeleted("grant_enrollments", "ge")
			},
		},

		// Grant enrollments.
		{
			id: "grant_enrollment_completion_before_enrollment", category: catGrantEnroll, severity: Warning,
			description: "live grant_enrollments completed before they were enrolled",
			needs:       []need{{"grant_enrollments", []string{"id", "enrollment_date", "completion_date"}}},
			query: func(q *qctx) string {
				return `SELECT ge.id FROM grant_enrollments ge WHERE ge.completion_date < ge.enrollment_date` + q.notDeleted("grant_enrollments", "ge")
			},
		},
		{
			id: "grant_enrollment_outcome_without_date", category: catGrantEnroll, severity: Warning,
			description: "live grant_enrollments with an outcome but no outcome_date",
			needs:       []need{{"grant_enrollments", []string{"id", "outcome", "outcome_date"}}},
			query: func(q *qctx) string {
				return `SELECT ge.id FROM grant_enrollments ge WHERE ge.outcome IS NOT NULL AND ge.outcome_date IS NULL` + q.notDeleted("grant_enrollments", "ge")
			},
		},
		{
			id: "grant_enrollment_placement_without_employment", category: catGrantEnroll, severity: Warning,
			description: "live grant_enrollments with placement data but an outcome other than obtained_employment or entered_apprenticeship",
			needs: []need{{"grant_enrollments", []string{"id", "outcome", "placement_employer", "placement_date", "placement_wage",
				"placement_job_title"}}},
			labels: []label{{"grant_outcome", "obtained_employment"}, {"grant_outcome", "entered_apprenticeship"}},
			query: func(q *qctx) string {
				return `SELECT ge.id FROM grant_enrollments ge
					WHERE (ge.placement_employer IS NOT NULL OR ge.placement_date IS NOT NULL OR ge.placement_wage IS NOT NULL OR ge.placement_job_title IS NOT NULL)
					AND ge.outcome IS DISTINCT FROM ` + q.L("grant_outcome", "obtained_employment") + ` AND ge.outcome IS DISTINCT FROM ` + q.L("grant_outcome", "entered_apprenticeship") + q.notDeleted("grant_enrollments", "ge")
			},
		},

		// Students.
		{
			id: "student_completion_before_enrollment", category: catStudents, severity: Warning,
			description: "live students whose actual_completion_date is before enrollment_date",
			needs:       []need{{"students", []string{"id", "enrollment_date", "actual_completion_date"}}},
			query: func(q *qctx) string {
				return `SELECT s.id FROM students s WHERE s.actual_completion_date < s.enrollment_date` + q.notDeleted("students", "s")
			},
		},
		{
			id: "student_completed_without_date", category: catStudents, severity: Warning,
			description: "live students with status COMPLETED but no actual_completion_date",
			needs:       []need{{"students", []string{"id", "status", "actual_completion_date"}}},
			labels:      []label{{"student_status_enum", "COMPLETED"}},
			query: func(q *qctx) string {
				return `SELECT s.id FROM students s WHERE s.status = ` + q.L("student_status_enum", "COMPLETED") + ` AND s.actual_completion_date IS NULL` + q.notDeleted("students", "s")
			},
		},

		// Tokens and locks the daily cleanup should have removed: something
		// older than cleanup's thresholds plus two days means it is not running.
		{
			id: "email_tokens_left_behind", category: catAuth, severity: Info,
			description: "email tokens expired more than 2 days ago, or password-reset tokens older than 9 days (cleanup is not running)",
			needs:       []need{{"email_tokens", []string{"id", "expires_at", "token_type", "created_at"}}},
			labels:      []label{{"token_type_enum", "PASSWORD_RESET"}},
			query: func(q *qctx) string {
				return `SELECT t.id FROM email_tokens t WHERE t.expires_at < ` + nowTZ + ` - interval '2 days'
					OR (t.token_type = ` + q.L("token_type_enum", "PASSWORD_RESET") + ` AND t.created_at < @now::timestamp - interval '9 days')`
			},
		},
		{
			id: "refresh_tokens_left_behind", category: catAuth, severity: Info,
			description: "refresh tokens expired or revoked more than 9 days ago (cleanup is not running)",
			needs:       []need{{"refresh_tokens", []string{"id", "expires_at", "is_revoked", "updated_at"}}},
			query: func(q *qctx) string {
				revoked := `(t.updated_at AT TIME ZONE 'UTC')`
				if q.s.HasColumns("refresh_tokens", "revoked_at") {
					revoked = `coalesce(t.revoked_at, t.updated_at AT TIME ZONE 'UTC')`
				}
				return `SELECT t.id FROM refresh_tokens t WHERE t.expires_at < ` + nowTZ + ` - interval '9 days'
					OR (t.is_revoked AND ` + revoked + ` < ` + nowTZ + ` - interval '9 days')`
			},
		},
		{
			id: "user_lock_expired", category: catAuth, severity: Info,
			description: "users whose locked_until passed more than 2 days ago and who are still marked locked (cleanup is not running)",
			needs:       []need{{"users", []string{"id", "locked_until"}}},
			query: func(q *qctx) string {
				return `SELECT u.id FROM users u WHERE u.locked_until < ` + nowTZ + ` - interval '2 days'`
			},
		},

		// The audit trail.
		{
			id: "audit_trigger_missing", category: catAudit, severity: Critical,
			description: "audit_logs lacks an enabled trigger refusing UPDATE (per row) or DELETE (per row or statement) (ids are the unprotected operations)",
			needs:       []need{{"audit_logs", []string{"id"}}},
			applies: func(s *schemaInfo) string {
				// The older schema generation never had the trigger: saying so
				// on every run would be noise, so the check applies where the
				// newer generation (or the trigger function) is present.
				if s.functions["prevent_audit_modification"] || s.HasTable("grant_enrollments") {
					return ""
				}
				return "older schema generation: audit_logs never had immutability triggers"
			},
			query: func(q *qctx) string {
				// tgtype bits: 1 row, 8 delete, 16 update. DELETE may be
				// refused per statement: the audit-archive guard does so.
				return `SELECT op.name AS id FROM (VALUES ('DELETE', 8), ('UPDATE', 16)) op(name, bit)
					WHERE NOT EXISTS (SELECT 1 FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
						WHERE n.nspname = ` + quoteLiteral(q.opts.Schema) + ` AND c.relname = 'audit_logs' AND NOT t.tgisinternal
						AND t.tgenabled <> 'D' AND (t.tgtype & 1 = 1 OR op.bit = 8) AND t.tgtype & op.bit = op.bit)`
			},
		},
		{
			id: "audit_rows_in_future", category: catAudit, severity: Warning,
			description: "audit_logs rows whose changed_at is more than 5 minutes in the future",
			needs:       []need{{"audit_logs", []string{"id", "changed_at"}}},
			query: func(q *qctx) string {
				return `SELECT a.id FROM audit_logs a WHERE a.changed_at > @now::timestamp + interval '5 minutes'`
			},
		},
		{
			id: "audit_months_past_online_window", category: catAudit, severity: Info,
			description: "months of audit_logs older than the online window (36 months by default) still in the database (ids are YYYY-MM; run audit-archive)",
			needs:       []need{{"audit_logs", []string{"changed_at"}}},
			query: func(q *qctx) string {
				return fmt.Sprintf(`SELECT DISTINCT to_char(date_trunc('month', a.changed_at), 'YYYY-MM') AS id FROM audit_logs a
					WHERE a.changed_at < date_trunc('month', @now::timestamp) - interval '%d months'`, q.opts.AuditOnlineMonths)
			},
		},
	}
}

// nowTZ is the run's instant as timestamptz, for the timestamptz columns.
const nowTZ = `(@now::timestamp AT TIME ZONE 'UTC')`

func duesUnpaidPastGrace(q *qctx, p, d string) string {
	return p + `.status IN (` + q.L("duespaymentstatus", "PENDING") + `, ` + q.L("duespaymentstatus", "DUE") + `) AND ` + p + `.amount_paid = 0 AND ` + d + `.grace_period_end < @today::date`
}

func needSoftDeleteTables(s *schemaInfo) string {
	if len(s.tablesWith("id", "is_deleted", "deleted_at")) == 0 {
		return "no table has both is_deleted and deleted_at"
	}
	return ""
}

func softDeleteQuery(q *qctx, cond string) string {
	var parts []string
	for _, t := range q.s.tablesWith("id", "is_deleted", "deleted_at") {
		parts = append(parts, fmt.Sprintf(`SELECT %s || ':' || t.id AS id FROM %s t WHERE %s`, quoteLiteral(t), ident(t), cond))
	}
	return strings.Join(parts, "\nUNION ALL\n")
}

// recordType maps file_attachments.record_type values to a table.
type recordType struct {
	table string
	names string // SQL list of literals
}

// recordTypes maps every table with an id column (but audit_logs) to the
// record_type values naming it: the table name and its singular ("member"
// for members), since the app's polymorphic reference has no foreign key.
func recordTypes(s *schemaInfo) []recordType {
	var out []recordType
	for _, t := range s.tablesWith("id") {
		if t == "audit_logs" || t == "file_attachments" {
			continue
		}
		names := []string{quoteLiteral(t)}
		if sing := strings.TrimSuffix(t, "s"); sing != t {
			names = append(names, quoteLiteral(sing))
		}
		out = append(out, recordType{table: t, names: strings.Join(names, ", ")})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].table < out[j].table })
	return out
}
