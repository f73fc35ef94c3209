package reports

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/xuri/excelize/v2"

	"github.com/ip2a/ip2a-ops/pkg/reports/xlsx"
)

// Sheets of the dues workbook, in order.
const (
	DuesSheetSummary     = "Summary"
	DuesSheetPeriods     = "By period"
	DuesSheetClasses     = "By classification"
	DuesSheetMethods     = "By payment method"
	DuesSheetOverdue     = "Overdue"
	DuesSheetAdjustments = "Adjustments"
	DuesSheetNotes       = "Notes"
)

var duesFigureHeaders = []string{"Payments", "Members", "Billed", "Paid", "Outstanding", "Waived", "Written off", "Other difference"}

// withoutMembers drops the Members column (not counted per period).
func withoutMembers(row []any) []any { return append(row[:2:2], row[3:]...) }

func (d *dues) workbook(ctx context.Context, _ pgx.Tx, w io.Writer) error {
	b, err := xlsx.New(d.o.TmpDir, DuesSheetSummary, DuesSheetPeriods, DuesSheetClasses, DuesSheetMethods, DuesSheetOverdue,
		DuesSheetAdjustments, DuesSheetNotes)
	if err != nil {
		return err
	}
	defer b.Close()
	if err := runSteps(ctx, []step{
		{DuesSheetPeriods, func() error { return d.figuresSheet(b, DuesSheetPeriods, "Period", d.periods, false) }},
		{DuesSheetClasses, func() error { return d.figuresSheet(b, DuesSheetClasses, "Classification", d.classes, true) }},
		{DuesSheetMethods, func() error { return d.methodsSheet(b) }},
		{DuesSheetOverdue, func() error { return d.overdueSheet(b) }},
		{DuesSheetAdjustments, func() error { return d.adjustmentsSheet(b) }},
		{DuesSheetSummary, func() error { return d.summarySheet(b) }},
		{DuesSheetNotes, func() error { return b.WriteNotes(DuesSheetNotes, d.notes(b.Truncated())) }},
		{"document properties", func() error { return d.properties(b) }},
	}); err != nil {
		return err
	}
	return b.Write(w)
}

func (d *dues) figureCells(b *xlsx.Book, f duesFigures, bold bool) []any {
	in, mo := b.St.Integer, b.St.Money
	if bold {
		in, mo = b.St.IntBold, b.St.MoneyBold
	}
	return []any{excelize.Cell{StyleID: in, Value: f.Payments}, excelize.Cell{StyleID: in, Value: f.Members},
		excelize.Cell{StyleID: mo, Value: xlsx.Money(f.Billed)}, excelize.Cell{StyleID: mo, Value: xlsx.Money(f.Paid)},
		excelize.Cell{StyleID: mo, Value: xlsx.Money(f.Outstanding)}, excelize.Cell{StyleID: mo, Value: xlsx.Money(f.Waived)},
		excelize.Cell{StyleID: mo, Value: xlsx.Money(f.WrittenOff)}, excelize.Cell{StyleID: mo, Value: xlsx.Money(f.Other)}}
}

// figuresSheet writes one group's dues per row and the SQL total (not a
// sum of the cells above).
func (d *dues) figuresSheet(b *xlsx.Book, sheet, key string, fs []duesFigures, enum bool) error {
	rows := make([][]any, len(fs))
	labels := d.info.EnumLabels("memberclassification")
	for i, f := range fs {
		label := f.Label
		if enum {
			label = labelWords(labels, f.Label)
			if f.Label == "" {
				label = "(member not found)"
			}
		}
		rows[i] = append([]any{label}, d.figureCells(b, f, false)...)
	}
	total := append([]any{excelize.Cell{StyleID: b.St.Bold, Value: "Total"}}, d.figureCells(b, d.total, true)...)
	headers := append([]string{key}, duesFigureHeaders...)
	if !enum { // by period: payments, no members count
		headers = append(headers[:2:2], headers[3:]...)
		for i := range rows {
			rows[i] = withoutMembers(rows[i])
		}
		total = withoutMembers(total)
	}
	cols := xlsx.ColumnsOf(headers, append(rows, total), 10)
	return b.WriteTable(sheet, cols, rows, total)
}

func (d *dues) methodsSheet(b *xlsx.Book) error {
	st := b.St
	rows := make([][]any, len(d.methods))
	var n, paid int64
	for i, m := range d.methods {
		label := words(m.Method)
		if m.Method == "" {
			label = "(no method recorded)"
		}
		rows[i] = []any{label, m.Method, excelize.Cell{StyleID: st.Integer, Value: m.Payments},
			excelize.Cell{StyleID: st.Money, Value: xlsx.Money(m.Paid)}, b.Share(m.Paid, d.total.Paid, st.Percent)}
		n += m.Payments
		paid += m.Paid
	}
	total := []any{excelize.Cell{StyleID: st.Bold, Value: "Total"}, nil, excelize.Cell{StyleID: st.IntBold, Value: n},
		excelize.Cell{StyleID: st.MoneyBold, Value: xlsx.Money(paid)}, b.Share(paid, d.total.Paid, st.PercentBold)}
	return b.WriteRows(DuesSheetMethods, []string{"Payment method", "Label as stored", "Payments with money", "Paid", "Share of paid"}, rows, total)
}

