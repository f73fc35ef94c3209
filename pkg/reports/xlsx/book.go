// Package xlsx writes the Excel workbooks of ip2a-ops's reports with one
// set of conventions, so that every report reads and prints the same in
// Excel, LibreOffice and Python pipelines: figures are numbers with
// formats (money exact to the cent, never text), dates are dates, tables
// have a frozen bold header, filter buttons and print one page wide, text
// wraps with its rows raised to fit, every sheet declares its real
// dimension, and cells too long for Excel are cut and named.
package xlsx

import (
	"archive/zip"
	"fmt"
	"io"
	"time"

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

// Number formats. Money is a currency with two decimals (negative in red),
// never text; dates are real dates. Every number format ends in "_)", the
// accounting convention that pads a right-aligned number by the width of a
// ")" so it never runs into left-aligned text in the next column
// ("$22,937.20ACH" in print).
const (
	FmtMoney    = `"$"#,##0.00_);[Red]-"$"#,##0.00_)`
	FmtDate     = `yyyy-mm-dd_)`
	FmtDateTime = `yyyy-mm-dd hh:mm:ss_)`
	FmtPercent  = `0.00%_)`
	FmtInt      = `#,##0_)`
)

// FontName is the workbook's font: Arial is on every machine that runs
// Excel, and LibreOffice prints it with Liberation Sans, which has the same
// metrics, so the row heights computed for wrapped text hold in both
// (Calibri, excelize's default, is replaced by a wider font where it is
// missing, and wrapped lines were cut off).
const (
	FontName = "Arial"
	FontSize = 11
)

// Styles are the cell styles of a Book, by role. Num variants align right,
// for headers above numbers.
type Styles struct {
	Header, HeaderNum, Title, Section, Bold, BoldNum, Right, Text, Date, DateTime, Money, MoneyBold, Percent,
	PercentBold, Integer, IntBold, Flag int
}

func newStyles(f *excelize.File) (Styles, error) {
	var st Styles
	money, date, dateTime, percent, integer := FmtMoney, FmtDate, FmtDateTime, FmtPercent, FmtInt
	// Every font names its family and size: a font without them prints in
	// whatever the reader picks.
	bold := &excelize.Font{Bold: true, Family: FontName, Size: FontSize}
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
		{&st.Header, excelize.Style{Font: bold, Fill: fill, Border: under, Alignment: &excelize.Alignment{Vertical: "top", WrapText: true}}},
		{&st.HeaderNum, excelize.Style{Font: bold, Fill: fill, Border: under, Alignment: right}},
		{&st.Title, excelize.Style{Font: &excelize.Font{Bold: true, Family: FontName, Size: 14}}},
		{&st.Section, excelize.Style{Font: bold, Fill: fill}},
		{&st.Bold, excelize.Style{Font: bold}},
		{&st.BoldNum, excelize.Style{Font: bold, Alignment: right}},
		{&st.Right, excelize.Style{Alignment: right}},
		{&st.Text, excelize.Style{Alignment: &excelize.Alignment{Vertical: "top", WrapText: true}}},
		{&st.Date, excelize.Style{CustomNumFmt: &date, Alignment: top}},
		{&st.DateTime, excelize.Style{CustomNumFmt: &dateTime, Alignment: top}},
		{&st.Money, excelize.Style{CustomNumFmt: &money, Alignment: top}},
		{&st.MoneyBold, excelize.Style{CustomNumFmt: &money, Font: bold, Alignment: top}},
		{&st.Percent, excelize.Style{CustomNumFmt: &percent, Alignment: top}},
		{&st.PercentBold, excelize.Style{CustomNumFmt: &percent, Font: bold, Alignment: top}},
		{&st.Integer, excelize.Style{CustomNumFmt: &integer, Alignment: top}},
		{&st.IntBold, excelize.Style{CustomNumFmt: &integer, Font: bold, Alignment: top}},
		{&st.Flag, excelize.Style{Font: &excelize.Font{Bold: true, Family: FontName, Size: FontSize, Color: "9C0006"}, Alignment: top,
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

// Book is one workbook being written. F is the excelize file, for what the
// helpers here do not cover; St its styles.
type Book struct {
	F         *excelize.File
	St        Styles
	truncated []string
}

// New starts a workbook whose sheets are named sheets, in order (at least
// one). tmpDir is where streamed sheets spill past their memory buffer
// ("" is os.TempDir()). Close it when done.
func New(tmpDir string, sheets ...string) (*Book, error) {
	if len(sheets) == 0 {
		return nil, fmt.Errorf("create workbook: no sheets")
	}
	f := excelize.NewFile(excelize.Options{TmpDir: tmpDir})
	f.SetZipWriter(fastZip)
	fail := func(err error) (*Book, error) {
		_ = f.Close()
		return nil, fmt.Errorf("create workbook: %w", err)
	}
	if err := f.SetDefaultFont(FontName); err != nil {
		return fail(err)
	}
	if err := f.SetSheetName("Sheet1", sheets[0]); err != nil {
		return fail(err)
	}
	for _, n := range sheets[1:] {
		if _, err := f.NewSheet(n); err != nil {
			return fail(err)
		}
	}
	st, err := newStyles(f)
	if err != nil {
		return fail(err)
	}
	return &Book{F: f, St: st}, nil
}

// Close releases the workbook's temporary files.
func (b *Book) Close() error { return b.F.Close() }

// Write writes the workbook to w. The first sheet is the active one, as in
// a new workbook: SetActiveSheet would read every streamed sheet back in
// and encode it again (half the CPU time of a big workbook).
func (b *Book) Write(w io.Writer) error {
	if _, err := b.F.WriteTo(w); err != nil {
		return fmt.Errorf("write workbook: %w", err)
	}
	return nil
}

// Text fits a string into a cell at sheet!col,row: made printable (see
// Printable), then cut to what a cell holds, remembering the cell when it
// had to cut (Truncated).
func (b *Book) Text(sheet string, col, row int, v string) string {
	t, cut := CellText(Printable(v))
	if cut {
		ref, _ := excelize.CoordinatesToCellName(col, row)
		b.truncated = append(b.truncated, fmt.Sprintf("'%s'!%s", sheet, ref))
	}
	return t
}

// Truncated lists the cells whose text was cut, as 'Sheet'!A1.
func (b *Book) Truncated() []string { return b.truncated }

// Str is Text for a nullable string; nil leaves the cell empty.
func (b *Book) Str(sheet string, col, row int, v *string) any {
	if v == nil {
		return nil
	}
	return b.Text(sheet, col, row, *v)
}

// Date is a date cell; nil leaves the cell empty.
func (b *Book) Date(t *time.Time) any {
	if t == nil {
		return nil
	}
	return excelize.Cell{StyleID: b.St.Date, Value: DateValue(*t)}
}

// MoneyCell is a money cell of c cents; nil leaves the cell empty.
func (b *Book) MoneyCell(c *int64) any {
	if c == nil {
		return nil
	}
	return excelize.Cell{StyleID: b.St.Money, Value: Money(*c)}
}

// Share is part/whole as a percentage cell in style, empty when whole is
// zero.
func (b *Book) Share(part, whole int64, style int) any {
	if whole == 0 {
		return nil
	}
	return excelize.Cell{StyleID: style, Value: float64(part) / float64(whole)}
}

// Money turns cents into the number a cell holds. cents/100 as float64 is
// the double nearest the exact decimal, which is what Excel itself stores
// for 1234.56, and excelize writes it back as the shortest text, "1234.56".
func Money(cents int64) float64 { return float64(cents) / 100 }

// excelEpoch is day 0 of Excel's 1900 date system for dates from 1900-03-01
// on (Excel counts a 1900-02-29 that never was).
var excelEpoch = time.Date(1899, 12, 30, 0, 0, 0, 0, time.UTC)

// DateValue is a calendar date as the serial day number a date cell holds,
// computed here because it is the same number excelize would write and
// converting a time.Time per cell was a tenth of the run on big sheets.
// Dates before 1900-03-01 are left to excelize.
func DateValue(t time.Time) any {
	y, m, d := t.Date()
	day := time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
	if day.Year() < 1900 || (day.Year() == 1900 && day.Month() < time.March) {
		return t
	}
	return int64(day.Sub(excelEpoch).Hours()) / 24
}

// Properties are a workbook's document properties: Custom become custom
// properties, in order.
type Properties struct {
	Title, Subject, Description, Keywords, Category, Version string
	Created                                                  time.Time
	Custom                                                   []excelize.CustomProperty
}

// SetProperties writes p, with ip2a-ops as author.
func (b *Book) SetProperties(p Properties) error {
	at := p.Created.UTC().Format(time.RFC3339)
	err := b.F.SetDocProps(&excelize.DocProperties{
		Title: p.Title, Subject: p.Subject, Creator: "ip2a-ops", LastModifiedBy: "ip2a-ops", Description: p.Description,
		Keywords: p.Keywords, Category: p.Category, Version: p.Version, Created: at, Modified: at, Language: "en-US",
	})
	if err != nil {
		return fmt.Errorf("document properties: %w", err)
	}
	for _, c := range p.Custom {
		if err := b.F.SetCustomProps(c); err != nil {
			return fmt.Errorf("document properties: %w", err)
		}
	}
	return nil
}
