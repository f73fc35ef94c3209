package reports

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/xuri/excelize/v2"

	"github.com/ip2a/ip2a-ops/pkg/reports/xlsx"
)

var enrollmentHeaders = []string{"Student number", "Last name", "First name", "Enrolled", "Status", "Completed",
	"Outcome", "Outcome date", "Placement employer", "Placement date", "Placement wage (as entered)", "Hourly wage",
	"Job title", "Notes"}

var expenseHeaders = []string{"Purchased", "Item", "Category", "Allowable", "Vendor", "Description", "Quantity",
	"Unit price", "Discount", "Tax", "Total", "Payment method", "Receipt number", "Student number", "Notes"}

// measure reads how many rows a detail sheet will hold and the longest
// value of each text expression over them, in the same snapshot: a
// streamed sheet must set its dimension and column widths before its first
// row.
func measure(ctx context.Context, tx pgx.Tx, with, from string, args []any, exprs []string) (rows int, lens []int, err error) {
	q := with + "SELECT count(*)"
	for _, e := range exprs {
		q += ", coalesce(max(length(" + e + ")), 0)"
	}
	lens = make([]int, len(exprs))
	dst := make([]any, 1+len(exprs))
	dst[0] = &rows
	for i := range lens {
		dst[i+1] = &lens[i]
	}
	if err := tx.QueryRow(ctx, q+" "+from, args...).Scan(dst...); err != nil {
		return 0, nil, fmt.Errorf("measure columns: %w", err)
	}
	return rows, lens, nil
}

// detailColumns sizes a detail sheet's columns: each header's width, or
// the longest text measured for it, or fixed where given.
func detailColumns(headers []string, numeric []int, textCols []int, lens []int, fixed map[int]float64) []xlsx.Column {
	cols := make([]xlsx.Column, len(headers))
	chars := make([]int, len(headers))
	for i, h := range headers {
		cols[i].Header = h
		chars[i] = len(h)
	}
	for i, c := range textCols {
		chars[c] = max(chars[c], lens[i])
	}
	for i, c := range chars {
		cols[i].Width = xlsx.ColWidth(c, 10)
		if w, ok := fixed[i]; ok {
			cols[i].Width = max(cols[i].Width, w)
		}
	}
	for _, c := range numeric {
		cols[c].Numeric = true
	}
	return cols
}

func (b *wb) enrollments(ctx context.Context, tx pgx.Tx) error {
	s := b.s
	from := `FROM ge LEFT JOIN students s ON s.id = ge.student_id LEFT JOIN members m ON m.id = s.member_id`
	with := `WITH ge AS (` + s.enrSource + `) `
	args := []any{s.grant.id}
	text := []string{"s.student_number", "m.last_name", "m.first_name", "ge.status", "ge.outcome", "ge.placement_employer",
		"ge.placement_wage", "ge.placement_job_title", "ge.notes"}
	textCols := []int{0, 1, 2, 4, 6, 8, 10, 12, 13}
	n, lens, err := measure(ctx, tx, with, from, args, text)
	if err != nil {
		return err
	}
	cols := detailColumns(enrollmentHeaders, []int{3, 5, 7, 9, 11}, textCols, lens, map[int]float64{3: 12, 5: 12, 7: 12, 9: 12, 11: 12})
	t, err := b.NewTable(SheetEnrollment, cols, n+1)
	if err != nil {
		return err
	}
	rows, err := tx.Query(ctx, with+`SELECT s.student_number, m.last_name, m.first_name, ge.enrollment_date, ge.status,
		ge.completion_date, ge.outcome, ge.outcome_date, ge.placement_employer, ge.placement_date, ge.placement_wage,
		ge.placement_job_title, ge.notes `+from+` ORDER BY ge.enrollment_date, s.student_number, ge.id`, args...)
	if err != nil {
		return fmt.Errorf("read enrollments: %w", err)
	}
	defer rows.Close()
	var (
		number, last, first, status, outcome, employer, wage, title, notes *string
		enrolled, completed, outcomeDate, placed                           *time.Time
	)
	v := t.Buf
	for rows.Next() {
		if err := rows.Scan(&number, &last, &first, &enrolled, &status, &completed, &outcome, &outcomeDate,
			&employer, &placed, &wage, &title, &notes); err != nil {
			return fmt.Errorf("read enrollments: %w", err)
		}
		r := t.Row() + 1
		v[0], v[1], v[2] = b.Str(SheetEnrollment, 1, r, number), b.Str(SheetEnrollment, 2, r, last), b.Str(SheetEnrollment, 3, r, first)
		v[3], v[4], v[5] = b.Date(enrolled), b.Str(SheetEnrollment, 5, r, status), b.Date(completed)
		v[6], v[7], v[8] = b.Str(SheetEnrollment, 7, r, outcome), b.Date(outcomeDate), b.Str(SheetEnrollment, 9, r, employer)
		v[9], v[10], v[11] = b.Date(placed), b.Str(SheetEnrollment, 11, r, wage), nil
		if wage != nil {
			if c, ok := hourlyWageCents(*wage); ok {
				v[11] = b.MoneyCell(&c)
			}
		}
		v[12], v[13] = b.Str(SheetEnrollment, 13, r, title), b.Str(SheetEnrollment, 14, r, notes)
		if err := t.Add(v); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read enrollments: %w", err)
	}
	return t.Close()
}