func (d *dues) overdueSheet(b *xlsx.Book) error {
	st := b.St
	rows := make([][]any, len(d.overdue))
	var cents int64
	for i, o := range d.overdue {
		r := i + 2
		rows[i] = []any{b.Text(DuesSheetOverdue, 1, r, o.Number), b.Text(DuesSheetOverdue, 2, r, o.Last), b.Text(DuesSheetOverdue, 3, r, o.First),
			words(o.Class), words(o.Status), excelize.Cell{StyleID: st.Integer, Value: o.Periods},
			excelize.Cell{StyleID: st.Money, Value: xlsx.Money(o.Cents)}, b.Date(&o.OldestGrace),
			excelize.Cell{StyleID: st.Integer, Value: o.Days}, overdueBuckets[bucketOf(o.Days)].label}
		cents += o.Cents
	}
	total := []any{excelize.Cell{StyleID: st.Bold, Value: "Total"}, nil, nil, nil, nil, nil,
		excelize.Cell{StyleID: st.MoneyBold, Value: xlsx.Money(cents)}, nil, nil, nil}
	headers := []string{"Member number", "Last name", "First name", "Classification", "Status", "Periods overdue",
		"Amount overdue", "Oldest grace period end", "Days past grace", "Age"}
	cols := xlsx.ColumnsOf(headers, append(rows, total), 10)
	cols[7].Width = max(cols[7].Width, 12)
	return b.WriteTable(DuesSheetOverdue, cols, rows, total)
}

func (d *dues) adjustmentsSheet(b *xlsx.Book) error {
	st := b.St
	rows := make([][]any, len(d.adjusts))
	for i, a := range d.adjusts {
		r := i + 2
		rows[i] = []any{excelize.Cell{StyleID: st.Date, Value: xlsx.DateValue(a.Created)}, b.Text(DuesSheetAdjustments, 2, r, a.Number),
			b.Text(DuesSheetAdjustments, 3, r, a.Last), b.Text(DuesSheetAdjustments, 4, r, a.First), words(a.Type), words(a.Status),
			excelize.Cell{StyleID: st.Money, Value: xlsx.Money(a.Cents)}, b.Date(a.ApprovedAt), b.Str(DuesSheetAdjustments, 9, r, a.Period),
			b.Text(DuesSheetAdjustments, 10, r, a.Reason)}
	}
	headers := []string{"Requested", "Member number", "Last name", "First name", "Type", "Status", "Amount", "Approved", "Period", "Reason"}
	cols := xlsx.ColumnsOf(headers, rows, 10)
	cols[0].Width, cols[7].Width = 12, 12
	cols[0].Numeric, cols[7].Numeric = true, true
	return b.WriteTable(DuesSheetAdjustments, cols, rows, nil)
}

func (d *dues) summarySheet(b *xlsx.Book) error {
	st := b.St
	f := b.NewForm(DuesSheetSummary, 3)
	var err error
	line := func(label string, v any, style int) {
		if err == nil {
			err = f.Line(label, v, style)
		}
	}
	section := func(t string) {
		if err == nil {
			err = f.Section(t)
		}
	}
	t := d.total
	err = f.Title("Dues report: " + d.o.Local)
	line("Periods", d.periodLabel(), 0)
	line("Dues periods in the report", int64(len(d.periods)), st.Integer)
	line("Overdue counted to", d.asOf, st.Date)
	line("Generated at (UTC)", d.o.Now.UTC(), st.DateTime)
	line("Data snapshot at (UTC)", d.snapshotAt.UTC(), st.DateTime)
	section("Dues")
	line("Payment rows", t.Payments, st.Integer)
	line("Members billed", t.Members, st.Integer)
	line("Billed", xlsx.Money(t.Billed), st.MoneyBold)
	line("Paid", xlsx.Money(t.Paid), st.Money)
	line("Outstanding", xlsx.Money(t.Outstanding), st.Money)
	line("Waived", xlsx.Money(t.Waived), st.Money)
	line("Written off", xlsx.Money(t.WrittenOff), st.Money)
	line("Other difference (paid rows)", xlsx.Money(t.Other), st.Money)
	line("Collection rate (paid / billed)", ratioCell(t.Paid, t.Billed), st.Percent)
	section("Overdue past the grace period")
	if err == nil {
		err = f.Header("Age", "Members", "Amount")
	}
	var members, cents int64
	for _, bk := range d.buckets {
		if err == nil {
			err = f.Row(xlsx.Cell{V: bk.Label}, xlsx.Cell{V: bk.Members, Style: st.Integer}, xlsx.Cell{V: xlsx.Money(bk.Cents), Style: st.Money})
		}
		members += bk.Members
		cents += bk.Cents
	}
	if err == nil {
		err = f.Row(xlsx.Cell{V: "Total", Style: st.Bold}, xlsx.Cell{V: members, Style: st.IntBold}, xlsx.Cell{V: xlsx.Money(cents), Style: st.MoneyBold})
	}
	section("Adjustments")
	if err == nil {
		err = f.Header("Status", "Adjustments", "Amount")
	}
	for _, a := range d.adjSum {
		if err == nil {
			err = f.Row(xlsx.Cell{V: words(a.Status)}, xlsx.Cell{V: a.Count, Style: st.Integer}, xlsx.Cell{V: xlsx.Money(a.Cents), Style: st.Money})
		}
	}
	if err != nil {
		return err
	}
	return f.Close()
}

