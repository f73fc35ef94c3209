package reports

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// dues is every figure of the dues report, money in cents.
type dues struct {
	reportBase
	o        DuesOptions
	asOf     time.Time // overdue ages are counted to this day
	open     []string  // duespaymentstatus labels of unpaid dues
	hasStrip bool      // the payment method enum has the Stripe labels
	periods  []duesFigures
	classes  []duesFigures
	total    duesFigures
	methods  []methodRow
	overdue  []overdueRow
	buckets  []bucketRow
	adjusts  []adjustRow
	adjSum   []adjustSum
}

// duesFigures are the dues of a group of payment rows.
type duesFigures struct {
	Label                                                string
	Payments, Members                                    int64
	Billed, Paid, Outstanding, Waived, WrittenOff, Other int64
}

type methodRow struct {
	Method   string
	Payments int64
	Paid     int64
}

type overdueRow struct {
	Number, Last, First, Class, Status string
	Periods                            int64
	Cents                              int64
	OldestGrace                        time.Time
	Days                               int
}

type bucketRow struct {
	Label   string
	Members int64
	Cents   int64
}

type adjustRow struct {
	Created              time.Time
	Number, Last, First  string
	Type, Status, Reason string
	Cents                int64
	ApprovedAt           *time.Time
	Period               *string
}

type adjustSum struct {
	Status string
	Count  int64
	Cents  int64
}

// overdueBuckets group days past the grace period: [lo, hi], hi 0 = no
// upper bound.
var overdueBuckets = []struct {
	label  string
	lo, hi int
}{{"1 to 30 days", 1, 30}, {"31 to 60 days", 31, 60}, {"61 to 90 days", 61, 90}, {"More than 90 days", 91, 0}}

// The snapshot's selected periods ($1, $2: first days of the first and
// last month) and their live payment rows.
const duesCTE = `per AS (SELECT id, period_year, period_month, grace_period_end FROM dues_periods
		WHERE make_date(period_year, period_month, 1) BETWEEN $1 AND $2),
	pay AS (SELECT p.*, per.grace_period_end, per.period_year, per.period_month FROM dues_payments p JOIN per ON per.id = p.period_id
		WHERE NOT p.is_deleted AND p.deleted_at IS NULL)`

func loadDues(ctx context.Context, tx pgx.Tx, o DuesOptions) (*dues, error) {
	base, err := readBase(ctx, tx, o.Schema, "dues_periods", "dues_payments", "dues_adjustments", "members")
	if err != nil {
		return nil, err
	}
	d := &dues{reportBase: base, o: o, asOf: dateOf(o.Now.UTC())}
	for _, l := range []string{"PENDING", "DUE", "PARTIAL", "OVERDUE"} {
		if lbl, ok := base.info.Label("duespaymentstatus", l); ok {
			d.open = append(d.open, lbl)
		}
	}
	_, d.hasStrip = base.info.Label("duespaymentmethod", "stripe_card")
	for _, step := range []struct {
		what string
		fn   func(context.Context, pgx.Tx) error
	}{{"dues by period", d.loadFigures}, {"payment methods", d.loadMethods}, {"overdue dues", d.loadOverdue},
		{"adjustments", d.loadAdjustments}} {
		if err := step.fn(ctx, tx); err != nil {
			return nil, fmt.Errorf("read %s: %w", step.what, err)
		}
	}
	if len(d.periods) == 0 {
		return nil, fmt.Errorf("%s to %s: %w", o.From.Format("2006-01"), o.To.Format("2006-01"), ErrNoPeriods)
	}
	return d, nil
}

// figuresSQL sums the dues of pay rows grouped by key (a text
// expression; "”" for one total row).
func (d *dues) figuresSQL(key, join string) string {
	open := "'" + strings.Join(d.open, "','") + "'"
	diff := "(pay.amount_due - pay.amount_paid)"
	cents := func(e string) string { return "coalesce((sum(" + e + ") * 100)::bigint, 0)" }
	return `WITH ` + duesCTE + ` SELECT ` + key + `, count(*), count(DISTINCT pay.member_id), ` + cents("pay.amount_due") + `, ` +
		cents("pay.amount_paid") + `, ` + cents(diff+") FILTER (WHERE pay.status::text IN ("+open+")") + `, ` +
		cents(diff+") FILTER (WHERE pay.status::text = 'WAIVED'") + `, ` + cents(diff+") FILTER (WHERE pay.status::text = 'WRITTEN_OFF'") +
		` FROM pay ` + join + ` GROUP BY 1 ORDER BY 1`
}

