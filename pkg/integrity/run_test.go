package integrity

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/pkg/fixture"
)

func writeFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
	return p
}

// User checks come from .sql files with a header; a query naming what the
// database lacks is skipped with the server's reason, a write is refused
// (the snapshot is read-only), a slow one times out alone.
func TestUserChecks(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, dir, "a_no_email.sql", `-- A members check of our own.
-- id: member_without_email
-- severity: info
-- category: members
-- description: live members without an email address
SELECT id FROM members WHERE email IS NULL AND NOT is_deleted;
`)
	writeFile(t, dir, "b_missing.sql", "-- id: uses_missing_column\n-- severity: warning\n-- description: d\nSELECT id FROM members WHERE shoe_size > 40\n")
	writeFile(t, dir, "c_write.sql", "-- id: tries_to_write\n-- severity: warning\n-- description: d\nSELECT nextval('members_id_seq') AS id\n")
	writeFile(t, dir, "d_slow.sql", "-- id: slow\n-- severity: info\n-- description: d\nSELECT 1 AS id FROM pg_sleep(3)\n")
	writeFile(t, dir, "ignored.txt", "not a check")

	cat, err := Catalogue(dir)
	require.NoError(t, err)
	last := cat[len(cat)-4]
	require.Equal(t, CheckInfo{ID: "member_without_email", Category: "members", Severity: Info, Description: "live members without an email address",
		Source: filepath.Join(dir, "a_no_email.sql")}, last)

	pool, _ := cloneDB(t, fixture.Newer)
	exec(t, pool, `UPDATE members SET email = NULL WHERE id IN (3, 7)`)
	res, err := Run(t.Context(), Options{Pool: pool, UserChecksDir: dir, Only: []string{"members", "uses_missing_column", "tries_to_write", "slow"},
		StatementTimeout: 500 * time.Millisecond, Workers: 2})
	require.NoError(t, err)
	got := byID(res)
	require.Equal(t, StatusFindings, got["member_without_email"].Status)
	require.Equal(t, []string{"3", "7"}, got["member_without_email"].SampleIDs)
	require.Equal(t, StatusSkipped, got["uses_missing_column"].Status)
	require.Equal(t, `column "shoe_size" does not exist`, got["uses_missing_column"].Reason)
	require.Equal(t, StatusError, got["tries_to_write"].Status)
	require.Contains(t, got["tries_to_write"].Reason, "read-only transaction")
	require.Equal(t, StatusError, got["slow"].Status)
	require.Equal(t, "timed out after 500ms (statement_timeout)", got["slow"].Reason)
	require.Equal(t, StatusOK, got["member_hire_date_future"].Status, "checks after a failed one still run")
	require.Len(t, res.Errors(), 2)
	var n int64
	require.NoError(t, pool.QueryRow(t.Context(), `SELECT count(*) FROM members WHERE id = 1`).Scan(&n))
	require.Equal(t, int64(1), n)
}

func TestUserCheckHeaderErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, body, want string }{
		{"no id", "-- severity: info\n-- description: d\nSELECT 1 AS id\n", `id ""`},
		{"bad id", "-- id: Bad-Id\n-- severity: info\n-- description: d\nSELECT 1 AS id\n", `id "Bad-Id"`},
		{"bad severity", "-- id: x\n-- severity: fatal\n-- description: d\nSELECT 1 AS id\n", `severity "fatal"`},
		{"no description", "-- id: x\n-- severity: info\nSELECT 1 AS id\n", "description missing"},
		{"no query", "-- id: x\n-- severity: info\n-- description: d\n", "no query"},
		{"two statements", "-- id: x\n-- severity: info\n-- description: d\nSELECT 1 AS id; DROP TABLE members\n", "more than one statement"},
		{"builtin id", "-- id: grant_overspent\n-- severity: info\n-- description: d\nSELECT 1 AS id\n", "id already used"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			writeFile(t, dir, "x.sql", tc.body)
			_, err := Catalogue(dir)
			require.ErrorContains(t, err, tc.want)
			require.ErrorContains(t, err, "x.sql")
		})
	}
	_, err := Catalogue(filepath.Join(t.TempDir(), "nope"))
	require.ErrorContains(t, err, "no such file or directory")
}

// Every worker imports the first transaction's snapshot: the checks run on
// several connections yet see one snapshot.
func TestWorkersShareOneSnapshot(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, id := range []string{"s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8"} {
		// The sleep keeps each worker busy, so every worker gets a check.
		writeFile(t, dir, id+".sql", "-- id: "+id+"\n-- severity: info\n-- description: d\nSELECT pg_backend_pid()::text || ' ' || pg_current_snapshot()::text AS id FROM pg_sleep(0.2)\n")
	}
	pool, _ := cloneDB(t, fixture.Newer)
	res, err := Run(t.Context(), Options{Pool: pool, UserChecksDir: dir, Only: []string{"user"}, Workers: 4})
	require.NoError(t, err)
	pids, snaps := map[string]bool{}, map[string]bool{}
	for _, c := range res.Checks {
		require.Equal(t, StatusFindings, c.Status, c.ID)
		require.GreaterOrEqual(t, c.Seconds, 0.2, "each check's own time")
		pid, snap, _ := strings.Cut(c.SampleIDs[0], " ")
		pids[pid], snaps[snap] = true, true
	}
	require.Greater(t, len(pids), 1, "checks ran on several connections")
	require.Len(t, snaps, 1, "one snapshot: %v", snaps)
}

