package integrity

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/pkg/fixture"
)

// Planted rows use ids from 900001 up and these helpers, so each case
// reads as the anomaly it plants.
func member(id int, status string) string {
	return memberWith(id, fmt.Sprintf("T%d", id), "Test", status, "NULL", "false", "NULL")
}

func memberWith(id int, number, first, status, hire, deleted, deletedAt string) string {
	return fmt.Sprintf(`INSERT INTO members (id, member_number, first_name, last_name, status, classification, hire_date, created_at, updated_at, is_deleted, deleted_at)
		VALUES (%d, '%s', '%s', 'Planted', '%s', 'JOURNEYMAN', %s, '2024-01-01', '2024-01-02', %s, %s)`, id, number, first, status, hire, deleted, deletedAt)
}

func employment(id, memberID, orgID int, current bool, start, end, rate string) string {
	return fmt.Sprintf(`INSERT INTO member_employments (id, member_id, organization_id, start_date, end_date, hourly_rate, is_current, created_at, updated_at)
		VALUES (%d, %d, %d, '%s', %s, %s, %t, '2024-01-01', '2024-01-01')`, id, memberID, orgID, start, end, rate, current)
}

func org(id int, deleted string) string {
	return fmt.Sprintf(`INSERT INTO organizations (id, name, org_type, created_at, updated_at, is_deleted) VALUES (%d, 'Planted Org %d', 'EMPLOYER', '2024-01-01', '2024-01-01', %s)`, id, id, deleted)
}

func contact(id, orgID int, primary bool) string {
	return fmt.Sprintf(`INSERT INTO organization_contacts (id, organization_id, first_name, last_name, is_primary, created_at, updated_at, is_deleted)
		VALUES (%d, %d, 'Pat', 'Contact', %t, '2024-01-01', '2024-01-01', false)`, id, orgID, primary)
}

func attach(id int, recordType string, recordID int, path string, size int) string {
	return fmt.Sprintf(`INSERT INTO file_attachments (id, record_type, record_id, file_name, file_path, file_type, file_size, created_at, updated_at, is_deleted)
		VALUES (%d, '%s', %d, 'f.pdf', '%s', 'application/pdf', %d, '2024-01-01', '2024-01-01', false)`, id, recordType, recordID, path, size)
}

func payment(id, memberID int, period, status, due, paid string) string {
	return fmt.Sprintf(`INSERT INTO dues_payments (id, member_id, period_id, amount_due, amount_paid, status, created_at, updated_at, is_deleted)
		VALUES (%d, %d, %s, %s, %s, '%s', '2024-01-01', '2024-01-01', false)`, id, memberID, period, due, paid, status)
}

func grant(id int, start, end, total, allowed string) string {
	return fmt.Sprintf(`INSERT INTO grants (id, name, grant_number, total_amount, start_date, end_date, allowable_categories, is_active, created_at, updated_at, is_deleted)
		VALUES (%d, 'Planted grant', 'PG-%d', %s, '%s', %s, %s, true, '2024-01-01', '2024-01-01', false)`, id, id, total, start, end, allowed)
}

func expense(id, grantID int, category, price, purchased string) string {
	return fmt.Sprintf(`INSERT INTO expenses (id, grant_id, item, quantity, unit_price, category, total_price, purchased_at, created_at, updated_at, is_deleted)
		VALUES (%d, %d, 'Planted item', 1, %[4]s, %[3]s, %[4]s, '%[5]s', '2024-01-01', '2024-01-01', false)`, id, grantID, category, price, purchased)
}

func grantEnrollment(id, grantID int, enrolled, status, completed, outcome, outcomeDate, employer string) string {
	return fmt.Sprintf(`INSERT INTO grant_enrollments (id, grant_id, student_id, enrollment_date, status, completion_date, outcome, outcome_date, placement_employer, created_at, updated_at)
		VALUES (%d, %d, (SELECT min(id) FROM students), '%s', '%s', %s, %s, %s, %s, '2024-01-01', '2024-01-01')`, id, grantID, enrolled, status, completed, outcome, outcomeDate, employer)
}

func student(id, memberID int, status, enrolled, completed string) string {
	return fmt.Sprintf(`INSERT INTO students (id, member_id, student_number, status, application_date, enrollment_date, actual_completion_date, created_at, updated_at, is_deleted)
		VALUES (%d, %d, 'S%d', '%s', '2023-12-01', %s, %s, '2024-01-01', '2024-01-01', false)`, id, memberID, id, status, enrolled, completed)
}

