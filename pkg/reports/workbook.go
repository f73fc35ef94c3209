package reports

import (
	"archive/zip"
	"context"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/klauspost/compress/flate"
	"github.com/xuri/excelize/v2"
)

// fastZip is the workbook's zip writer with a fast deflate level: at the
// default level, compressing the sheets' XML was a third of a big report's
// CPU time, for a file only somewhat smaller.
func fastZip(w io.Writer) excelize.ZipWriter {
	z := zip.NewWriter(w)
	z.RegisterCompressor(zip.Deflate, func(out io.Writer) (io.WriteCloser, error) {
		return flate.NewWriter(out, flate.BestSpeed)
	})
	return z
}

// Sheet names, in workbook order.
const (
	SheetSummary    = "Summary"
	SheetPeriod     = "Period"
	SheetEnrollment = "Enrollments"
	SheetExpenses   = "Expenses"
	SheetCategories = "Expenses by category"
	SheetNotes      = "Notes"
)

// Number formats. Money is a currency with two decimals (negative in red),
// never text; dates are real dates. Every number format ends in "_)", the
// accounting convention that pads a right-aligned number by the width of a
// ")" so it never runs into left-aligned text in the next column
// ("$22,937.20ACH" in print).
const (
	fmtMoney    = `"$"#,##0.00_);[Red]-"$"#,##0.00_)`
	fmtDate     = `yyyy-mm-dd_)`
	fmtDateTime = `yyyy-mm-dd hh:mm:ss_)`
	fmtPercent  = `0.00%_)`
	fmtInt      = `#,##0_)`
)

// fontName is the workbook's font: Arial is on every machine that runs
// Excel, and LibreOffice prints it with Liberation Sans, which has the same
// metrics, so the row heights computed for wrapped text hold in both
// (Calibri, excelize's default, is replaced by a wider font where it is
// missing, and wrapped lines were cut off).
const (
	fontName = "Arial"
	fontSize = 11
)

type styles struct {
	header, headerNum, title, section, bold, boldNum, right, text, date, dateTime, money, moneyBold, percent, percentBold,
	integer, intBold, flag int
}

func newStyles(f *excelize.File) (styles, error) {
	var st styles
	money, date, dateTime, percent, integer := fmtMoney, fmtDate, fmtDateTime, fmtPercent, fmtInt
	// Every font names its family and size: a font without them prints in
	// whatever the reader picks.
	bold := &excelize.Font{Bold: true, Family: fontName, Size: fontSize}
	fill := excelize.Fill{Type: "pattern", Pattern: 1, Color: []string{"D9E1F2"}}
	under := []excelize.Border{{Type: "bottom", Color: "000000", Style: 1}}
	// Table cells sit at the top of rows raised for wrapped text; text
	// wraps at the column's width and at its line breaks.
	top := &excelize.Alignment{Vertical: "top"}
	right := &excelize.Alignment{Horizontal: "right", Vertical: "top", WrapText: true}
	defs := []struct {
		id *int
		s  excelize.Style
	}{
		{&st.header, excelize.Style{Font: bold, Fill: fill, Border: under, Alignment: &excelize.Alignment{Vertical: "top", WrapText: true}}},
		{&st.headerNum, excelize.Style{Font: bold, Fill: fill, Border: under, Alignment: right}},
		{&st.title, excelize.Style{Font: &excelize.Font{Bold: true, Family: fontName, Size: 14}}},
		{&st.section, excelize.Style{Font: bold, Fill: fill}},
		{&st.bold, excelize.Style{Font: bold}},
		{&st.boldNum, excelize.Style{Font: bold, Alignment: right}},
		{&st.right, excelize.Style{Alignment: right}},
		{&st.text, excelize.Style{Alignment: &excelize.Alignment{Vertical: "top", WrapText: true}}},
		{&st.date, excelize.Style{CustomNumFmt: &date, Alignment: top}},
		{&st.dateTime, excelize.Style{CustomNumFmt: &dateTime, Alignment: top}},
		{&st.money, excelize.Style{CustomNumFmt: &money, Alignment: top}},
		{&st.moneyBold, excelize.Style{CustomNumFmt: &money, Font: bold, Alignment: top}},
		{&st.percent, excelize.Style{CustomNumFmt: &percent, Alignment: top}},
		{&st.percentBold, excelize.Style{CustomNumFmt: &percent, Font: bold, Alignment: top}},
		{&st.integer, excelize.Style{CustomNumFmt: &integer, Alignment: top}},
		{&st.intBold, excelize.Style{CustomNumFmt: &integer, Font: bold, Alignment: top}},
		{&st.flag, excelize.Style{Font: &excelize.Font{Bold: true, Family: fontName, Size: fontSize, Color: "9C0006"}, Alignment: top,
			Fill: excelize.Fill{Type: "pattern", Pattern: 1, Color: []string{"FFC7CE"}}}},
	}
	for _, d := range defs {
		id, err := f.NewStyle(&d.s)
		if err != nil {
			return st, fmt.Errorf("define styles: %w", err)
		}
		*d.id = id
	}
	return st, nil
}

