package xlsx

import (
	"fmt"

	"github.com/xuri/excelize/v2"
)

// Form writes a summary sheet: a title, sections with a band across the
// form, label in column A and value in B, and small tables (headers and
// rows over up to Cols columns). It prints on one portrait page, so no
// block is split across pages.
type Form struct {
	b              *Book
	sheet          string
	row            int
	cols           int
	widthA, widthB int
}

// NewForm starts a form on sheet, cols columns wide (at least 2).
func (b *Book) NewForm(sheet string, cols int) *Form {
	return &Form{b: b, sheet: sheet, cols: max(cols, 2)}
}

// Put writes v at column col of the current row, in style (0: none).
// Strings go through Book.Text.
func (f *Form) Put(col int, v any, style int) error {
	ref, _ := excelize.CoordinatesToCellName(col, f.row)
	if str, ok := v.(string); ok {
		v = f.b.Text(f.sheet, col, f.row, str)
		if col == 1 && f.row > 1 { // the title may overhang
			f.widthA = max(f.widthA, TextWidth(str))
		} else if col == 2 && f.row > 1 {
			f.widthB = max(f.widthB, TextWidth(str))
		}
	}
	if v != nil {
		if err := f.b.F.SetCellValue(f.sheet, ref, v); err != nil {
			return err
		}
	}
	if style != 0 {
		return f.b.F.SetCellStyle(f.sheet, ref, ref, style)
	}
	return nil
}

// Title writes the form's title on its first row.
func (f *Form) Title(s string) error {
	f.row = 1
	return f.Put(1, s, f.b.St.Title)
}

// Section leaves a blank row and writes a section band.
func (f *Form) Section(title string) error {
	f.row += 2
	ref, _ := excelize.CoordinatesToCellName(1, f.row)
	end, _ := excelize.CoordinatesToCellName(f.cols, f.row)
	if err := f.b.F.SetCellValue(f.sheet, ref, title); err != nil {
		return err
	}
	return f.b.F.SetCellStyle(f.sheet, ref, end, f.b.St.Section)
}

// Line writes label and value on the next row; a nil value leaves B empty.
func (f *Form) Line(label string, v any, style int) error {
	f.row++
	if err := f.Put(1, label, 0); err != nil {
		return err
	}
	return f.Put(2, v, style)
}

// Header writes a small table's header on the next row: the first
// heading left, the others (above numbers) right-aligned.
func (f *Form) Header(headings ...string) error {
	f.row++
	for i, h := range headings {
		style := f.b.St.BoldNum
		if i == 0 {
			style = f.b.St.Bold
		}
		if err := f.Put(i+1, h, style); err != nil {
			return err
		}
	}
	return nil
}

// Cell is a value and its style, for Row.
type Cell struct {
	V     any
	Style int
}

// Row writes cells on the next row from column A.
func (f *Form) Row(cells ...Cell) error {
	f.row++
	for i, c := range cells {
		if err := f.Put(i+1, c.V, c.Style); err != nil {
			return err
		}
	}
	return nil
}

// NextRow moves to the next row, for a row written with Put.
func (f *Form) NextRow() { f.row++ }

// Close sets the column widths (A and B fitted to their text, the others
// 14), the sheet's dimension and the one-page portrait print setup.
func (f *Form) Close() error {
	fl, sh := f.b.F, f.sheet
	if err := fl.SetColWidth(sh, "A", "A", ColWidth(f.widthA, 12)); err != nil {
		return err
	}
	if err := fl.SetColWidth(sh, "B", "B", ColWidth(max(f.widthB, 19), 16)); err != nil {
		return err
	}
	last, _ := excelize.ColumnNumberToName(f.cols)
	if f.cols > 2 {
		if err := fl.SetColWidth(sh, "C", last, 14); err != nil {
			return err
		}
	}
	if err := fl.SetSheetDimension(sh, fmt.Sprintf("A1:%s%d", last, max(f.row, 1))); err != nil {
		return err
	}
	portrait, one, fit := "portrait", 1, true
	if err := fl.SetPageLayout(sh, &excelize.PageLayoutOptions{Orientation: &portrait, FitToWidth: &one, FitToHeight: &one}); err != nil {
		return err
	}
	return fl.SetSheetProps(sh, &excelize.SheetPropsOptions{FitToPage: &fit})
}
