package reports

import (
	"fmt"
	"math"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/xuri/excelize/v2"

	"github.com/ip2a/ip2a-ops/internal/fixturetest"
	"github.com/ip2a/ip2a-ops/internal/pgtest"
	"github.com/ip2a/ip2a-ops/internal/readertest"
	"github.com/ip2a/ip2a-ops/pkg/fixture"
	"github.com/ip2a/ip2a-ops/pkg/reports/xlsx"
)

// multiLineNotes are notes as people type them into the app: Unix and
// Windows line breaks, a lone carriage return, tabs. Each line is unique,
// so its place in print can be checked.
func multiLineNotes(prefix string) []string {
	return []string{
		prefix + "1 first line\n" + prefix + "1 second line\n\t" + prefix + "1 indented third line",
		prefix + "2 first line\r\n" + prefix + "2 second line after CRLF",
		prefix + "3 tab\tseparated\tfirst line\r" + prefix + "3 after a lone CR",
	}
}

// printedLines is what a note must print as: one row per line, with
// runs of spaces (expanded tabs) compared as pdftotext lays them out.
func printedLines(notes []string) []string {
	var out []string
	for _, n := range notes {
		for _, l := range strings.Split(xlsx.Printable(n), "\n") {
			// pdftotext keeps words, not the exact spaces between them:
			// compare the longest run of single-spaced words.
			fields := strings.Split(strings.TrimSpace(l), "  ")
			longest := ""
			for _, f := range fields {
				if len(strings.TrimSpace(f)) > len(longest) {
					longest = strings.TrimSpace(f)
				}
			}
			out = append(out, longest)
		}
	}
	return out
}

// readerWorkbooks writes the workbooks the reader tests open: a newer
// grant whose expenses and enrollments carry multi-line notes and an
// older-schema grant (paths), and the membership and dues reports of the
// newer database (others).
func readerWorkbooks(t *testing.T) (paths, others, notes []string) {
	t.Helper()
	period := GrantOptions{Now: frozenNow, ToolVersion: "test",
		From: time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC), To: time.Date(2026, 9, 30, 0, 0, 0, 0, time.UTC)}
	dir := t.TempDir()

	url := fixturetest.NewTestDB(t, fixture.Newer, fixture.Options{Seed: 1, Now: frozenNow})
	pool := pgtest.Pool(t, url)
	enrNotes, expNotes := multiLineNotes("Enrollment note "), multiLineNotes("Expense note ")
	// The first three live rows of each sheet, in the sheet's order.
	for i, n := range enrNotes {
		mustExec(t, pool, `UPDATE grant_enrollments SET notes = $1 WHERE id = (SELECT ge.id FROM grant_enrollments ge
			LEFT JOIN students s ON s.id = ge.student_id WHERE ge.grant_id = 1 AND NOT ge.is_deleted AND ge.deleted_at IS NULL
			ORDER BY ge.enrollment_date, s.student_number, ge.id OFFSET $2 LIMIT 1)`, n, i*2)
	}
	for i, n := range expNotes {
		mustExec(t, pool, `UPDATE expenses SET notes = $1 WHERE id = (SELECT id FROM expenses WHERE grant_id = 1
			AND NOT is_deleted AND deleted_at IS NULL ORDER BY purchased_at, id OFFSET $2 LIMIT 1)`, n, i*3)
	}
	o := period
	o.Pool, o.Grant, o.Out = pool, "1", dir
	res, err := GrantReport(t.Context(), o)
	require.NoError(t, err)
	paths = append(paths, res.Reports[0].Path)

	mr, err := MembershipReport(t.Context(), MembershipOptions{Output: Output{Pool: pool, Out: dir, Now: frozenNow, ToolVersion: "test"},
		From: day("2026-01-01"), To: day("2026-10-31")})
	require.NoError(t, err)
	dr, err := DuesReport(t.Context(), DuesOptions{Output: Output{Pool: pool, Out: dir, Now: frozenNow, ToolVersion: "test"},
		From: day("2026-01-01"), To: day("2026-12-01")})
	require.NoError(t, err)
	others = []string{mr.Files[0].Path, dr.Files[0].Path}

	url = fixturetest.NewTestDB(t, fixture.Older, fixture.Options{Seed: 1, Now: frozenNow})
	o = period
	o.Pool, o.Grant, o.Out = pgtest.Pool(t, url), "1", filepath.Join(dir, "older.xlsx")
	res, err = GrantReport(t.Context(), o)
	require.NoError(t, err)
	paths = append(paths, res.Reports[0].Path)
	return paths, others, printedLines(append(enrNotes, expNotes...))
}