func (d *dues) queryFigures(ctx context.Context, tx pgx.Tx, q string) ([]duesFigures, error) {
	rows, err := tx.Query(ctx, q, d.o.From, d.o.To)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (duesFigures, error) {
		var f duesFigures
		err := r.Scan(&f.Label, &f.Payments, &f.Members, &f.Billed, &f.Paid, &f.Outstanding, &f.Waived, &f.WrittenOff)
		f.Other = f.Billed - f.Paid - f.Outstanding - f.Waived - f.WrittenOff
		return f, err
	})
}

func (d *dues) loadFigures(ctx context.Context, tx pgx.Tx) error {
	// Every selected period, also one without payment rows.
	rows, err := tx.Query(ctx, `WITH `+duesCTE+` SELECT to_char(make_date(period_year, period_month, 1), 'YYYY-MM') FROM per ORDER BY 1`,
		d.o.From, d.o.To)
	if err != nil {
		return err
	}
	months, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	got, err := d.queryFigures(ctx, tx, d.figuresSQL("to_char(make_date(pay.period_year, pay.period_month, 1), 'YYYY-MM')", ""))
	if err != nil {
		return err
	}
	byMonth := map[string]duesFigures{}
	for _, f := range got {
		byMonth[f.Label] = f
	}
	seen := map[string]bool{}
	for _, m := range months {
		if seen[m] {
			continue // two periods of one month: their rows are summed
		}
		seen[m] = true
		f := byMonth[m]
		f.Label = m
		d.periods = append(d.periods, f)
	}
	if d.classes, err = d.queryFigures(ctx, tx, d.figuresSQL("coalesce(m.classification::text, '')", "LEFT JOIN members m ON m.id = pay.member_id")); err != nil {
		return err
	}
	total, err := d.queryFigures(ctx, tx, d.figuresSQL("''", ""))
	if err != nil {
		return err
	}
	if len(total) == 1 {
		d.total = total[0]
	}
	d.total.Label = "Total"
	return nil
}

func (d *dues) loadMethods(ctx context.Context, tx pgx.Tx) error {
	rows, err := tx.Query(ctx, `WITH `+duesCTE+` SELECT coalesce(pay.payment_method::text, ''), count(*) FILTER (WHERE pay.amount_paid <> 0),
		coalesce((sum(pay.amount_paid) * 100)::bigint, 0) FROM pay GROUP BY 1`, d.o.From, d.o.To)
	if err != nil {
		return err
	}
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[methodRow])
	if err != nil {
		return err
	}
	byMethod := map[string]methodRow{}
	for _, m := range got {
		byMethod[m.Method] = m
	}
	for _, l := range append(d.info.EnumLabels("duespaymentmethod"), "") {
		m := byMethod[l]
		m.Method = l
		if l != "" || m.Payments > 0 || m.Paid != 0 {
			d.methods = append(d.methods, m)
		}
		delete(byMethod, l)
	}
	for _, m := range got { // labels the enum no longer has
		if _, ok := byMethod[m.Method]; ok {
			d.methods = append(d.methods, m)
		}
	}
	return nil
}

func (d *dues) loadOverdue(ctx context.Context, tx pgx.Tx) error {
	open := "'" + strings.Join(d.open, "','") + "'"
	rows, err := tx.Query(ctx, `WITH `+duesCTE+`, od AS (SELECT pay.member_id, pay.amount_due - pay.amount_paid AS owed,
			pay.grace_period_end, ($3::date - pay.grace_period_end) AS days
			FROM pay WHERE pay.status::text IN (`+open+`) AND pay.amount_due > pay.amount_paid AND pay.grace_period_end < $3::date)
		SELECT coalesce(m.member_number, '#' || od.member_id), coalesce(m.last_name, ''), coalesce(m.first_name, ''),
			coalesce(m.classification::text, ''), coalesce(m.status::text, ''), count(*), (sum(od.owed) * 100)::bigint,
			min(od.grace_period_end), max(od.days)
		FROM od LEFT JOIN members m ON m.id = od.member_id
		GROUP BY od.member_id, m.member_number, m.last_name, m.first_name, m.classification, m.status
		ORDER BY max(od.days) DESC, sum(od.owed) DESC, 1`, d.o.From, d.o.To, d.asOf)
	if err != nil {
		return err
	}
	if d.overdue, err = pgx.CollectRows(rows, pgx.RowToStructByPos[overdueRow]); err != nil {
		return err
	}
	// Amounts by each row's own age; members by their oldest.
	rows, err = tx.Query(ctx, `WITH `+duesCTE+` SELECT ($3::date - pay.grace_period_end), (sum(pay.amount_due - pay.amount_paid) * 100)::bigint
		FROM pay WHERE pay.status::text IN (`+open+`) AND pay.amount_due > pay.amount_paid AND pay.grace_period_end < $3::date GROUP BY 1`,
		d.o.From, d.o.To, d.asOf)
	if err != nil {
		return err
	}
	d.buckets = make([]bucketRow, len(overdueBuckets))
	var days int
	var cents int64
	if _, err := pgx.ForEachRow(rows, []any{&days, &cents}, func() error {
		d.buckets[bucketOf(days)].Cents += cents
		return nil
	}); err != nil {
		return err
	}
	for i, b := range overdueBuckets {
		d.buckets[i].Label = b.label
	}
	for _, r := range d.overdue {
		d.buckets[bucketOf(r.Days)].Members++
	}
	return nil
}