func (b *wb) expenses(ctx context.Context, tx pgx.Tx) error {
	s := b.s
	from := `FROM expenses x LEFT JOIN students s ON s.id = x.student_id WHERE x.grant_id = $1 AND ` + notDeleted("x")
	args := []any{s.grant.id}
	pay := "x.payment_method::text"
	if !s.info.HasColumns("expenses", "payment_method") {
		pay = "NULL::text"
	}
	text := []string{"x.item", "x.category", "x.vendor", "x.description", pay, "x.receipt_number", "s.student_number", "x.notes"}
	textCols := []int{1, 2, 4, 5, 11, 12, 13, 14}
	n, lens, err := measure(ctx, tx, "", from, args, text)
	if err != nil {
		return err
	}
	// Money columns hold $1,234,567.89 and the padding after it.
	cols := detailColumns(expenseHeaders, []int{0, 6, 7, 8, 9, 10}, textCols, lens,
		map[int]float64{0: 12, 3: xlsx.ColWidth(len("Out of policy"), 10), 7: 15, 8: 15, 9: 15, 10: 15})
	for _, c := range []int{7, 8, 9, 10} {
		cols[c].Width = 15
	}
	t, err := b.NewTable(SheetExpenses, cols, n+1)
	if err != nil {
		return err
	}
	allowed := map[string]bool{}
	for _, p := range s.policy {
		allowed[policyKey(p)] = true
	}
	rows, err := tx.Query(ctx, `SELECT x.purchased_at, x.item, x.category, x.vendor, x.description, x.quantity,
		(x.unit_price * 100)::bigint, (x.discount * 100)::bigint, (x.tax * 100)::bigint, (x.total_price * 100)::bigint,
		`+pay+`, x.receipt_number, s.student_number, x.notes `+from+` ORDER BY x.purchased_at, x.id`, args...)
	if err != nil {
		return fmt.Errorf("read expenses: %w", err)
	}
	defer rows.Close()
	var (
		purchased                                               time.Time
		item                                                    string
		category, vendor, desc, method, receipt, student, notes *string
		qty                                                     int32
		unit, discount, tax                                     *int64
		total                                                   int64
		yes, no                                                 = "Yes", excelize.Cell{StyleID: b.St.Flag, Value: "Out of policy"}
	)
	v := t.Buf
	for rows.Next() {
		if err := rows.Scan(&purchased, &item, &category, &vendor, &desc, &qty, &unit, &discount, &tax, &total,
			&method, &receipt, &student, &notes); err != nil {
			return fmt.Errorf("read expenses: %w", err)
		}
		r := t.Row() + 1
		v[0], v[1], v[2] = b.Date(&purchased), b.Text(SheetExpenses, 2, r, item), b.Str(SheetExpenses, 3, r, category)
		v[3] = nil
		if s.policy != nil {
			v[3] = no
			if category != nil && allowed[policyKey(*category)] {
				v[3] = yes
			}
		}
		v[4], v[5], v[6] = b.Str(SheetExpenses, 5, r, vendor), b.Str(SheetExpenses, 6, r, desc), excelize.Cell{StyleID: b.St.Integer, Value: qty}
		v[7], v[8], v[9], v[10] = b.MoneyCell(unit), b.MoneyCell(discount), b.MoneyCell(tax), b.MoneyCell(&total)
		v[11], v[12], v[13] = b.Str(SheetExpenses, 12, r, method), b.Str(SheetExpenses, 13, r, receipt), b.Str(SheetExpenses, 14, r, student)
		v[14] = b.Str(SheetExpenses, 15, r, notes)
		if err := t.Add(v); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read expenses: %w", err)
	}
	return t.Close()
}
