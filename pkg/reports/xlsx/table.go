package xlsx

import (
	"fmt"
	"strconv"
	"time"

	"github.com/xuri/excelize/v2"
)

// Table writes one table sheet: a bold header row that stays frozen, filter
// buttons over the data, the given column widths, landscape printing fitted
// to one page wide with the header repeated on every page. Text wraps at
// the column width and at line breaks, and each row is raised to the lines
// it needs: readers that print (LibreOffice) do not raise rows themselves.
type Table struct {
	b      *Book
	name   string
	sw     *excelize.StreamWriter
	widths []float64
	row    int
	// FilterEnd is the last row the filter covers (0: every row written).
	FilterEnd int
	// Buf is a row buffer as wide as the table, for callers to reuse.
	Buf []any
}

// Column is one column of a table: numeric columns have their header
// aligned right, above the numbers.
type Column struct {
	Header  string
	Width   float64
	Numeric bool
}

// NewTable starts a table sheet of rows rows in all (header and total
// included): the sheet's dimension is written before its rows, and readers
// that stream a sheet (openpyxl's read-only mode) read only that range.
func (b *Book) NewTable(name string, cols []Column, rows int) (*Table, error) {
	f := b.F
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
	t := &Table{b: b, name: name, sw: sw, Buf: make([]any, len(cols)), widths: make([]float64, len(cols))}
	hdr := make([]any, len(cols))
	for i, c := range cols {
		t.widths[i] = c.Width
		if err := sw.SetColWidth(i+1, i+1, c.Width); err != nil {
			return nil, err
		}
		style := b.St.Header
		if c.Numeric {
			style = b.St.HeaderNum
		} else if err := sw.SetColStyle(i+1, i+1, b.St.Text); err != nil {
			// Text columns wrap: a plain string written to them takes the
			// column's style, so no cell needs a style of its own.
			return nil, err
		}
		hdr[i] = excelize.Cell{StyleID: style, Value: c.Header}
	}
	if err := sw.SetPanes(&excelize.Panes{Freeze: true, YSplit: 1, TopLeftCell: "A2", ActivePane: "bottomLeft",
		Selection: []excelize.Selection{{SQRef: "A2", ActiveCell: "A2", Pane: "bottomLeft"}}}); err != nil {
		return nil, err
	}
	if err := t.Add(hdr); err != nil {
		return nil, err
	}
	if err := f.SetDefinedName(&excelize.DefinedName{Name: "_xlnm.Print_Titles", RefersTo: fmt.Sprintf("'%s'!$1:$1", name), Scope: name}); err != nil {
		return nil, err
	}
	return t, nil
}

// Row is the number of the last row written (the header is row 1).
func (t *Table) Row() int { return t.row }

// Add writes the next row. Plain strings take their column's wrapped text
// style; the row is raised when its text needs more than one line.
func (t *Table) Add(values []any) error {
	t.row++
	lines := 1
	for i, v := range values {
		switch x := v.(type) {
		case string:
			lines = max(lines, WrappedLines(x, t.widths[i]))
		case excelize.Cell:
			if s, ok := x.Value.(string); ok {
				lines = max(lines, WrappedLines(s, t.widths[i]))
			}
		}
	}
	cell, _ := excelize.CoordinatesToCellName(1, t.row)
	if lines > 1 {
		return t.sw.SetRow(cell, values, excelize.RowOpts{Height: RowHeight(lines)})
	}
	return t.sw.SetRow(cell, values)
}

// Skip leaves a blank row (before a total that the filter must not sort).
func (t *Table) Skip() { t.row++ }

// Close adds the filter buttons (they belong to the worksheet written at
// Flush, so they can follow the rows) and ends the stream.
func (t *Table) Close() error {
	last := t.FilterEnd
	if last == 0 {
		last = t.row
	}
	lastCol, _ := excelize.ColumnNumberToName(len(t.widths))
	if err := t.b.F.AutoFilter(t.name, fmt.Sprintf("A1:%s%d", lastCol, max(last, 1)), nil); err != nil {
		return err
	}
	return t.sw.Flush()
}

// ColumnsOf fits columns to rows held in memory (the small sheets): a
// column is numeric when any of its cells holds a number or a date.
func ColumnsOf(headers []string, rows [][]any, minW float64) []Column {
	cols := make([]Column, len(headers))
	chars := make([]int, len(headers))
	for i, h := range headers {
		cols[i].Header = h
		chars[i] = TextWidth(h)
	}
	for _, r := range rows {
		for i, v := range r {
			if c, ok := v.(excelize.Cell); ok {
				v = c.Value
			}
			n := 0
			switch x := v.(type) {
			case string:
				n = TextWidth(x)
			case float64:
				n = moneyChars(int64(x*100)) + 1
				cols[i].Numeric = true
			case int64, int, int32:
				s := fmt.Sprint(x)
				n = len(s) + len(s)/3
				cols[i].Numeric = true
			case time.Time:
				n = 10
				cols[i].Numeric = true
			}
			chars[i] = max(chars[i], n)
		}
	}
	for i, c := range chars {
		cols[i].Width = ColWidth(c, minW)
	}
	return cols
}

// moneyChars is the length of cents written as $1,234.56.
func moneyChars(c int64) int {
	neg := 0
	if c < 0 {
		c, neg = -c, 1
	}
	whole := len(strconv.FormatInt(c/100, 10))
	return neg + 1 + whole + (whole-1)/3 + 3
}

// WriteRows streams rows held in memory into a new table sheet, its
// columns fitted to them (ColumnsOf).
func (b *Book) WriteRows(name string, headers []string, rows [][]any, total []any) error {
	all := rows
	if total != nil {
		all = append(append([][]any{}, rows...), total)
	}
	return b.WriteTable(name, ColumnsOf(headers, all, 10), rows, total)
}

// WriteTable streams rows held in memory into a new table sheet with the
// given columns; a total row (nil: none) follows a blank row, outside the
// filter.
func (b *Book) WriteTable(name string, cols []Column, rows [][]any, total []any) error {
	n := 1 + len(rows)
	if total != nil {
		n += 2
	}
	t, err := b.NewTable(name, cols, n)
	if err != nil {
		return err
	}
	for _, r := range rows {
		if err := t.Add(r); err != nil {
			return err
		}
	}
	if total != nil {
		t.FilterEnd = t.row
		t.Skip()
		if err := t.Add(total); err != nil {
			return err
		}
	}
	return t.Close()
}

// Note is one row of a Notes sheet: what a figure means, a caveat.
type Note struct{ Topic, Text string }

// NoteWidth is the Notes sheet's note column, in characters: as wide as a
// landscape page allows beside the topics.
const NoteWidth = 90

// WriteNotes writes a Notes sheet: topic and note, the note wrapped in a
// column NoteWidth wide (unwrapped, fit-to-width shrank the page to the
// longest note).
func (b *Book) WriteNotes(name string, notes []Note) error {
	w := len("Topic")
	rows := make([][]any, len(notes))
	for i, n := range notes {
		w = max(w, TextWidth(n.Topic))
		rows[i] = []any{n.Topic, b.Text(name, 2, i+2, n.Text)}
	}
	return b.WriteTable(name, []Column{{Header: "Topic", Width: ColWidth(w, 12)}, {Header: "Note", Width: NoteWidth}}, rows, nil)
}