func bucketOf(days int) int {
	for i, b := range overdueBuckets {
		if days >= b.lo && (b.hi == 0 || days <= b.hi) {
			return i
		}
	}
	return 0
}

func (d *dues) loadAdjustments(ctx context.Context, tx pgx.Tx) error {
	// Adjustments of a selected period's payment, and those tied to no
	// payment created in the months selected.
	sel := `WITH ` + duesCTE + `, adj AS (SELECT a.*, to_char(make_date(pay.period_year, pay.period_month, 1), 'YYYY-MM') AS period
		FROM dues_adjustments a LEFT JOIN pay ON pay.id = a.payment_id
		WHERE pay.id IS NOT NULL OR (a.payment_id IS NULL AND a.created_at >= $1 AND a.created_at < ($2::date + interval '1 month'))) `
	rows, err := tx.Query(ctx, sel+`SELECT adj.created_at, coalesce(m.member_number, '#' || adj.member_id), coalesce(m.last_name, ''),
		coalesce(m.first_name, ''), adj.adjustment_type::text, adj.status::text, adj.reason, (adj.amount * 100)::bigint, adj.approved_at, adj.period
		FROM adj LEFT JOIN members m ON m.id = adj.member_id ORDER BY adj.created_at, adj.id`, d.o.From, d.o.To)
	if err != nil {
		return err
	}
	if d.adjusts, err = pgx.CollectRows(rows, pgx.RowToStructByPos[adjustRow]); err != nil {
		return err
	}
	sums := map[string]*adjustSum{}
	for _, l := range d.info.EnumLabels("adjustmentstatus") {
		d.adjSum = append(d.adjSum, adjustSum{Status: l})
	}
	for i := range d.adjSum {
		sums[d.adjSum[i].Status] = &d.adjSum[i]
	}
	for _, a := range d.adjusts {
		s, ok := sums[a.Status]
		if !ok {
			d.adjSum = append(d.adjSum, adjustSum{Status: a.Status})
			s = &d.adjSum[len(d.adjSum)-1]
			sums = map[string]*adjustSum{}
			for i := range d.adjSum {
				sums[d.adjSum[i].Status] = &d.adjSum[i]
			}
		}
		s.Count++
		s.Cents += a.Cents
	}
	return nil
}

// adjust is the count and cents of adjustments with status (any case).
func (d *dues) adjust(status string) adjustSum {
	for _, a := range d.adjSum {
		if strings.EqualFold(a.Status, status) {
			return a
		}
	}
	return adjustSum{Status: status}
}

func (d *dues) result() DuesResult {
	r := DuesResult{From: d.o.From.Format("2006-01"), To: d.o.To.Format("2006-01"), AsOf: d.asOf.Format(time.DateOnly),
		SnapshotAt: d.snapshotAt, Periods: len(d.periods), Payments: d.total.Payments, BilledCents: d.total.Billed,
		PaidCents: d.total.Paid, OutstandingCents: d.total.Outstanding, WaivedCents: d.total.Waived,
		WrittenOffCents: d.total.WrittenOff, OtherDifferenceCents: d.total.Other, OverdueMembers: int64(len(d.overdue))}
	for _, b := range d.buckets {
		r.OverdueCents += b.Cents
	}
	p, a := d.adjust("PENDING"), d.adjust("APPROVED")
	r.PendingAdjustments, r.PendingAdjustmentsCents, r.ApprovedAdjustments, r.ApprovedAdjustmentsCents = p.Count, p.Cents, a.Count, a.Cents
	if !d.hasStrip {
		r.Notes = append(r.Notes, noStripeNote)
	}
	return r
}

const noStripeNote = "This database's payment methods have no Stripe labels (stripe_card, stripe_ach, stripe_other: the older " +
	"schema); payments taken through Stripe there are recorded under the methods it has (ONLINE)."