// Labels are read from pg_enum: a database whose labels differ in case is
// checked with its own labels, and a label that is gone skips the check.
func TestEnumLabelsFromDatabase(t *testing.T) {
	t.Parallel()
	pool, _ := cloneDB(t, fixture.Older)
	exec(t, pool,
		`ALTER TYPE memberstatus RENAME VALUE 'DECEASED' TO 'deceased'`,
		`ALTER TYPE duespaymentstatus RENAME VALUE 'PENDING' TO 'Pending'`,
		`ALTER TYPE student_status_enum RENAME VALUE 'COMPLETED' TO 'GRADUATED'`,
		member(900001, "deceased"), payment(900001, 900001, currentPeriod, "Pending", "50", "0"),
	)
	res, err := Run(t.Context(), Options{Pool: pool})
	require.NoError(t, err)
	got := byID(res)
	require.Equal(t, []string{"900001"}, got["dues_deceased_member"].SampleIDs)
	require.Equal(t, StatusSkipped, got["student_completed_without_date"].Status)
	require.Equal(t, "enum student_status_enum has no label COMPLETED", got["student_completed_without_date"].Reason)
}

// A column the database lacks skips the checks that read it, the rest run.
func TestMissingColumnSkipsCheck(t *testing.T) {
	t.Parallel()
	pool, _ := cloneDB(t, fixture.Newer)
	exec(t, pool, `ALTER TABLE members DROP COLUMN hire_date`, `DROP TABLE organization_contacts`)
	res, err := Run(t.Context(), Options{Pool: pool})
	require.NoError(t, err)
	got := byID(res)
	require.Equal(t, "column members.hire_date does not exist", got["member_hire_date_future"].Reason)
	require.Equal(t, "table organization_contacts does not exist", got["organization_several_primary_contacts"].Reason)
	require.Equal(t, StatusOK, got["member_number_duplicate"].Status)
	require.Empty(t, findings(res))
}

func TestSelect(t *testing.T) {
	t.Parallel()
	cat, err := Catalogue("")
	require.NoError(t, err)
	ids := func(l []CheckInfo) []string {
		var out []string
		for _, c := range l {
			out = append(out, c.ID)
		}
		return out
	}
	for _, tc := range []struct {
		name       string
		only, skip []string
		want       []string
	}{
		{"by id", []string{"grant_overspent", "audit_rows_in_future"}, nil, []string{"grant_overspent", "audit_rows_in_future"}},
		{"by category minus id", []string{"dues"}, []string{"dues_duplicate_payment"}, []string{"dues_paid_underpaid", "dues_unpaid_not_overdue", "dues_deceased_member"}},
		{"skip category", []string{"audit", "auth"}, []string{"auth"}, []string{"audit_trigger_missing", "audit_rows_in_future", "audit_months_past_online_window"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Select(cat, tc.only, tc.skip)
			require.NoError(t, err)
			require.Equal(t, tc.want, ids(got))
		})
	}
	_, err = Select(cat, []string{"dues", "nope"}, []string{"nada"})
	require.EqualError(t, err, "integrity: no check or category named nope, nada")
}

func TestCompare(t *testing.T) {
	t.Parallel()
	cr := func(id, status string, n int64, ids ...string) CheckResult {
		if ids == nil {
			ids = []string{}
		}
		return CheckResult{CheckInfo: CheckInfo{ID: id, Severity: Warning}, Status: status, Count: n, SampleIDs: ids}
	}
	prev := Result{AsOf: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), Checks: []CheckResult{
		cr("a", StatusFindings, 2, "1", "2"), cr("b", StatusOK, 0), cr("c", StatusFindings, 2, "5", "6"),
		cr("d", StatusFindings, 1, "9"), cr("e", StatusSkipped, 0), cr("f", StatusFindings, 1, "1"),
	}}
	cur := Result{Checks: []CheckResult{
		cr("a", StatusOK, 0), cr("b", StatusFindings, 1, "3"), cr("c", StatusFindings, 2, "6", "7"),
		cr("d", StatusFindings, 1, "9"), cr("e", StatusFindings, 1, "4"), cr("f", StatusError, 0), cr("g", StatusFindings, 1, "8"),
	}}
	got := Compare(41, prev, cur)
	require.Equal(t, &Comparison{PreviousRunID: 41, PreviousAsOf: prev.AsOf,
		New:      []CheckDelta{{ID: "b", Severity: Warning, Before: 0, After: 1, NewIDs: []string{"3"}, ResolvedIDs: []string{}}},
		Resolved: []CheckDelta{{ID: "a", Severity: Warning, Before: 2, After: 0, NewIDs: []string{}, ResolvedIDs: []string{"1", "2"}}},
		Changed:  []CheckDelta{{ID: "c", Severity: Warning, Before: 2, After: 2, NewIDs: []string{"7"}, ResolvedIDs: []string{"5"}}},
	}, got)
}