// wb is one workbook being written.
type wb struct {
	f  *excelize.File
	st styles
	s  *snapshot
}

// buildWorkbook writes every sheet and the document properties to w. The
// two big sheets stream their rows from tx, so memory does not grow with
// the grant's size.
func buildWorkbook(ctx context.Context, tx pgx.Tx, s *snapshot, w io.Writer) error {
	f := excelize.NewFile(excelize.Options{TmpDir: s.o.TmpDir})
	defer f.Close()
	f.SetZipWriter(fastZip)
	if err := f.SetDefaultFont(fontName); err != nil {
		return fmt.Errorf("create workbook: %w", err)
	}
	if err := f.SetSheetName("Sheet1", SheetSummary); err != nil {
		return fmt.Errorf("create workbook: %w", err)
	}
	for _, n := range []string{SheetPeriod, SheetEnrollment, SheetExpenses, SheetCategories, SheetNotes} {
		if _, err := f.NewSheet(n); err != nil {
			return fmt.Errorf("create workbook: %w", err)
		}
	}
	st, err := newStyles(f)
	if err != nil {
		return err
	}
	b := &wb{f: f, st: st, s: s}
	// Detail sheets first: they can add notes (truncated cells).
	steps := []struct {
		name string
		fn   func() error
	}{
		{SheetEnrollment, func() error { return b.enrollments(ctx, tx) }},
		{SheetExpenses, func() error { return b.expenses(ctx, tx) }},
		{SheetCategories, b.categories},
		{SheetPeriod, b.period},
		{SheetSummary, b.summary},
		{SheetNotes, b.notes},
		{"document properties", b.properties},
	}
	for _, step := range steps {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := step.fn(); err != nil {
			return fmt.Errorf("write %s: %w", step.name, err)
		}
	}
	f.SetActiveSheet(0)
	if _, err := f.WriteTo(w); err != nil {
		return fmt.Errorf("write workbook: %w", err)
	}
	return nil
}

// text fits a string into a cell, remembering where it had to cut.
// Line breaks and tabs are made printable first (see printable).
func (b *wb) text(sheet string, col, row int, v string) string {
	t, cut := cellText(printable(v))
	if cut {
		ref, _ := excelize.CoordinatesToCellName(col, row)
		b.s.truncated = append(b.s.truncated, fmt.Sprintf("'%s'!%s", sheet, ref))
	}
	return t
}

// table writes one table sheet: a bold header row that stays frozen, filter
// buttons over the data, the given column widths, landscape printing fitted
// to one page wide with the header repeated on every page. Text wraps at
// the column width and at line breaks, and each row is raised to the lines
// it needs: readers that print (LibreOffice) do not raise rows themselves.
type table struct {
	b       *wb
	name    string
	sw      *excelize.StreamWriter
	cols    int
	widths  []float64
	row     int
	lastRow int // last row the filter covers (0: every row written)
	buf     []any
}

// column is one column of a table: numeric columns have their header
// aligned right, above the numbers.
type column struct {
	header  string
	width   float64
	numeric bool
}

