package reports

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/internal/fixturetest"
	"github.com/ip2a/ip2a-ops/internal/pgtest"
	"github.com/ip2a/ip2a-ops/internal/tmpfs"
	"github.com/ip2a/ip2a-ops/pkg/fixture"
	"github.com/ip2a/ip2a-ops/pkg/reports/xlsx"
)

// TestGrantReportTotalsMatchSQL writes every fixture grant's workbook on
// both generations, reopens each, and checks the Summary and the detail
// sheets against sums computed here with independent SQL.
func TestGrantReportTotalsMatchSQL(t *testing.T) {
	t.Parallel()
	for _, gen := range []fixture.Generation{fixture.Newer, fixture.Older} {
		t.Run(string(gen), func(t *testing.T) {
			t.Parallel()
			url := fixturetest.NewTestDB(t, gen, fixture.Options{Seed: 7, Now: frozenNow, Grants: 4, SoftDeletedPercent: 20})
			pool := pgtest.Pool(t, url)
			// Every grant, so --all-active is not the only path tested.
			mustExec(t, pool, `UPDATE grants SET is_active = true`)
			if gen == fixture.Newer {
				mustExec(t, pool, `UPDATE grants SET status = 'active'`)
			}
			dir := t.TempDir()
			res, err := GrantReport(t.Context(), GrantOptions{Pool: pool, AllActive: true, Out: dir, Now: frozenNow})
			require.NoError(t, err)
			require.Len(t, res.Reports, 4)
			for _, rep := range res.Reports {
				f, _ := reopen(t, rep.Path)
				sv := summaryValues(t, f)
				var budget, spent, nExp int64
				require.NoError(t, pool.QueryRow(t.Context(), `SELECT (g.total_amount*100)::bigint,
					coalesce((SELECT (sum(total_price)*100)::bigint FROM expenses WHERE grant_id = g.id AND is_deleted = false AND deleted_at IS NULL), 0),
					(SELECT count(*) FROM expenses WHERE grant_id = g.id AND is_deleted = false AND deleted_at IS NULL)
					FROM grants g WHERE g.id = $1`, rep.GrantID).Scan(&budget, &spent, &nExp))
				require.Equal(t, budget, cents(t, sv["Budget"]), "budget of %s", rep.GrantNumber)
				require.Equal(t, spent, cents(t, sv["Spent"]), "spent of %s", rep.GrantNumber)
				require.Equal(t, budget-spent, cents(t, sv["Remaining"]))
				require.Equal(t, spent, rep.SpentCents)
				if budget != 0 {
					u, err := strconv.ParseFloat(sv["Utilization"], 64)
					require.NoError(t, err)
					require.InDelta(t, float64(spent)/float64(budget), u, 1e-12)
				}
				// The Expenses sheet lists exactly those rows, and its Total
				// column adds up to the same cents.
				sum, n := columnCents(t, f, SheetExpenses, 10)
				require.Equal(t, spent, sum)
				require.EqualValues(t, nExp, n)

				var enrolled int64
				if gen == fixture.Newer {
					require.NoError(t, pool.QueryRow(t.Context(), `SELECT count(*) FROM grant_enrollments
						WHERE grant_id = $1 AND NOT is_deleted AND deleted_at IS NULL`, rep.GrantID).Scan(&enrolled))
					var placements, attrition int64
					require.NoError(t, pool.QueryRow(t.Context(), `SELECT
						count(*) FILTER (WHERE outcome IN ('obtained_employment', 'entered_apprenticeship')),
						count(*) FILTER (WHERE status IN ('withdrawn', 'dropped'))
						FROM grant_enrollments WHERE grant_id = $1 AND NOT is_deleted AND deleted_at IS NULL`, rep.GrantID).Scan(&placements, &attrition))
					require.Equal(t, strconv.FormatInt(placements, 10), sv["Placements (employment + apprenticeship)"])
					require.Equal(t, strconv.FormatInt(attrition, 10), sv["Attrition (withdrawn + dropped)"])
				} else {
					require.NoError(t, pool.QueryRow(t.Context(), `SELECT count(DISTINCT student_id) FROM expenses e
						JOIN students s ON s.id = e.student_id AND NOT s.is_deleted AND s.deleted_at IS NULL
						WHERE e.grant_id = $1 AND NOT e.is_deleted AND e.deleted_at IS NULL`, rep.GrantID).Scan(&enrolled))
				}
				require.Equal(t, strconv.FormatInt(enrolled, 10), sv["Enrolled"])
				_, nEnr := columnCents(t, f, SheetEnrollment, 11)
				require.EqualValues(t, enrolled, nEnr)
				// The by-category total is the same SQL sum.
				cat, err := f.GetRows(SheetCategories, excelizeRaw)
				require.NoError(t, err)
				last := cat[len(cat)-1]
				require.Equal(t, "Total", last[0])
				require.Equal(t, spent, cents(t, last[3]))
			}
		})
	}
}