func user(id int, lockedUntil string) string {
	return fmt.Sprintf(`INSERT INTO users (id, email, password_hash, first_name, last_name, is_active, is_verified, failed_login_attempts, must_change_password, locked_until, created_at, updated_at, is_deleted)
		VALUES (%d, 'planted%d@example.org', 'x', 'Pat', 'User', true, true, 0, false, %s, '2024-01-01', '2024-01-01', false)`, id, id, lockedUntil)
}

const (
	oldestPeriod  = `(SELECT min(id) FROM dues_periods)`
	currentPeriod = `(SELECT id FROM dues_periods ORDER BY period_year DESC, period_month DESC LIMIT 1)`
	// noFK lets a plant break a foreign key, as a restore without
	// constraints or a bad manual fix would.
	noFK = `SET session_replication_role = replica`
)

type plantCase struct {
	check string
	plant []string
	want  []string
}

func plantCases() []plantCase {
	return []plantCase{
		{"employment_orphan_member", []string{noFK, employment(900001, 999999, 1, false, "2020-01-01", "'2021-01-01'", "30")}, []string{"900001"}},
		{"employment_orphan_organization", []string{member(900001, "INACTIVE"), noFK, employment(900001, 900001, 999999, false, "2020-01-01", "'2021-01-01'", "30")}, []string{"900001"}},
		{"member_required_blank", []string{memberWith(900001, "T1", "  ", "INACTIVE", "NULL", "false", "NULL")}, []string{"900001"}},
		{"member_number_duplicate", []string{memberWith(900001, "X-1", "A", "INACTIVE", "NULL", "false", "NULL"), memberWith(900002, " x-1", "B", "INACTIVE", "NULL", "false", "NULL")}, []string{"900001", "900002"}},
		{"member_hire_date_future", []string{memberWith(900001, "T1", "A", "INACTIVE", "'2099-01-01'", "false", "NULL")}, []string{"900001"}},
		{"employment_end_before_start", []string{member(900001, "INACTIVE"), employment(900001, 900001, 1, false, "2020-01-01", "'2019-06-30'", "30")}, []string{"900001"}},
		{"employment_current_with_end_date", []string{member(900001, "INACTIVE"), employment(900001, 900001, 1, true, "2020-01-01", "'2021-01-01'", "30")}, []string{"900001"}},
		{"member_several_current_employments", []string{member(900001, "INACTIVE"), employment(900001, 900001, 1, true, "2020-01-01", "NULL", "30"), employment(900002, 900001, 2, true, "2021-01-01", "NULL", "30")}, []string{"900001"}},
		{"employment_rate_out_of_range", []string{member(900001, "INACTIVE"), employment(900001, 900001, 1, false, "2020-01-01", "'2021-01-01'", "9.99"), employment(900002, 900001, 1, false, "2021-01-01", "'2022-01-01'", "150.01")}, []string{"900001", "900002"}},
		{"member_active_without_employment", []string{member(900001, "ACTIVE"), member(900002, "ACTIVE"), employment(900001, 900002, 1, false, "2020-01-01", "'2021-01-01'", "30")}, []string{"900001", "900002"}},
		{"contact_orphan_organization", []string{noFK, contact(900001, 999999, false)}, []string{"900001"}},
		{"organization_several_primary_contacts", []string{org(900001, "false"), contact(900001, 900001, true), contact(900002, 900001, true)}, []string{"900001"}},
		{"organization_without_contacts", []string{org(900001, "false"), org(900002, "false"), contact(900001, 900002, true), `UPDATE organization_contacts SET is_deleted = true, deleted_at = '2024-02-01' WHERE id = 900001`}, []string{"900001", "900002"}},
		{"attachment_orphan_record", []string{attach(900001, "member", 999999, "planted/present.pdf", 10), attach(900002, "grants", 999999, "planted/present.pdf", 10)}, []string{"900001", "900002"}},
		{"attachment_unknown_record_type", []string{attach(900001, "spaceship", 1, "planted/present.pdf", 10)}, []string{"900001"}},
		{"attachment_empty_path", []string{attach(900001, "member", 1, " ", 10)}, []string{"900001"}},
		{"attachment_size_out_of_range", []string{attach(900001, "member", 1, "planted/present.pdf", 0), attach(900002, "member", 1, "planted/present.pdf", MaxAttachmentBytes+1)}, []string{"900001", "900002"}},
		{"attachment_file_missing", []string{attach(900001, "member", 1, "planted/gone.pdf", 10), attach(900002, "member", 1, "/etc/passwd", 10)}, []string{"900001", "900002"}},
		{"soft_delete_flag_without_timestamp", []string{memberWith(900001, "T1", "A", "INACTIVE", "NULL", "true", "NULL"), org(900002, "true")}, []string{"members:900001", "organizations:900002"}},
		{"soft_delete_timestamp_without_flag", []string{memberWith(900001, "T1", "A", "INACTIVE", "NULL", "false", "'2024-03-01'")}, []string{"members:900001"}},
		{"dues_paid_underpaid", []string{member(900001, "INACTIVE"), payment(900001, 900001, oldestPeriod, "PAID", "50", "20")}, []string{"900001"}},
		{"dues_unpaid_not_overdue", []string{member(900001, "INACTIVE"), payment(900001, 900001, oldestPeriod, "DUE", "50", "0"), member(900002, "INACTIVE"), payment(900002, 900002, oldestPeriod, "PENDING", "50", "0")}, []string{"900001", "900002"}},
		{"dues_duplicate_payment", []string{member(900001, "INACTIVE"), payment(900001, 900001, oldestPeriod, "PAID", "50", "50"), payment(900002, 900001, oldestPeriod, "PAID", "50", "50")}, []string{"900001", "900002"}},
		{"dues_deceased_member", []string{member(900001, "DECEASED"), payment(900001, 900001, currentPeriod, "PENDING", "50", "0")}, []string{"900001"}},
		{"grant_end_before_start", []string{grant(900001, "2024-01-01", "'2023-12-31'", "1000", "NULL")}, []string{"900001"}},
		{"expense_outside_grant_period", []string{grant(900001, "2024-01-01", "'2024-12-31'", "1000", "NULL"), expense(900001, 900001, "NULL", "10", "2025-01-01"), expense(900002, 900001, "NULL", "10", "2023-12-31"), expense(900003, 900001, "NULL", "10", "2024-12-31")}, []string{"900001", "900002"}},
		{"expense_category_not_allowed", []string{grant(900001, "2024-01-01", "NULL", "1000", `'["tools", "tuition"]'`), expense(900001, 900001, "'travel'", "10", "2024-05-01"), expense(900002, 900001, "NULL", "10", "2024-05-01"), expense(900003, 900001, "'tools'", "10", "2024-05-01")}, []string{"900001", "900002"}},
		{"grant_overspent", []string{grant(900001, "2024-01-01", "NULL", "100", "NULL"), expense(900001, 900001, "NULL", "60", "2024-05-01"), expense(900002, 900001, "NULL", "40.01", "2024-05-01")}, []string{"900001"}},
		{"grant_enrollment_after_grant_end", []string{grant(900001, "2024-01-01", "'2024-12-31'", "1000", "NULL"), grantEnrollment(900001, 900001, "2025-01-01", "enrolled", "NULL", "NULL", "NULL", "NULL")}, []string{"900001"}},
		{"grant_enrollment_completion_before_enrollment", []string{grant(900001, "2024-01-01", "NULL", "1000", "NULL"), grantEnrollment(900001, 900001, "2024-03-01", "completed", "'2024-02-01'", "NULL", "NULL", "NULL")}, []string{"900001"}},
		{"grant_enrollment_outcome_without_date", []string{grant(900001, "2024-01-01", "NULL", "1000", "NULL"), grantEnrollment(900001, 900001, "2024-03-01", "completed", "'2024-06-01'", "'other'", "NULL", "NULL")}, []string{"900001"}},
		{"grant_enrollment_placement_without_employment", []string{grant(900001, "2024-01-01", "NULL", "1000", "NULL"), grantEnrollment(900001, 900001, "2024-03-01", "completed", "'2024-06-01'", "'continued_education'", "'2024-06-01'", "'ACME Electric'")}, []string{"900001"}},
		{"student_completion_before_enrollment", []string{member(900001, "INACTIVE"), student(900001, 900001, "DROPPED", "'2024-02-01'", "'2024-01-15'")}, []string{"900001"}},
		{"student_completed_without_date", []string{member(900001, "INACTIVE"), student(900001, 900001, "COMPLETED", "'2024-02-01'", "NULL")}, []string{"900001"}},
		{"email_tokens_left_behind", []string{user(900001, "NULL"),
			`INSERT INTO email_tokens (id, user_id, token_hash, token_type, is_used, expires_at, created_at, updated_at) VALUES (900001, 900001, 'h1', 'EMAIL_VERIFICATION', false, '2001-01-01', '2000-12-31', '2000-12-31')`,
			`INSERT INTO email_tokens (id, user_id, token_hash, token_type, is_used, expires_at, created_at, updated_at) VALUES (900002, 900001, 'h2', 'PASSWORD_RESET', false, now() + interval '1 day', '2001-01-01', '2001-01-01')`,
			`INSERT INTO email_tokens (id, user_id, token_hash, token_type, is_used, expires_at, created_at, updated_at) VALUES (900003, 900001, 'h3', 'EMAIL_VERIFICATION', false, now() + interval '1 day', now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC')`},
			[]string{"900001", "900002"}},
		{"refresh_tokens_left_behind", []string{user(900001, "NULL"),
			`INSERT INTO refresh_tokens (id, user_id, token_hash, expires_at, is_revoked, created_at, updated_at) VALUES (900001, 900001, 'r1', '2001-01-01', false, '2000-12-01', '2000-12-01')`,
			`INSERT INTO refresh_tokens (id, user_id, token_hash, expires_at, is_revoked, revoked_at, created_at, updated_at) VALUES (900002, 900001, 'r2', now() + interval '30 days', true, '2001-01-01', '2000-12-01', '2000-12-01')`,
			`INSERT INTO refresh_tokens (id, user_id, token_hash, expires_at, is_revoked, revoked_at, created_at, updated_at) VALUES (900003, 900001, 'r3', now() + interval '30 days', true, now(), '2000-12-01', '2000-12-01')`},
			[]string{"900001", "900002"}},
		{"user_lock_expired", []string{user(900001, "'2001-01-01'"), user(900002, "now() + interval '1 hour'")}, []string{"900001"}},
		{"audit_trigger_missing", []string{`ALTER TABLE audit_logs DISABLE TRIGGER audit_logs_prevent_delete`}, []string{"DELETE"}},
		{"audit_rows_in_future", []string{`INSERT INTO audit_logs (id, table_name, record_id, action, changed_at) VALUES (900001, 'members', '1', 'READ', '2099-01-01')`}, []string{"900001"}},
		{"audit_months_past_online_window", []string{`INSERT INTO audit_logs (id, table_name, record_id, action, changed_at) VALUES (900001, 'members', '1', 'READ', '2001-03-10'), (900002, 'members', '1', 'READ', '2001-03-11'), (900003, 'members', '1', 'READ', '2002-12-31')`}, []string{"2001-03", "2002-12"}},
	}
}

