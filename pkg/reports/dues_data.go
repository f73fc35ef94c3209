package reports

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// dues is every figure of the dues report, money in cents.
type dues struct {
	reportBase
	o        DuesOptions
	asOf     time.Time // overdue ages are counted to this day
	ids      []int32   // the selected dues_periods
	open     []string  // duespaymentstatus labels of unpaid dues
	waived   []string  // the WAIVED label, as stored (none: the enum lacks it)
	writeOff []string  // the WRITTEN_OFF label
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

// livePay is the live payment rows of the selected periods ($1: their ids,
// from dues_periods): selecting by id lets a short range use the
// period_id index, and every query reads the rows the same way.
const livePay = `dues_payments p WHERE p.period_id = ANY($1) AND NOT p.is_deleted AND p.deleted_at IS NULL`

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
	if lbl, ok := base.info.Label("duespaymentstatus", "WAIVED"); ok {
		d.waived = []string{lbl}
	}
	if lbl, ok := base.info.Label("duespaymentstatus", "WRITTEN_OFF"); ok {
		d.writeOff = []string{lbl}
	}
	_, d.hasStrip = base.info.Label("duespaymentmethod", "stripe_card")
	for _, step := range []struct {
		what string
		fn   func(context.Context, pgx.Tx) error
	}{{"dues", d.loadFigures}, {"overdue dues", d.loadOverdue},
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

// loadFigures selects the periods and sums their payment rows in one
// hashed pass grouped by period, member classification and payment method,
// rolled up here into the per-month, per-class, per-method and total
// figures (cents, exact); members are counted distinct by two more small
// queries.
func (d *dues) loadFigures(ctx context.Context, tx pgx.Tx) error {
	rows, err := tx.Query(ctx, `SELECT id, to_char(make_date(period_year, period_month, 1), 'YYYY-MM') FROM dues_periods
		WHERE make_date(period_year, period_month, 1) BETWEEN $1 AND $2 ORDER BY 2, id`, d.o.From, d.o.To)
	if err != nil {
		return err
	}
	monthOfPeriod := map[int32]string{}
	var months []string
	var (
		id    int32
		month string
	)
	if _, err := pgx.ForEachRow(rows, []any{&id, &month}, func() error {
		d.ids = append(d.ids, id)
		monthOfPeriod[id] = month
		if len(months) == 0 || months[len(months)-1] != month {
			months = append(months, month) // two periods of one month are summed
		}
		return nil
	}); err != nil {
		return err
	}
	if len(d.ids) == 0 {
		return nil
	}
	open := quotedList(d.open)
	diff := "(p.amount_due - p.amount_paid)"
	cents := func(e string) string { return "coalesce((sum(" + e + ") * 100)::bigint, 0)" }
	// Grouped by the raw columns and compared as enum values (the labels
	// come from pg_enum): casting 1.2M rows to text was most of the query.
	rows, err = tx.Query(ctx, `SELECT period_id, coalesce(class::text, ''), coalesce(method::text, ''), n, billed, paid, outstanding,
			waived, written_off, with_paid
		FROM (SELECT p.period_id, m.classification AS class, p.payment_method AS method, count(*) AS n,
				`+cents("p.amount_due")+` AS billed, `+cents("p.amount_paid")+` AS paid,
				`+cents(diff+") FILTER (WHERE p.status IN ("+open+")")+` AS outstanding,
				`+cents(diff+") FILTER (WHERE p.status IN ("+quotedList(d.waived)+")")+` AS waived,
				`+cents(diff+") FILTER (WHERE p.status IN ("+quotedList(d.writeOff)+")")+` AS written_off,
				count(*) FILTER (WHERE p.amount_paid <> 0) AS with_paid
			FROM dues_payments p LEFT JOIN members m ON m.id = p.member_id
			WHERE p.period_id = ANY($1) AND NOT p.is_deleted AND p.deleted_at IS NULL
			GROUP BY 1, 2, 3) g`, d.ids)
	if err != nil {
		return err
	}
	byMonth, byClass := map[string]*duesFigures{}, map[string]*duesFigures{}
	byMethod := map[string]*methodRow{}
	var (
		class, method string
		f             duesFigures
		withPaid      int64
	)
	add := func(to *duesFigures) {
		to.Payments += f.Payments
		to.Billed += f.Billed
		to.Paid += f.Paid
		to.Outstanding += f.Outstanding
		to.Waived += f.Waived
		to.WrittenOff += f.WrittenOff
	}
	get := func(m map[string]*duesFigures, k string) *duesFigures {
		if m[k] == nil {
			m[k] = &duesFigures{Label: k}
		}
		return m[k]
	}
	if _, err := pgx.ForEachRow(rows, []any{&id, &class, &method, &f.Payments, &f.Billed, &f.Paid, &f.Outstanding, &f.Waived,
		&f.WrittenOff, &withPaid}, func() error {
		add(get(byMonth, monthOfPeriod[id]))
		add(get(byClass, class))
		add(&d.total)
		if byMethod[method] == nil {
			byMethod[method] = &methodRow{Method: method}
		}
		byMethod[method].Payments += withPaid
		byMethod[method].Paid += f.Paid
		return nil
	}); err != nil {
		return err
	}
	// Members billed, distinct, per classification (each member has one,
	// so the total is their sum). Per period it would cost a pass of its
	// own; there is a payment row per member and period.
	var n int64
	rows, err = tx.Query(ctx, `SELECT coalesce(m.classification::text, ''), count(*) FROM (SELECT DISTINCT p.member_id FROM `+livePay+`) x
		LEFT JOIN members m ON m.id = x.member_id GROUP BY 1`, d.ids)
	if err != nil {
		return err
	}
	if _, err := pgx.ForEachRow(rows, []any{&class, &n}, func() error {
		get(byClass, class).Members = n
		d.total.Members += n
		return nil
	}); err != nil {
		return err
	}
	finish := func(f *duesFigures) duesFigures {
		f.Other = f.Billed - f.Paid - f.Outstanding - f.Waived - f.WrittenOff
		return *f
	}
	d.total.Label = "Total"
	finish(&d.total)
	for _, m := range months {
		d.periods = append(d.periods, finish(get(byMonth, m)))
	}
	classes := make([]string, 0, len(byClass))
	for c := range byClass {
		classes = append(classes, c)
	}
	sort.Strings(classes)
	for _, c := range classes {
		d.classes = append(d.classes, finish(byClass[c]))
	}
	// Every method the database defines, then rows with none recorded,
	// then labels the enum no longer has.
	for _, l := range append(d.info.EnumLabels("duespaymentmethod"), "") {
		m, ok := byMethod[l]
		if !ok {
			m = &methodRow{Method: l}
		}
		if l != "" || ok {
			d.methods = append(d.methods, *m)
		}
		delete(byMethod, l)
	}
	var extra []string
	for l := range byMethod {
		extra = append(extra, l)
	}
	sort.Strings(extra)
	for _, l := range extra {
		d.methods = append(d.methods, *byMethod[l])
	}
	return nil
}

// loadOverdue reads, in one pass, each member with dues still open past
// the grace period: the sum owed, the periods, the oldest, and what they
// owe in each age bucket (rows by their own age).
func (d *dues) loadOverdue(ctx context.Context, tx pgx.Tx) error {
	open := quotedList(d.open)
	var buckets string
	for _, b := range overdueBuckets {
		cond := fmt.Sprintf("od.days >= %d", b.lo)
		if b.hi > 0 {
			cond += fmt.Sprintf(" AND od.days <= %d", b.hi)
		}
		buckets += ", coalesce((sum(od.owed) FILTER (WHERE " + cond + ") * 100)::bigint, 0)"
	}
	if len(d.ids) == 0 {
		return nil
	}
	rows, err := tx.Query(ctx, `WITH od AS (SELECT p.member_id, p.amount_due - p.amount_paid AS owed, d.grace_period_end,
			($2::date - d.grace_period_end) AS days
			FROM dues_payments p JOIN dues_periods d ON d.id = p.period_id WHERE p.period_id = ANY($1) AND NOT p.is_deleted
			AND p.deleted_at IS NULL AND p.status IN (`+open+`) AND p.amount_due > p.amount_paid AND d.grace_period_end < $2::date)
		SELECT coalesce(m.member_number, '#' || od.member_id), coalesce(m.last_name, ''), coalesce(m.first_name, ''),
			coalesce(m.classification::text, ''), coalesce(m.status::text, ''), count(*), (sum(od.owed) * 100)::bigint,
			min(od.grace_period_end), max(od.days)`+buckets+`
		FROM od LEFT JOIN members m ON m.id = od.member_id
		GROUP BY od.member_id, m.member_number, m.last_name, m.first_name, m.classification, m.status
		ORDER BY max(od.days) DESC, sum(od.owed) DESC, 1`, d.ids, d.asOf)
	if err != nil {
		return err
	}
	d.buckets = make([]bucketRow, len(overdueBuckets))
	for i, b := range overdueBuckets {
		d.buckets[i].Label = b.label
	}
	var o overdueRow
	owed := make([]int64, len(overdueBuckets))
	dst := []any{&o.Number, &o.Last, &o.First, &o.Class, &o.Status, &o.Periods, &o.Cents, &o.OldestGrace, &o.Days}
	for i := range owed {
		dst = append(dst, &owed[i])
	}
	_, err = pgx.ForEachRow(rows, dst, func() error {
		d.overdue = append(d.overdue, o)
		d.buckets[bucketOf(o.Days)].Members++
		for i, c := range owed {
			d.buckets[i].Cents += c
		}
		return nil
	})
	return err
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
	rows, err := tx.Query(ctx, `SELECT a.created_at, coalesce(m.member_number, '#' || a.member_id), coalesce(m.last_name, ''),
		coalesce(m.first_name, ''), a.adjustment_type::text, a.status::text, a.reason, (a.amount * 100)::bigint, a.approved_at,
		to_char(make_date(d.period_year, d.period_month, 1), 'YYYY-MM')
		FROM dues_adjustments a LEFT JOIN dues_payments p ON p.id = a.payment_id AND NOT p.is_deleted AND p.deleted_at IS NULL
		LEFT JOIN dues_periods d ON d.id = p.period_id AND d.id = ANY($1)
		LEFT JOIN members m ON m.id = a.member_id
		WHERE d.id IS NOT NULL OR (a.payment_id IS NULL AND a.created_at >= $2 AND a.created_at < ($3::date + interval '1 month'))
		ORDER BY a.created_at, a.id`, d.ids, d.o.From, d.o.To)
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

// quotedList is labels as a SQL list of literals. The labels come from
// pg_enum (dbschema), never from input; a quote is doubled all the same.
func quotedList(labels []string) string {
	if len(labels) == 0 {
		return "NULL"
	}
	q := make([]string, len(labels))
	for i, l := range labels {
		q[i] = "'" + strings.ReplaceAll(l, "'", "''") + "'"
	}
	return strings.Join(q, ", ")
}