// TestWorkbooksInReaders opens the workbooks in what their readers use.
// openpyxl's read-only mode must see every row and column of every sheet
// (it trusts the sheet's dimension, which said A1). LibreOffice must print
// every line of a multi-line note on a row of its own, in order, with no
// text over other text; the Targets headers above their numbers; money
// apart from the text beside it; the Outcomes on one page; and the Notes
// sheet at a readable size.
func TestWorkbooksInReaders(t *testing.T) {
	t.Parallel()
	grants, others, noteLines := readerWorkbooks(t)
	paths := append(append([]string{}, grants...), others...)

	t.Run("openpyxl read-only", func(t *testing.T) {
		got := readertest.OpenpyxlReadOnly(t, paths...)
		for _, p := range paths {
			f, err := excelize.OpenFile(p)
			require.NoError(t, err)
			for _, sh := range f.GetSheetList() {
				rows, err := f.GetRows(sh)
				require.NoError(t, err)
				cols := 0
				for _, r := range rows {
					cols = max(cols, len(r))
				}
				require.Equal(t, len(rows), got[p][sh].Rows, "%s: rows of %s", p, sh)
				require.Equal(t, cols, got[p][sh].Cols, "%s: columns of %s", p, sh)
				require.Greater(t, got[p][sh].Rows, 1, "%s: %s", p, sh)
			}
			require.NoError(t, f.Close())
		}
	})

	t.Run("LibreOffice print", func(t *testing.T) {
		pdfs := readertest.ToPDF(t, paths...)
		for i, pdf := range pdfs {
			pages := readertest.Pages(t, pdf)
			words := readertest.Words(t, pdf)
			if i == 0 {
				require.NoError(t, readertest.LinesInOrder(pages, noteLines), "note lines in %s", pdf)
			}
			require.Empty(t, readertest.Overprinted(words), "text printed over text in %s", pdf)
			if i < len(grants) {
				checkPrintedSummary(t, pages, words)
			}
			checkPrintedNotes(t, pages, words)
			runTogether := regexp.MustCompile(`\$[0-9,]+\.[0-9]{2}[A-Za-z]`)
			for p, text := range pages {
				require.Empty(t, runTogether.FindAllString(text, -1), "money run into text on page %d of %s", p+1, pdf)
			}
			// Each summary is one page: its last block prints on the first.
			if i >= len(grants) {
				last := map[int]string{0: "30 years or more", 1: "Approved"}[i-len(grants)]
				require.Contains(t, pages[0], last, "the summary of %s continues past its first page", pdf)
			}
		}
	})
}

// pageWith is the index of the first page whose text contains s, or -1.
func pageWith(pages []string, s string) int {
	for i, p := range pages {
		if strings.Contains(p, s) {
			return i
		}
	}
	return -1
}

// checkPrintedSummary: the Outcomes block and the Targets print on one
// page, and each target's goal, actual and progress end under their
// headers (within a few points: numbers end before the padding the
// number format leaves).
func checkPrintedSummary(t *testing.T, pages []string, words [][]readertest.Word) {
	t.Helper()
	p := pageWith(pages, "Outcomes (to date)")
	require.GreaterOrEqual(t, p, 0)
	require.Contains(t, pages[p], "Credentials earned", "the Outcomes block continues on another page")
	require.Contains(t, pages[p], "Placement", "the Targets continue on another page")

	byText := func(text string, below float64) (readertest.Word, bool) {
		for _, w := range words[p] {
			if w.Text == text && w.YMin > below {
				return w, true
			}
		}
		return readertest.Word{}, false
	}
	goal, ok := byText("Goal", 0)
	require.True(t, ok, "no Goal header on the Summary page")
	// The first row under the headers: its words, left to right.
	var row []readertest.Word
	for _, w := range words[p] {
		if w.YMin > goal.YMax && w.YMin < goal.YMax+goal.Height() && w.XMin > goal.XMin-200 {
			row = append(row, w)
		}
	}
	require.NotEmpty(t, row)
	// Every figure (or "no target") ends under a header.
	var heads []readertest.Word
	for _, h := range []string{"Goal", "Actual", "Progress"} {
		hw, ok := byText(h, goal.YMin-1)
		require.True(t, ok, h)
		heads = append(heads, hw)
	}
	for i, w := range row {
		if i+1 < len(row) && row[i+1].XMin-w.XMax < 5 {
			continue // a word of a phrase: its last word ends the cell
		}
		best := math.Inf(1)
		for _, hw := range heads {
			best = min(best, math.Abs(w.XMax-hw.XMax))
		}
		require.Less(t, best, 10.0, "%q (right edge %.0f) does not end under a header: %v", w.Text, w.XMax, heads)
	}
}

// checkPrintedNotes: the Notes sheet prints at a readable size (the
// 11-point font scaled to no less than 7 points), not shrunk to the width
// of its longest note.
func checkPrintedNotes(t *testing.T, pages []string, words [][]readertest.Word) {
	t.Helper()
	p := pageWith(pages, "REPEATABLE READ READ ONLY")
	require.GreaterOrEqual(t, p, 0)
	var heights []float64
	for _, w := range words[p] {
		heights = append(heights, w.Height())
	}
	require.NotEmpty(t, heights)
	sort.Float64s(heights)
	median := heights[len(heights)/2]
	require.GreaterOrEqual(t, median, 7.0, fmt.Sprintf("Notes page %d prints at %.1f points", p+1, median))
}