// Every built-in check has a case that plants exactly its anomaly in a
// clean fixture; the check finds exactly the planted ids and no other
// check finds anything.
func TestEveryCheckFindsItsPlantedAnomaly(t *testing.T) {
	t.Parallel()
	cat, err := Catalogue("")
	require.NoError(t, err)
	cases := plantCases()
	var covered []string
	for _, c := range cases {
		covered = append(covered, c.check)
	}
	for _, c := range cat {
		require.Contains(t, covered, c.ID, "check %s has no plant case", c.ID)
	}
	for _, tc := range cases {
		t.Run(tc.check, func(t *testing.T) {
			t.Parallel()
			pool, _ := cloneDB(t, fixture.Newer)
			exec(t, pool, tc.plant...)
			res, err := Run(t.Context(), Options{Pool: pool, Files: fileStore(t), Workers: 3})
			require.NoError(t, err)
			got := byID(res)[tc.check]
			require.Equal(t, StatusFindings, got.Status, "%v", findings(res))
			require.Equal(t, int64(len(tc.want)), got.Count)
			require.Equal(t, tc.want, got.SampleIDs)
			var others []string
			for _, f := range findings(res) {
				if !strings.HasPrefix(f, tc.check+":") {
					others = append(others, f)
				}
			}
			require.Empty(t, others)
		})
	}
}