// TestGrantReportEdgeCases builds a grant by hand with NULLs everywhere
// they are allowed, text longer than a cell holds, non-Latin text, control
// characters, negative amounts, an out-of-policy and an uncategorised
// expense and a soft-deleted row: the workbook still opens and says so.
func TestGrantReportEdgeCases(t *testing.T) {
	t.Parallel()
	url := fixturetest.NewTestDB(t, fixture.Newer, fixture.Options{Seed: 3, Now: frozenNow, Grants: -1})
	pool := pgtest.Pool(t, url)
	long := strings.Repeat("長", 20000) + strings.Repeat("x", 20000) // 40,000 characters
	mustExec(t, pool, `INSERT INTO grants (id, name, grant_number, funding_source, total_amount, start_date, end_date,
		allowable_categories, status, is_active, created_at, updated_at, is_deleted)
		VALUES (500, 'Грант «Север» 北', 'ГР/2026 #1', NULL, 1000.00, '2026-01-01', NULL, '["tools", "Tuition "]', 'active', true, now(), now(), false)`)
	mustExec(t, pool, `INSERT INTO grant_enrollments (grant_id, student_id, enrollment_date, status, outcome, placement_wage, notes, created_at, updated_at)
		VALUES (500, 1, '2026-02-01', 'completed', 'obtained_employment', '22 per hour', $1, now(), now()),
		       (500, 2, '2026-02-03', 'dropped', NULL, 'DOE', NULL, now(), now())`, long)
	mustExec(t, pool, `INSERT INTO expenses (grant_id, item, description, quantity, total_price, unit_price, category, purchased_at, notes, created_at, updated_at, is_deleted, deleted_at)
		VALUES (500, 'Refund from vendor', NULL, 1, -120.50, -120.50, 'tools', '2026-03-01', 'bell'||chr(7)||' and tab'||chr(9), now(), now(), false, NULL),
		       (500, 'Hand tools 🔧', $1, 1, 300.10, 300.10, ' TUITION', '2026-03-02', NULL, now(), now(), false, NULL),
		       (500, 'Pizza', 'Zoë café — 日本語', 1, 45.99, 45.99, 'food', '2026-03-03', NULL, now(), now(), false, NULL),
		       (500, 'Uncategorised', NULL, 1, 0.01, 0.01, NULL, '2026-03-04', NULL, now(), now(), false, NULL),
		       (500, 'Deleted one', NULL, 1, 999.99, 999.99, 'tools', '2026-03-05', NULL, now(), now(), false, now())`, long)
	dir := t.TempDir()
	res, err := GrantReport(t.Context(), GrantOptions{Pool: pool, Grant: "гр/2026 #1", Out: dir, Now: frozenNow,
		From: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), To: time.Date(2026, 3, 31, 0, 0, 0, 0, time.UTC)})
	require.NoError(t, err)
	rep := res.Reports[0]
	require.Equal(t, filepath.Join(dir, "grant_report_ГР_2026__1_2026-03.xlsx"), rep.Path)
	f, d := reopen(t, rep.Path)
	sv := summaryValues(t, f)
	require.Equal(t, int64(-12050+30010+4599+1), cents(t, sv["Spent"]))
	require.Equal(t, int64(100000-22560), cents(t, sv["Remaining"]))
	require.Equal(t, int64(4599+1), cents(t, sv["Spent out of policy"]))
	require.Equal(t, "", sv["Funder"])
	require.Equal(t, "Грант «Север» 北", sv["Name"])
	// A negative total is a number with the currency format.
	require.Contains(t, d[SheetExpenses+"!K2"], `"-120.5"`)
	require.Contains(t, d[SheetExpenses+"!K2"], xlsx.FmtMoney)
	// Long text is cut to what a cell holds and marked; the Notes name the cells.
	desc := d[SheetExpenses+"!F3"]
	require.Contains(t, desc, "…[truncated]")
	v, err := f.GetCellValue(SheetExpenses, "F3")
	require.NoError(t, err)
	require.Equal(t, 32767, utf16Units(v))
	notes, err := f.GetRows(SheetNotes)
	require.NoError(t, err)
	all := ""
	for _, r := range notes {
		all += strings.Join(r, " | ") + "\n"
	}
	require.Contains(t, all, "2 cells held text longer than")
	require.Contains(t, all, "'Expenses'!F3")
	require.Contains(t, all, "'Enrollments'!N2")
	require.Contains(t, all, "1 soft-deleted expenses excluded ($999.99)")
	require.Equal(t, []string{"2 cells held text longer than the 32,767 characters a cell allows; they were cut and end with \"…[truncated]\": 'Enrollments'!N2, 'Expenses'!F3."}, rep.Notes)
	// Categories: case and spaces ignored; food and no-category are out of policy.
	cat, err := f.GetRows(SheetCategories)
	require.NoError(t, err)
	byName := map[string][]string{}
	for _, r := range cat[1:] {
		if len(r) > 0 {
			byName[r[0]] = r
		}
	}
	require.Equal(t, "Yes", byName[" TUITION"][1])
	require.Equal(t, "Yes", byName["tools"][1])
	require.Equal(t, "Out of policy", byName["food"][1])
	require.Equal(t, "Out of policy", byName["(no category)"][1])
	// The wage "22 per hour" is read as a number; "DOE" is not.
	require.Contains(t, d[SheetEnrollment+"!L2"], `"22"`)
	_, parsed := d[SheetEnrollment+"!L3"]
	require.False(t, parsed, "DOE parsed as a wage")
	// No grant status policy: the grant has no targets, and says so.
	require.Equal(t, "no target", sv["Enrollment"])
}

