package reports

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/internal/fixturetest"
	"github.com/ip2a/ip2a-ops/internal/pgtest"
	"github.com/ip2a/ip2a-ops/internal/readertest"
	"github.com/ip2a/ip2a-ops/pkg/fixture"
)

// pdfText is a PDF's text laid out by pdftotext, pages joined.
func pdfText(t *testing.T, path string) string {
	t.Helper()
	return strings.Join(readertest.Pages(t, path), "\n")
}

// TestGrantPDFMatchesSQL writes a grant's PDF (a name in three scripts,
// an out-of-policy category) and reads it back with pdftotext: every
// figure is compared with independent SQL, and nothing prints over
// anything else.
func TestGrantPDFMatchesSQL(t *testing.T) {
	t.Parallel()
	readertest.Require(t, "pdftotext", "poppler-utils")
	url := fixturetest.NewTestDB(t, fixture.Newer, fixture.Options{Seed: 1, Now: frozenNow})
	pool := pgtest.Pool(t, url)
	const name = "Грант «Север» 北 Nguyễn"
	mustExec(t, pool, `UPDATE grants SET name = $1, allowable_categories = '["tuition", "stipends"]' WHERE id = 1`, name)
	dir := t.TempDir()
	res, err := GrantReport(t.Context(), GrantOptions{Pool: pool, Grant: "1", Out: dir, Now: frozenNow, Format: FormatBoth,
		From: time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC), To: time.Date(2026, 9, 30, 0, 0, 0, 0, time.UTC)})
	require.NoError(t, err)
	files := res.Reports[0].Files
	require.Len(t, files, 2)
	require.Equal(t, "pdf", files[1].Format)
	require.Equal(t, filepath.Join(dir, "grant_report_G-2026-001_2026-07-01_2026-09-30.pdf"), files[1].Path)
	st, err := os.Stat(files[1].Path)
	require.NoError(t, err)
	require.Equal(t, st.Size(), files[1].Bytes)
	text := pdfText(t, files[1].Path)
	require.Contains(t, text, "Grant report: "+name, "the name prints in every script")

	line := func(label, value string) {
		t.Helper()
		require.Regexp(t, `(?m)^\s*`+regexp.QuoteMeta(label)+`\s+`+regexp.QuoteMeta(value)+`\s*$`, text, "%s should read %s", label, value)
	}
	var budget, spent, inPeriod, outside, enrolled, n int64
	require.NoError(t, pool.QueryRow(t.Context(), `SELECT (g.total_amount*100)::bigint,
		(SELECT (sum(total_price)*100)::bigint FROM expenses WHERE grant_id = 1 AND is_deleted = false AND deleted_at IS NULL),
		(SELECT (sum(total_price)*100)::bigint FROM expenses WHERE grant_id = 1 AND is_deleted = false AND deleted_at IS NULL
			AND purchased_at BETWEEN '2026-07-01' AND '2026-09-30'),
		(SELECT coalesce((sum(total_price)*100)::bigint, 0) FROM expenses WHERE grant_id = 1 AND is_deleted = false AND deleted_at IS NULL
			AND (category IS NULL OR lower(category) NOT IN ('tuition', 'stipends'))),
		(SELECT count(*) FROM grant_enrollments WHERE grant_id = 1 AND is_deleted = false AND deleted_at IS NULL),
		(SELECT count(*) FROM expenses WHERE grant_id = 1 AND is_deleted = false AND deleted_at IS NULL)
		FROM grants g WHERE g.id = 1`).Scan(&budget, &spent, &inPeriod, &outside, &enrolled, &n))
	require.Positive(t, outside)
	line("Budget", formatCents(budget))
	line("Spent (to date)", formatCents(spent))
	line("Remaining", formatCents(budget-spent))
	line("Spent in the period", formatCents(inPeriod))
	line("Spent out of policy", formatCents(outside))
	line("Enrolled", intText(enrolled))
	line("Expenses (to date)", intText(n))

	// Each category's spend in the table, and each month's in the chart.
	rows, err := pool.Query(t.Context(), `SELECT coalesce(category, '(no category)'), count(*), (sum(total_price)*100)::bigint FROM expenses
		WHERE grant_id = 1 AND is_deleted = false AND deleted_at IS NULL GROUP BY 1`)
	require.NoError(t, err)
	for rows.Next() {
		var cat string
		var count, cents int64
		require.NoError(t, rows.Scan(&cat, &count, &cents))
		allowed := "OUT OF POLICY"
		if cat == "tuition" || cat == "stipends" {
			allowed = "yes"
		}
		require.Regexp(t, `(?m)^\s*`+regexp.QuoteMeta(cat)+`\s+`+allowed+`\s+`+intText(count)+`\s+`+regexp.QuoteMeta(formatCents(cents)), text, cat)
	}
	require.NoError(t, rows.Err())
	rows, err = pool.Query(t.Context(), `SELECT to_char(purchased_at, 'YYYY-MM'), (sum(total_price)*100)::bigint FROM expenses
		WHERE grant_id = 1 AND is_deleted = false AND deleted_at IS NULL GROUP BY 1`)
	require.NoError(t, err)
	months := 0
	for rows.Next() {
		var m string
		var cents int64
		require.NoError(t, rows.Scan(&m, &cents))
		require.Regexp(t, `(?m)^\s*`+m+`\s+`+regexp.QuoteMeta(formatCents(cents))+`\s*$`, text, m)
		months++
	}
	require.NoError(t, rows.Err())
	require.Greater(t, months, 2)
	// The out-of-policy expenses are listed, with their total.
	require.Regexp(t, `(?m)^\s*Total\s+`+regexp.QuoteMeta(formatCents(outside))+`\s*$`, text)
	require.Empty(t, readertest.Overprinted(readertest.Words(t, files[1].Path)))
}
