package reports

import (
	"context"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"github.com/xuri/excelize/v2"

	"github.com/ip2a/ip2a-ops/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// frozenNow is the test clock: the fixture's data is relative to it too.
var frozenNow = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func mustExec(t testing.TB, pool *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	_, err := pool.Exec(context.Background(), sql, args...)
	require.NoError(t, err, sql)
}

// cellDump is what a test sees of one cell: type, number format, bold, value.
type cellDump struct {
	typ, format string
	bold        bool
	value       string
}

func (c cellDump) String() string {
	b := ""
	if c.bold {
		b = "bold"
	}
	return fmt.Sprintf("%s\t%s\t%s\t%s", c.typ, c.format, b, strconv.Quote(c.value))
}

// workbookDump is every cell of every sheet keyed "Sheet!A1", plus one
// "Sheet#layout" entry per sheet with its frozen pane, filter, print setup
// and column widths, and "#props" with the document properties.
type workbookDump map[string]string

// reopen opens a generated workbook the way a reader would, checks its
// sheets are the expected ones in order, and dumps every cell. It fails the
// test if the file does not open or a sheet does not read back.
func reopen(t testing.TB, path string) (*excelize.File, workbookDump) {
	t.Helper()
	f, err := excelize.OpenFile(path)
	require.NoError(t, err, "reopen %s", path)
	t.Cleanup(func() { _ = f.Close() })
	require.Equal(t, []string{SheetSummary, SheetPeriod, SheetEnrollment, SheetExpenses, SheetCategories, SheetNotes}, f.GetSheetList())
	d := workbookDump{}
	styleCache := map[int]cellDump{}
	for _, sh := range f.GetSheetList() {
		rows, err := f.GetRows(sh, excelize.Options{RawCellValue: true})
		require.NoError(t, err, sh)
		for r, row := range rows {
			for c, v := range row {
				ref, _ := excelize.CoordinatesToCellName(c+1, r+1)
				typ, err := f.GetCellType(sh, ref)
				require.NoError(t, err)
				sid, err := f.GetCellStyle(sh, ref)
				require.NoError(t, err)
				if v == "" {
					continue // empty, whatever its column's style
				}
				st, ok := styleCache[sid]
				if !ok {
					s, err := f.GetStyle(sid)
					require.NoError(t, err)
					st.format = fmt.Sprint(s.NumFmt)
					if s.CustomNumFmt != nil {
						st.format = *s.CustomNumFmt
					}
					st.bold = s.Font != nil && s.Font.Bold
					styleCache[sid] = st
				}
				d[sh+"!"+ref] = cellDump{typ: cellTypeName(typ), format: st.format, bold: st.bold, value: v}.String()
			}
		}
		d[sh+"#layout"] = layoutOf(t, f, sh)
	}
	p, err := f.GetDocProps()
	require.NoError(t, err)
	d["#props"] = fmt.Sprintf("title=%q subject=%q creator=%q description=%q keywords=%q version=%q created=%q",
		p.Title, p.Subject, p.Creator, p.Description, p.Keywords, p.Version, p.Created)
	return f, d
}

func cellTypeName(t excelize.CellType) string {
	switch t {
	case excelize.CellTypeNumber, excelize.CellTypeUnset:
		return "n"
	case excelize.CellTypeInlineString, excelize.CellTypeSharedString:
		return "s"
	case excelize.CellTypeBool:
		return "b"
	case excelize.CellTypeDate:
		return "d"
	}
	return fmt.Sprint(int(t))
}

func layoutOf(t testing.TB, f *excelize.File, sh string) string {
	t.Helper()
	panes, err := f.GetPanes(sh)
	require.NoError(t, err)
	pl, err := f.GetPageLayout(sh)
	require.NoError(t, err)
	props, err := f.GetSheetProps(sh)
	require.NoError(t, err)
	var widths []string
	for c := 1; c <= 15; c++ {
		name, _ := excelize.ColumnNumberToName(c)
		w, err := f.GetColWidth(sh, name)
		require.NoError(t, err)
		widths = append(widths, strconv.FormatFloat(w, 'f', 2, 64))
	}
	filter, titles := "", ""
	for _, dn := range f.GetDefinedName() {
		if dn.Scope != sh {
			continue
		}
		switch dn.Name {
		case "_xlnm._FilterDatabase":
			filter = dn.RefersTo
		case "_xlnm.Print_Titles":
			titles = dn.RefersTo
		}
	}
	str := func(p *string) string {
		if p == nil {
			return ""
		}
		return *p
	}
	num := func(p *int) string {
		if p == nil {
			return ""
		}
		return fmt.Sprint(*p)
	}
	fit := props.FitToPage != nil && *props.FitToPage
	dim, err := f.GetSheetDimension(sh)
	require.NoError(t, err)
	return fmt.Sprintf("dimension=%s freeze=%v split=%d/%s filter=%s titles=%s orientation=%s fitToWidth=%s fitToHeight=%s fitToPage=%v widths=%s",
		dim, panes.Freeze, panes.YSplit, panes.TopLeftCell, filter, titles, str(pl.Orientation), num(pl.FitToWidth), num(pl.FitToHeight), fit,
		strings.Join(widths, ","))
}

// diffDumps lists, per key, what is missing from got, extra in got, and
// different, so a failing golden test says which cells changed.
func diffDumps(want, got workbookDump) []string {
	var out []string
	keys := map[string]bool{}
	for k := range want {
		keys[k] = true
	}
	for k := range got {
		keys[k] = true
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	for _, k := range sorted {
		w, inW := want[k]
		g, inG := got[k]
		switch {
		case !inG:
			out = append(out, fmt.Sprintf("missing %s: want %s", k, w))
		case !inW:
			out = append(out, fmt.Sprintf("extra   %s: got  %s", k, g))
		case w != g:
			out = append(out, fmt.Sprintf("differs %s:\n    want %s\n    got  %s", k, w, g))
		}
	}
	return out
}

func (d workbookDump) encode() string {
	keys := make([]string, 0, len(d))
	for k := range d {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s\t%s\n", k, d[k])
	}
	return b.String()
}

func decodeDump(t testing.TB, s string) workbookDump {
	t.Helper()
	d := workbookDump{}
	for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		k, v, ok := strings.Cut(line, "\t")
		require.True(t, ok, "bad golden line %q", line)
		d[k] = v
	}
	return d
}

// summaryValues maps each Summary label (column A) to the raw value in B.
func summaryValues(t testing.TB, f *excelize.File) map[string]string {
	t.Helper()
	rows, err := f.GetRows(SheetSummary, excelize.Options{RawCellValue: true})
	require.NoError(t, err)
	out := map[string]string{}
	for _, r := range rows {
		if len(r) >= 2 && r[0] != "" {
			out[r[0]] = r[1]
		}
	}
	return out
}

// cents parses a cell's raw number ("1234.56", "-0.5", "12") exactly.
func cents(t testing.TB, raw string) int64 {
	t.Helper()
	r, ok := new(big.Rat).SetString(raw)
	require.True(t, ok, "not a number: %q", raw)
	r.Mul(r, big.NewRat(100, 1))
	require.True(t, r.IsInt(), "%q has more than two decimals", raw)
	return r.Num().Int64()
}

// columnCents sums a money column of a sheet exactly, skipping the header,
// and counts the data rows.
func columnCents(t testing.TB, f *excelize.File, sheet string, col int) (sum int64, n int) {
	t.Helper()
	rows, err := f.Rows(sheet)
	require.NoError(t, err)
	defer rows.Close()
	first := true
	for rows.Next() {
		r, err := rows.Columns(excelize.Options{RawCellValue: true})
		require.NoError(t, err)
		if first {
			first = false
			continue
		}
		n++
		if len(r) > col && r[col] != "" {
			sum += cents(t, r[col])
		}
	}
	return sum, n
}

func tempFiles(t testing.TB, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, ".report_*"))
	require.NoError(t, err)
	return m
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func excelizeRawOpts() excelize.Options { return excelize.Options{RawCellValue: true} }

// utf16Units is the length of s as Excel counts it.
func utf16Units(s string) int { return len(utf16.Encode([]rune(s))) }