var excelizeRaw = excelizeRawOpts()

// TestGrantReportBadInput covers the errors the CLI turns into exit codes.
func TestGrantReportBadInput(t *testing.T) {
	t.Parallel()
	url := fixturetest.NewTestDB(t, fixture.Newer, fixture.Options{Seed: 1, Now: frozenNow})
	pool := pgtest.Pool(t, url)
	var numbers []string
	rows, err := pool.Query(t.Context(), `SELECT grant_number FROM grants ORDER BY id`)
	require.NoError(t, err)
	for rows.Next() {
		var n string
		require.NoError(t, rows.Scan(&n))
		numbers = append(numbers, n)
	}
	require.NoError(t, rows.Err())
	notDir := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(notDir, []byte("x"), 0o600))
	for _, tc := range []struct {
		name  string
		opts  GrantOptions
		check func(t *testing.T, err error)
	}{
		{"unknown number names the closest", GrantOptions{Grant: numbers[0] + "9"}, func(t *testing.T, err error) {
			var ue *UnknownGrantError
			require.ErrorAs(t, err, &ue)
			require.ErrorIs(t, err, ErrUnknownGrant)
			require.Equal(t, numbers[0], ue.Closest[0])
			require.Len(t, ue.Closest, 3)
		}},
		{"unknown id", GrantOptions{Grant: "4242"}, func(t *testing.T, err error) { require.ErrorIs(t, err, ErrUnknownGrant) }},
		{"from after to", GrantOptions{Grant: "1", From: time.Date(2026, 5, 2, 0, 0, 0, 0, time.UTC), To: time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)},
			func(t *testing.T, err error) {
				require.ErrorIs(t, err, ErrBadPeriod)
				require.ErrorContains(t, err, "From: 2026-05-02 is after To")
			}},
		{"to before the grant starts", GrantOptions{Grant: "1", To: time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)},
			func(t *testing.T, err error) { require.ErrorIs(t, err, ErrBadPeriod) }},
		{"both grant and all", GrantOptions{Grant: "1", AllActive: true}, func(t *testing.T, err error) { require.ErrorContains(t, err, "Grant:") }},
		{"file name with all", GrantOptions{AllActive: true, Out: "x.xlsx"}, func(t *testing.T, err error) { require.ErrorContains(t, err, "Out:") }},
		{"output under a file", GrantOptions{Grant: "1", Out: filepath.Join(notDir, "r.xlsx")}, func(t *testing.T, err error) {
			require.ErrorIs(t, err, syscall.ENOTDIR)
		}},
		{"missing output directory", GrantOptions{Grant: "1", Out: filepath.Join(t.TempDir(), "nope")}, func(t *testing.T, err error) {
			require.ErrorIs(t, err, os.ErrNotExist)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.opts.Pool, tc.opts.Now = pool, frozenNow
			res, err := GrantReport(t.Context(), tc.opts)
			require.Error(t, err)
			require.Empty(t, res.Reports)
			tc.check(t, err)
		})
	}
}