func ratioCell(part, whole int64) any {
	if whole == 0 {
		return nil
	}
	return float64(part) / float64(whole)
}

func (d *dues) periodLabel() string {
	from, to := d.o.From.Format("2006-01"), d.o.To.Format("2006-01")
	if from == to {
		return from
	}
	return from + " to " + to
}

func (d *dues) notes(truncated []string) []xlsx.Note {
	open := fmt.Sprint(d.open)
	ns := []xlsx.Note{
		d.generatedNote(d.o.ToolVersion, d.o.Now),
		{Topic: "Periods", Text: fmt.Sprintf("The dues_periods whose year and month fall in %s, and their dues_payments rows "+
			"that are live (neither is_deleted nor deleted_at set). Every figure is summed in the database as exact "+
			"decimals and is exact to the cent; each sheet's total row holds the same SQL sums, not a sum of the cells.", d.periodLabel())},
		{Topic: "Billed", Text: "The sum of amount_due."},
		{Topic: "Paid", Text: "The sum of amount_paid, whatever the row's status."},
		{Topic: "Outstanding", Text: "amount_due - amount_paid of rows whose status is still open: " + open + "."},
		{Topic: "Waived", Text: "amount_due - amount_paid of rows whose status is WAIVED."},
		{Topic: "Written off", Text: "amount_due - amount_paid of rows whose status is WRITTEN_OFF."},
		{Topic: "Other difference", Text: "Billed - paid - outstanding - waived - written off: what rows with another status (PAID) " +
			"were paid short (positive) or over (negative), so that the figures add up to what was billed."},
		{Topic: "By classification", Text: "By the member's classification as stored now (the schema keeps no history of it)."},
		{Topic: "By payment method", Text: "Rows by payment_method, every method the database defines listed; Payments with money " +
			"counts rows with an amount paid; rows with no method recorded (nothing paid yet) are listed when any paid."},
		{Topic: "Overdue", Text: fmt.Sprintf("Rows still open with amount_due above amount_paid whose period's grace_period_end is "+
			"before %s (the day the report was generated, UTC); days past grace are counted to that day. The Overdue "+
			"sheet lists each member once, with the number of such periods, the sum owed and the oldest; its Age is that "+
			"of the oldest. On the Summary, members are counted in the bucket of their oldest period, amounts by each "+
			"row's own age.", d.asOf.Format(time.DateOnly))},
		{Topic: "Adjustments", Text: "dues_adjustments of a payment in the periods, and those tied to no payment requested " +
			"(created_at) in the months of the report, by status. Amounts as stored (the sign is the app's)."},
	}
	if !d.hasStrip {
		ns = append(ns, xlsx.Note{Topic: "Older schema", Text: noStripeNote})
	}
	if len(truncated) > 0 {
		ns = append(ns, xlsx.Note{Topic: "Truncated cells", Text: xlsx.TruncatedNote(truncated)})
	}
	return ns
}

func (d *dues) properties(b *xlsx.Book) error {
	return b.SetProperties(xlsx.Properties{
		Title:       "Dues report: " + d.o.Local + " (" + d.periodLabel() + ")",
		Subject:     "Dues periods " + d.periodLabel(),
		Description: fmt.Sprintf("Generated by ip2a-ops %s from a snapshot taken at %s.", d.o.ToolVersion, d.snapshotAt.UTC().Format(time.RFC3339)),
		Keywords:    "dues report; " + d.periodLabel(),
		Category:    "Dues report",
		Version:     d.o.ToolVersion,
		Created:     d.o.Now,
		Custom: []excelize.CustomProperty{{Name: "First period", Value: d.o.From.Format("2006-01")},
			{Name: "Last period", Value: d.o.To.Format("2006-01")}, {Name: "Tool version", Value: "ip2a-ops " + d.o.ToolVersion}},
	})
}