// newTable starts a table sheet of rows rows in all (header and total
// included): the sheet's dimension is written before its rows, and readers
// that stream a sheet (openpyxl's read-only mode) read only that range.
func (b *wb) newTable(name string, cols []column, rows int) (*table, error) {
	f := b.f
	land, one, zero, fit := "landscape", 1, 0, true
	if err := f.SetPageLayout(name, &excelize.PageLayoutOptions{Orientation: &land, FitToWidth: &one, FitToHeight: &zero}); err != nil {
		return nil, err
	}
	// SheetPr and the dimension are written when the stream starts, so they go first.
	if err := f.SetSheetProps(name, &excelize.SheetPropsOptions{FitToPage: &fit}); err != nil {
		return nil, err
	}
	lastCol, _ := excelize.ColumnNumberToName(len(cols))
	if err := f.SetSheetDimension(name, fmt.Sprintf("A1:%s%d", lastCol, max(rows, 1))); err != nil {
		return nil, err
	}
	sw, err := f.NewStreamWriter(name)
	if err != nil {
		return nil, err
	}
	t := &table{b: b, name: name, sw: sw, cols: len(cols), buf: make([]any, len(cols)), widths: make([]float64, len(cols))}
	hdr := make([]any, len(cols))
	for i, c := range cols {
		t.widths[i] = c.width
		if err := sw.SetColWidth(i+1, i+1, c.width); err != nil {
			return nil, err
		}
		style := b.st.header
		if c.numeric {
			style = b.st.headerNum
		}
		hdr[i] = excelize.Cell{StyleID: style, Value: c.header}
	}
	if err := sw.SetPanes(&excelize.Panes{Freeze: true, YSplit: 1, TopLeftCell: "A2", ActivePane: "bottomLeft",
		Selection: []excelize.Selection{{SQRef: "A2", ActiveCell: "A2", Pane: "bottomLeft"}}}); err != nil {
		return nil, err
	}
	if err := t.add(hdr); err != nil {
		return nil, err
	}
	if err := f.SetDefinedName(&excelize.DefinedName{Name: "_xlnm.Print_Titles", RefersTo: fmt.Sprintf("'%s'!$1:$1", name), Scope: name}); err != nil {
		return nil, err
	}
	return t, nil
}

// add writes the next row. Plain strings become wrapped text cells; the
// row is raised when its text needs more than one line.
func (t *table) add(values []any) error {
	t.row++
	lines := 1
	for i, v := range values {
		switch x := v.(type) {
		case string:
			values[i] = excelize.Cell{StyleID: t.b.st.text, Value: x}
			lines = max(lines, wrappedLines(x, t.widths[i]))
		case excelize.Cell:
			if s, ok := x.Value.(string); ok {
				lines = max(lines, wrappedLines(s, t.widths[i]))
			}
		}
	}
	cell, _ := excelize.CoordinatesToCellName(1, t.row)
	if lines > 1 {
		return t.sw.SetRow(cell, values, excelize.RowOpts{Height: rowHeight(lines)})
	}
	return t.sw.SetRow(cell, values)
}

// skip leaves a blank row (before a total that the filter must not sort).
func (t *table) skip() { t.row++ }

// close adds the filter buttons (they belong to the worksheet written at
// Flush, so they can follow the rows) and ends the stream.
func (t *table) close() error {
	last := t.lastRow
	if last == 0 {
		last = t.row
	}
	lastCol, _ := excelize.ColumnNumberToName(t.cols)
	if err := t.b.f.AutoFilter(t.name, fmt.Sprintf("A1:%s%d", lastCol, max(last, 1)), nil); err != nil {
		return err
	}
	return t.sw.Flush()
}

// cell helpers: nil leaves the cell empty.
func (b *wb) dateCell(t *time.Time) any {
	if t == nil {
		return nil
	}
	return excelize.Cell{StyleID: b.st.date, Value: dateValue(*t)}
}

// excelEpoch is day 0 of Excel's 1900 date system for dates from 1900-03-01
// on (Excel counts a 1900-02-29 that never was).
var excelEpoch = time.Date(1899, 12, 30, 0, 0, 0, 0, time.UTC)

