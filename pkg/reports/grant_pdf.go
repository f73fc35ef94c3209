package reports

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ip2a/ip2a-ops/pkg/reports/pdf"
)

// monthSpend is one month's spend of a grant.
type monthSpend struct {
	Month string
	Cents int64
}

// spendByMonth reads the grant's live spend per calendar month of
// purchase, every month from the first purchase to the last (months
// without spend included).
func spendByMonth(ctx context.Context, tx pgx.Tx, grant int32) ([]monthSpend, error) {
	rows, err := tx.Query(ctx, `WITH x AS (SELECT date_trunc('month', purchased_at)::date AS m, total_price FROM expenses x
			WHERE x.grant_id = $1 AND `+notDeleted("x")+`)
		SELECT to_char(g.m, 'YYYY-MM'), coalesce((sum(x.total_price) * 100)::bigint, 0)
		FROM generate_series((SELECT min(m) FROM x), (SELECT max(m) FROM x), interval '1 month') AS g(m)
		LEFT JOIN x ON x.m = g.m::date GROUP BY g.m ORDER BY g.m`, grant)
	if err != nil {
		return nil, fmt.Errorf("read spend by month: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowToStructByPos[monthSpend])
}

// outOfPolicyExpense is an expense in a category the grant does not allow.
type outOfPolicyExpense struct {
	Purchased        time.Time
	Item             string
	Category, Vendor *string
	Cents            int64
}

func (s *snapshot) outOfPolicyExpenses(ctx context.Context, tx pgx.Tx) ([]outOfPolicyExpense, error) {
	if s.policy == nil {
		return nil, nil
	}
	keys := make([]string, len(s.policy))
	for i, p := range s.policy {
		keys[i] = policyKey(p)
	}
	rows, err := tx.Query(ctx, `SELECT x.purchased_at, x.item, x.category, x.vendor, (x.total_price * 100)::bigint FROM expenses x
		WHERE x.grant_id = $1 AND `+notDeleted("x")+` AND (x.category IS NULL OR NOT lower(regexp_replace(x.category, '^\s+|\s+$', '', 'g')) = ANY($2))
		ORDER BY x.purchased_at, x.id`, s.grant.id, keys)
	if err != nil {
		return nil, fmt.Errorf("read out-of-policy expenses: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowToStructByPos[outOfPolicyExpense])
}

// writePDF writes the grant's summary for a funder on paper.
func (d *grantDoc) writePDF(ctx context.Context, w io.Writer) error {
	s, tx := d.s, d.tx
	g, e, x := s.grant, s.enr, s.exp
	months, err := spendByMonth(ctx, tx, g.id)
	if err != nil {
		return err
	}
	outside, err := s.outOfPolicyExpenses(ctx, tx)
	if err != nil {
		return err
	}
	period := periodText(s.from, s.to)
	doc := pdf.New(pdf.Meta{Title: fmt.Sprintf("Grant report: %s (%s)", g.name, g.number),
		Subject: fmt.Sprintf("Grant %s, reporting period %s", g.number, period), Keywords: "grant report; " + g.number,
		Author: s.o.Grantee, Created: s.o.Now, Header: fmt.Sprintf("Grant report %s · %s", g.number, period)})
	doc.Title("Grant report: "+g.name, s.o.Grantee+" · "+s.o.Program,
		fmt.Sprintf("Grant %s · funder %s · %s", g.number, deref(g.funder), grantStatusText(g)))

	doc.Heading("Reporting period", pdf.KVHeight(5))
	doc.KVs([]pdf.KV{{Label: "Period", Value: period}, {Label: "Grant start", Value: g.start.Format(time.DateOnly)},
		{Label: "Grant end", Value: optDay(g.end)}, {Label: "Generated at (UTC)", Value: s.o.Now.UTC().Format(time.DateTime)},
		{Label: "Data snapshot at (UTC)", Value: s.snapshotAt.UTC().Format(time.DateTime)}})

	doc.Heading("Enrollment (to date)", pdf.KVHeight(7))
	doc.KVs([]pdf.KV{{Label: "Enrolled", Value: intText(e.total), Bold: true},
		{Label: "Active (enrolled or active)", Value: intText(e.enrolled + e.active)},
		{Label: "Completed", Value: intText(e.completed)}, {Label: "Withdrawn", Value: intText(e.withdrawn)},
		{Label: "Dropped", Value: intText(e.dropped)}, {Label: "Attrition (withdrawn + dropped)", Value: intText(e.withdrawn + e.dropped)},
		{Label: "Retention rate", Value: pctText(e.total-e.withdrawn-e.dropped, e.total)}})
	var outcomes []pdf.KV
	if s.hasGE {
		for _, o := range e.outcomes {
			outcomes = append(outcomes, pdf.KV{Label: outcomeLabel(o.Label), Value: intText(o.N)})
		}
		outcomes = append(outcomes, pdf.KV{Label: "No outcome recorded", Value: intText(e.noOutcome)},
			pdf.KV{Label: "Placements (employment + apprenticeship)", Value: intText(e.placements.toDate), Bold: true})
	} else {
		outcomes = append(outcomes, pdf.KV{Label: "Outcomes", Value: "not recorded by this schema (see notes)"})
	}
	outcomes = append(outcomes, pdf.KV{Label: "Credentials earned", Value: intText(e.credentials.toDate)})
	doc.Heading("Outcomes (to date)", pdf.KVHeight(len(outcomes)))
	doc.KVs(outcomes)

	doc.Heading("Targets", 20)
	target := func(label string, goal *int32, actual int64) []string {
		if goal == nil {
			return []string{label, "no target", intText(actual), ""}
		}
		return []string{label, intText(int64(*goal)), intText(actual), pctText(actual, int64(*goal))}
	}
	doc.Table([]pdf.Col{{Header: "Target", Weight: 3}, {Header: "Goal", Weight: 1, Numeric: true}, {Header: "Actual", Weight: 1, Numeric: true},
		{Header: "Progress", Weight: 1, Numeric: true}}, [][]string{target("Enrollment", g.targetEnroll, e.total),
		target("Completion", g.targetCompl, e.completed), target("Placement", g.targetPlace, e.placements.toDate)}, nil)

	doc.Heading("Budget, spend and remaining", pdf.KVHeight(7))
	doc.KVs([]pdf.KV{{Label: "Budget", Value: formatCents(g.budget), Bold: true}, {Label: "Spent (to date)", Value: formatCents(x.spent.toDate)},
		{Label: "Remaining", Value: formatCents(g.budget - x.spent.toDate), Bold: true},
		{Label: "Utilization", Value: pctText(x.spent.toDate, g.budget)},
		{Label: "Spent in the period", Value: formatCents(x.spent.inPeriod)},
		{Label: "Expenses (to date)", Value: intText(x.count.toDate)},
		{Label: "Spent out of policy", Value: formatCents(x.outOfPolicy)}})

	var catRows [][]string
	var catBars []pdf.Bar
	for _, c := range x.categories {
		name := c.name
		if !c.hasName {
			name = "(no category)"
		}
		allowed := map[string]string{"yes": "yes", "no": "OUT OF POLICY"}[c.allowed]
		catRows = append(catRows, []string{name, allowed, intText(c.count), formatCents(c.cents), formatCents(c.periodCents),
			pctText(c.cents, x.spent.toDate)})
		catBars = append(catBars, pdf.Bar{Label: name, Value: float64(c.cents), Text: formatCents(c.cents), Alert: c.allowed == "no"})
	}
	doc.Heading("Spend by category (to date)", 30)
	doc.Table([]pdf.Col{{Header: "Category", Weight: 3}, {Header: "Allowable", Weight: 1.6}, {Header: "Expenses", Weight: 1.2, Numeric: true},
		{Header: "Spent", Weight: 1.8, Numeric: true}, {Header: "Spent in period", Weight: 1.8, Numeric: true},
		{Header: "Share", Weight: 1.2, Numeric: true}}, catRows,
		[]string{"Total", "", intText(x.count.toDate), formatCents(x.spent.toDate), formatCents(x.spent.inPeriod), pctText(x.spent.toDate, x.spent.toDate)})
	doc.BarChart(catBars)

	doc.Heading("Spend by month of purchase", float64(min(len(months), 12))*5.5)
	if len(months) == 0 {
		doc.Paragraphs([]string{"No expenses."})
	}
	var monthBars []pdf.Bar
	for _, m := range months {
		monthBars = append(monthBars, pdf.Bar{Label: m.Month, Value: float64(m.Cents), Text: formatCents(m.Cents)})
	}
	doc.BarChart(monthBars)

	doc.Heading("Out-of-policy expenses", 15)
	switch {
	case s.policy == nil:
		doc.Paragraphs([]string{"The grant lists no allowable categories (or not as a list), so no expense is out of policy."})
	case len(outside) == 0:
		doc.Paragraphs([]string{"None: every expense is in an allowable category."})
	default:
		rows := make([][]string, len(outside))
		var sum int64
		for i, o := range outside {
			rows[i] = []string{o.Purchased.Format(time.DateOnly), o.Item, orText(o.Category, "(no category)"), deref(o.Vendor), formatCents(o.Cents)}
			sum += o.Cents
		}
		doc.Table([]pdf.Col{{Header: "Purchased", Weight: 1.3}, {Header: "Item", Weight: 3}, {Header: "Category", Weight: 2},
			{Header: "Vendor", Weight: 2.2}, {Header: "Total", Weight: 1.5, Numeric: true}}, rows,
			[]string{"Total", "", "", "", formatCents(sum)})
	}

	notes := s.noteList()
	pairs := make([][2]string, len(notes))
	for i, n := range notes {
		pairs[i] = [2]string{n.topic, n.text}
	}
	doc.Heading("Notes", 15)
	doc.Notes(pairs)
	return doc.Write(w)
}

func grantStatusText(g grantRow) string {
	if g.hasStatus {
		return "status " + deref(g.status)
	}
	if g.isActive {
		return "active"
	}
	return "inactive"
}

func optDay(t *time.Time) string {
	if t == nil {
		return ""
	}
	return t.Format(time.DateOnly)
}

func orText(p *string, def string) string {
	if p == nil {
		return def
	}
	return *p
}