// TestGrantReportDiskFull writes into a real tmpfs too small for the
// workbook: the error is ENOSPC and neither the workbook nor a temporary
// file is left behind.
func TestGrantReportDiskFull(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "small")
	require.NoError(t, os.Mkdir(dir, 0o700))
	tmpfs.Mount(t, dir, "8k")
	url := fixturetest.NewTestDB(t, fixture.Newer, fixture.Options{Seed: 1, Now: frozenNow})
	pool := pgtest.Pool(t, url)
	out := filepath.Join(dir, "report.xlsx")
	_, err := GrantReport(t.Context(), GrantOptions{Pool: pool, Grant: "1", Out: out, Now: frozenNow})
	require.Error(t, err)
	require.True(t, errors.Is(err, syscall.ENOSPC), "%v", err)
	require.False(t, fileExists(out))
	require.Empty(t, tempFiles(t, dir))
}

func TestFileName(t *testing.T) {
	t.Parallel()
	d := func(s string) time.Time { v, _ := time.Parse(time.DateOnly, s); return v }
	for _, tc := range []struct {
		name, number, from, to, want string
	}{
		{"whole month", "G-2026-001", "2026-10-01", "2026-10-31", "grant_report_G-2026-001_2026-10.xlsx"},
		{"february leap", "G-1", "2028-02-01", "2028-02-29", "grant_report_G-1_2028-02.xlsx"},
		{"range", "G-1", "2026-01-15", "2026-10-31", "grant_report_G-1_2026-01-15_2026-10-31.xlsx"},
		{"unsafe characters", "../a b/c", "2026-01-01", "2026-01-02", "grant_report__a_b_c_2026-01-01_2026-01-02.xlsx"},
		{"empty number uses id", "", "2026-01-01", "2026-01-02", "grant_report_7_2026-01-01_2026-01-02.xlsx"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, FileName(tc.number, 7, d(tc.from), d(tc.to)))
		})
	}
}

func TestHourlyWage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"$18.50/hr", 1850, true}, {"18.5 per hour", 1850, true}, {"$22", 2200, true}, {" $31.75/hour ", 3175, true},
		{"DOE", 0, false}, {"$45,000/yr", 0, false}, {"$18-20/hr", 0, false}, {"", 0, false}, {"$18.505/hr", 0, false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			t.Parallel()
			got, ok := hourlyWageCents(tc.in)
			require.Equal(t, tc.ok, ok)
			require.Equal(t, tc.want, got)
		})
	}
}