// dateValue is a calendar date as the serial day number a date cell holds,
// computed here because it is the same number excelize would write and
// converting a time.Time per cell was a tenth of the run on big sheets.
// Dates before 1900-03-01 are left to excelize.
func dateValue(t time.Time) any {
	y, m, d := t.Date()
	day := time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
	if day.Year() < 1900 || (day.Year() == 1900 && day.Month() < time.March) {
		return t
	}
	return int64(day.Sub(excelEpoch).Hours()) / 24
}

func (b *wb) moneyCell(c *int64) any {
	if c == nil {
		return nil
	}
	return excelize.Cell{StyleID: b.st.money, Value: money(*c)}
}

func (b *wb) strCell(sheet string, col, row int, v *string) any {
	if v == nil {
		return nil
	}
	return b.text(sheet, col, row, *v)
}

// columnsOf fits columns to rows held in memory (the small sheets): a
// column is numeric when any of its cells holds a number or a date.
func columnsOf(headers []string, rows [][]any, minW float64) []column {
	cols := make([]column, len(headers))
	chars := make([]int, len(headers))
	for i, h := range headers {
		cols[i].header = h
		chars[i] = textWidth(h)
	}
	for _, r := range rows {
		for i, v := range r {
			if c, ok := v.(excelize.Cell); ok {
				v = c.Value
			}
			n := 0
			switch x := v.(type) {
			case string:
				n = textWidth(x)
			case float64:
				n = len(formatCents(int64(x*100))) + 1
				cols[i].numeric = true
			case int64, int, int32:
				n = len(fmt.Sprint(x)) + len(fmt.Sprint(x))/3
				cols[i].numeric = true
			case time.Time:
				n = 10
				cols[i].numeric = true
			}
			chars[i] = max(chars[i], n)
		}
	}
	for i, c := range chars {
		cols[i].width = colWidth(c, minW)
	}
	return cols
}

// writeRows streams rows held in memory into a new table sheet.
func (b *wb) writeRows(name string, headers []string, rows [][]any, total []any) error {
	all := rows
	if total != nil {
		all = append(append([][]any{}, rows...), total)
	}
	return b.writeTable(name, columnsOf(headers, all, 10), rows, total)
}

// writeTable streams rows held in memory into a new table sheet with the
// given columns; a total row follows a blank row, outside the filter.
func (b *wb) writeTable(name string, cols []column, rows [][]any, total []any) error {
	n := 1 + len(rows)
	if total != nil {
		n += 2
	}
	t, err := b.newTable(name, cols, n)
	if err != nil {
		return err
	}
	for _, r := range rows {
		if err := t.add(r); err != nil {
			return err
		}
	}
	if total != nil {
		t.lastRow = t.row
		t.skip()
		if err := t.add(total); err != nil {
			return err
		}
	}
	return t.close()
}

func (b *wb) properties() error {
	s := b.s
	g := s.grant
	period := s.from.Format(time.DateOnly) + " to " + s.to.Format(time.DateOnly)
	gen := s.o.Now.UTC().Format(time.RFC3339)
	err := b.f.SetDocProps(&excelize.DocProperties{
		Title:          fmt.Sprintf("Grant report: %s (%s)", g.name, g.number),
		Subject:        fmt.Sprintf("Grant %s, reporting period %s", g.number, period),
		Creator:        "ip2a-ops",
		LastModifiedBy: "ip2a-ops",
		Description:    fmt.Sprintf("Reporting period %s; generated by ip2a-ops %s from a snapshot taken at %s.", period, s.o.ToolVersion, s.snapshotAt.UTC().Format(time.RFC3339)),
		Keywords:       fmt.Sprintf("grant report; %s; %s", g.number, period),
		Category:       "Grant report",
		Version:        s.o.ToolVersion,
		Created:        gen,
		Modified:       gen,
		Language:       "en-US",
	})
	if err != nil {
		return err
	}
	for _, p := range []excelize.CustomProperty{
		{Name: "Reporting period", Value: period},
		{Name: "Period start", Value: s.from.Format(time.DateOnly)},
		{Name: "Period end", Value: s.to.Format(time.DateOnly)},
		{Name: "Grant number", Value: g.number},
		{Name: "Tool version", Value: "ip2a-ops " + s.o.ToolVersion},
	} {
		if err := b.f.SetCustomProps(p); err != nil {
			return err
		}
	}
	return nil
}
