package reports

import (
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"github.com/xuri/excelize/v2"

	"github.com/ip2a/ip2a-ops/internal/fixturetest"
	"github.com/ip2a/ip2a-ops/internal/pgtest"
	"github.com/ip2a/ip2a-ops/internal/readertest"
	"github.com/ip2a/ip2a-ops/pkg/fixture"
)

func day(s string) time.Time {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		panic(err)
	}
	return t
}

func scalar[T any](t testing.TB, pool *pgxpool.Pool, q string, args ...any) T {
	t.Helper()
	var v T
	require.NoError(t, pool.QueryRow(t.Context(), q, args...).Scan(&v), q)
	return v
}

// sheetRows is the number of rows of a sheet, header included.
func sheetRows(t testing.TB, f *excelize.File, sheet string) int {
	t.Helper()
	rows, err := f.GetRows(sheet)
	require.NoError(t, err)
	return len(rows)
}

// TestMembershipReportMatchesSQL writes the membership report on both
// generations and checks its figures against independent SQL.
func TestMembershipReportMatchesSQL(t *testing.T) {
	t.Parallel()
	for _, gen := range []fixture.Generation{fixture.Newer, fixture.Older} {
		t.Run(string(gen), func(t *testing.T) {
			t.Parallel()
			url := fixturetest.NewTestDB(t, gen, fixture.Options{Seed: 3, Now: frozenNow, SoftDeletedPercent: 10})
			pool := pgtest.Pool(t, url)
			asOf, from, to := day("2026-10-31"), day("2026-01-01"), day("2026-10-31")
			// A retirement recorded by the audit trail, and one the trail missed.
			mustExec(t, pool, `INSERT INTO audit_logs (table_name, record_id, action, old_values, new_values, changed_by, changed_at)
				SELECT 'members', id::text, 'UPDATE', '{"status":"ACTIVE"}', '{"status":"RETIRED"}', 'test', '2026-05-05 10:00'
				FROM members WHERE NOT is_deleted ORDER BY id LIMIT 1`)
			mustExec(t, pool, `UPDATE members SET status = 'SUSPENDED', updated_at = '2026-06-06 09:00'
				WHERE id = (SELECT id FROM members WHERE NOT is_deleted AND deleted_at IS NULL AND status = 'ACTIVE' ORDER BY id DESC LIMIT 1)`)
			dir := t.TempDir()
			res, err := MembershipReport(t.Context(), MembershipOptions{Output: Output{Pool: pool, Out: dir, Now: frozenNow, ToolVersion: "test", Format: FormatBoth},
				AsOf: asOf, From: from, To: to})
			require.NoError(t, err)
			require.Len(t, res.Files, 2)
			// The PDF, read back, holds the same figures.
			text := pdfText(t, res.Files[1].Path)
			require.Empty(t, readertest.Overprinted(readertest.Words(t, res.Files[1].Path)), "text printed over text")
			pdfLine := func(label string, n int64) {
				t.Helper()
				require.Regexp(t, `(?m)^\s*`+regexp.QuoteMeta(label)+`\s+`+intText(n)+`\s*$`, text, label)
			}
			f, err := excelize.OpenFile(res.Files[0].Path)
			require.NoError(t, err)
			defer f.Close()
			require.Equal(t, []string{MemberSheetSummary, MemberSheetHeadcount, MemberSheetChanges, MemberSheetEmployers,
				MemberSheetUnemployed, MemberSheetNotes}, f.GetSheetList())
			sv := summaryValues(t, f)

			const roll = `FROM members WHERE is_deleted = false AND deleted_at IS NULL AND coalesce(hire_date, created_at::date) <= $1`
			members := scalar[int64](t, pool, `SELECT count(*) `+roll, asOf)
			require.Positive(t, members)
			require.Equal(t, members, res.Members)
			require.Equal(t, strconv.FormatInt(members, 10), sv["Members"])
			pdfLine("Members", members)
			for _, st := range []string{"ACTIVE", "INACTIVE", "SUSPENDED", "RETIRED", "DECEASED"} {
				n := scalar[int64](t, pool, `SELECT count(*) `+roll+` AND status::text = $2`, asOf, st)
				require.Equal(t, strconv.FormatInt(n, 10), sv[words(st)], st)
				pdfLine(words(st), n)
			}
			for _, c := range []string{"JOURNEYMAN", "FOREMAN", "APPRENTICE_1ST_YEAR"} {
				n := scalar[int64](t, pool, `SELECT count(*) `+roll+` AND classification::text = $2`, asOf, c)
				require.Equal(t, strconv.FormatInt(n, 10), sv[words(c)], c)
			}
			// The Headcount total row is the roll.
			hc, err := f.GetRows(MemberSheetHeadcount, excelizeRawOpts())
			require.NoError(t, err)
			last := hc[len(hc)-1]
			require.Equal(t, "Total", last[0])
			require.Equal(t, strconv.FormatInt(members, 10), last[len(last)-1])

			newMembers := scalar[int64](t, pool, `SELECT count(*) FROM members WHERE NOT is_deleted AND deleted_at IS NULL
				AND coalesce(hire_date, created_at::date) BETWEEN $1 AND $2`, from, to)
			removed := scalar[int64](t, pool, `SELECT count(*) FROM members WHERE deleted_at::date BETWEEN $1 AND $2`, from, to)
			audited := scalar[int64](t, pool, `SELECT count(*) FROM audit_logs WHERE table_name = 'members'
				AND changed_at::date BETWEEN $1 AND $2 AND new_values ? 'status'
				AND coalesce(old_values->>'status', '-') <> new_values->>'status'`, from, to)
			pdfLine("New members", newMembers)
			pdfLine("Removed (soft-deleted)", removed)
			pdfLine("Status changes (audit_logs)", audited)
			require.Equal(t, newMembers, res.NewMembers)
			require.Equal(t, removed, res.Removed)
			require.Equal(t, audited, res.StatusChanges)
			require.GreaterOrEqual(t, res.UnauditedChanges, int64(1), "the unaudited suspension")
			require.Equal(t, "1", sv["  to Retired"], "the audited retirement")
			require.Equal(t, int(1+newMembers+removed+audited+res.UnauditedChanges), sheetRows(t, f, MemberSheetChanges))

			with := scalar[int64](t, pool, `SELECT count(DISTINCT m.id) `+roll[:len("FROM members")]+` m JOIN member_employments e ON e.member_id = m.id
				WHERE NOT m.is_deleted AND m.deleted_at IS NULL AND coalesce(m.hire_date, m.created_at::date) <= $1
				AND e.start_date <= $1 AND coalesce(e.end_date, $1) >= $1`, asOf)
			require.Equal(t, with, res.WithEmployment)
			require.Equal(t, members-with, res.WithoutEmployment)
			require.Equal(t, strconv.FormatInt(with, 10), sv["With current employment"])
			pdfLine("With current employment", with)
			pdfLine("Without current employment", members-with)
			require.Equal(t, int(1+members-with), sheetRows(t, f, MemberSheetUnemployed))
		})
	}
}
