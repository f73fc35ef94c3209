package reports

import (
	"fmt"
	"strings"
	"time"

	"github.com/xuri/excelize/v2"

	"github.com/ip2a/ip2a-ops/pkg/reports/xlsx"
)

var categoryHeaders = []string{"Category", "Allowable", "Expenses", "Spent", "Spent in period", "Share of spend"}

func (b *wb) categories() error {
	s, st := b.s, b.St
	var rows [][]any
	total := s.exp.spent.toDate
	for _, c := range s.exp.categories {
		name := c.name
		if !c.hasName {
			name = "(no category)"
		}
		var allowed any
		switch c.allowed {
		case "yes":
			allowed = "Yes"
		case "no":
			allowed = excelize.Cell{StyleID: st.Flag, Value: "Out of policy"}
		}
		rows = append(rows, []any{b.Text(SheetCategories, 1, len(rows)+2, name), allowed,
			excelize.Cell{StyleID: st.Integer, Value: c.count}, excelize.Cell{StyleID: st.Money, Value: xlsx.Money(c.cents)},
			excelize.Cell{StyleID: st.Money, Value: xlsx.Money(c.periodCents)}, b.Share(c.cents, total, st.Percent)})
	}
	// The total row holds the SQL sums, not a sum of the cells above.
	tot := []any{excelize.Cell{StyleID: st.Bold, Value: "Total"}, nil,
		excelize.Cell{StyleID: st.IntBold, Value: s.exp.count.toDate}, excelize.Cell{StyleID: st.MoneyBold, Value: xlsx.Money(total)},
		excelize.Cell{StyleID: st.MoneyBold, Value: xlsx.Money(s.exp.spent.inPeriod)}, b.Share(total, total, st.PercentBold)}
	return b.WriteRows(SheetCategories, categoryHeaders, rows, tot)
}

// share is part/whole as a percentage cell, empty when whole is zero.
func (b *wb) share(part, whole int64, style int) any {
	if whole == 0 {
		return nil
	}
	return excelize.Cell{StyleID: style, Value: float64(part) / float64(whole)}
}

func (b *wb) period() error {
	s, st := b.s, b.St
	headers := []string{"Figure", fmt.Sprintf("In period (%s to %s)", s.from.Format(time.DateOnly), s.to.Format(time.DateOnly)),
		"Through period end", "To date (whole grant)"}
	count := func(label string, p periodCount, ok bool) []any {
		if !ok {
			return []any{label, nil, nil, nil}
		}
		return []any{label, excelize.Cell{StyleID: st.Integer, Value: p.inPeriod},
			excelize.Cell{StyleID: st.Integer, Value: p.throughEnd}, excelize.Cell{StyleID: st.Integer, Value: p.toDate}}
	}
	e, x := s.enr, s.exp
	rows := [][]any{
		count("New enrollments", e.newEnrollments, true),
		count("Completions", e.completions, true),
		count("Placements", e.placements, s.hasGE),
		count("Credentials earned", e.credentials, true),
		count("Expenses (rows)", x.count, true),
		{"Spend", excelize.Cell{StyleID: st.Money, Value: xlsx.Money(x.spent.inPeriod)},
			excelize.Cell{StyleID: st.Money, Value: xlsx.Money(x.spent.throughEnd)}, excelize.Cell{StyleID: st.Money, Value: xlsx.Money(x.spent.toDate)}},
	}
	return b.WriteRows(SheetPeriod, headers, rows, nil)
}

// summary is a form, not a table: label in A, value in B (targets use B-D).
func (b *wb) summary() error {
	s, st := b.s, b.St
	g, e, x := s.grant, s.enr, s.exp
	f := b.NewForm(SheetSummary, 4)
	optStr := func(p *string) any {
		if p == nil {
			return nil
		}
		return *p
	}
	optDate := func(p *time.Time) any {
		if p == nil {
			return nil
		}
		return *p
	}
	ratio := func(part, whole int64) any {
		if whole == 0 {
			return nil
		}
		return float64(part) / float64(whole)
	}
	var steps []func() error
	add := func(fn func() error) { steps = append(steps, fn) }
	line := func(label string, v any, style int) { add(func() error { return f.Line(label, v, style) }) }
	section := func(title string) { add(func() error { return f.Section(title) }) }
	add(func() error { return f.Title("Grant report: " + g.name) })
	line("Grantee", s.o.Grantee, 0)
	line("Program", s.o.Program, 0)
	section("Grant")
	line("Name", g.name, 0)
	line("Number", g.number, 0)
	line("Funder", optStr(g.funder), 0)
	if g.hasStatus {
		line("Status", optStr(g.status), 0)
	} else {
		active := "inactive"
		if g.isActive {
			active = "active"
		}
		line("Status", active+" (is_active; this schema has no grant status)", 0)
	}
	line("Start date", g.start, st.Date)
	line("End date", optDate(g.end), st.Date)
	line("Reporting frequency", optStr(g.frequency), 0)
	line("Next report due", optDate(g.nextReportDue), st.Date)
	section("Reporting period")
	line("Period start", s.from, st.Date)
	line("Period end", s.to, st.Date)
	line("Generated at (UTC)", s.o.Now.UTC(), st.DateTime)
	line("Data snapshot at (UTC)", s.snapshotAt.UTC(), st.DateTime)
	section("Enrollment (to date)")
	line("Enrolled", e.total, st.Integer)
	line("Active (enrolled or active)", e.enrolled+e.active, st.Integer)
	line("Completed", e.completed, st.Integer)
	line("Withdrawn", e.withdrawn, st.Integer)
	line("Dropped", e.dropped, st.Integer)
	line("Attrition (withdrawn + dropped)", e.withdrawn+e.dropped, st.Integer)
	line("Retention rate", ratio(e.total-e.withdrawn-e.dropped, e.total), st.Percent)
	section("Money (to date)")
	line("Budget", xlsx.Money(g.budget), st.Money)
	line("Spent", xlsx.Money(x.spent.toDate), st.Money)
	line("Remaining", xlsx.Money(g.budget-x.spent.toDate), st.Money)
	line("Utilization", ratio(x.spent.toDate, g.budget), st.Percent)
	line("Spent out of policy", xlsx.Money(x.outOfPolicy), st.Money)
	section("Outcomes (to date)")
	if s.hasGE {
		for _, o := range e.outcomes {
			line(outcomeLabel(o.Label), o.N, st.Integer)
		}
		line("No outcome recorded", e.noOutcome, st.Integer)
		line("Placements (employment + apprenticeship)", e.placements.toDate, st.Integer)
	} else {
		line("Outcomes", "not recorded by this schema (see Notes)", 0)
	}
	line("Credentials earned", e.credentials.toDate, st.Integer)
	section("Targets")
	// Goal, actual and progress are numbers: their headers align right, above them.
	add(func() error { return f.Header("Target", "Goal", "Actual", "Progress") })
	target := func(label string, goal *int32, actual int64) {
		add(func() error {
			goalCell := xlsx.Cell{V: "no target", Style: st.Right}
			var progress xlsx.Cell
			if goal != nil {
				goalCell = xlsx.Cell{V: int64(*goal), Style: st.Integer}
				if *goal > 0 {
					progress = xlsx.Cell{V: float64(actual) / float64(*goal), Style: st.Percent}
				}
			}
			return f.Row(xlsx.Cell{V: label}, goalCell, xlsx.Cell{V: actual, Style: st.Integer}, progress)
		})
	}
	target("Enrollment", g.targetEnroll, e.total)
	target("Completion", g.targetCompl, e.completed)
	target("Placement", g.targetPlace, e.placements.toDate)
	for _, fn := range steps {
		if err := fn(); err != nil {
			return err
		}
	}
	return f.Close()
}

// outcomeLabel turns an enum label into words: obtained_employment ->
// "Obtained employment".
func outcomeLabel(l string) string {
	w := strings.ReplaceAll(l, "_", " ")
	if w == "" {
		return w
	}
	return strings.ToUpper(w[:1]) + w[1:]
}

func (b *wb) notes() error {
	s := b.s
	s.truncated = b.Truncated()
	ns := s.noteList()
	out := make([]xlsx.Note, len(ns))
	for i, n := range ns {
		out[i] = xlsx.Note{Topic: n.topic, Text: n.text}
	}
	return b.WriteNotes(SheetNotes, out)
}

// noteList is what every figure means and the caveats, for the Notes
// sheet and the PDF's notes.
func (s *snapshot) noteList() []note {
	period := s.from.Format(time.DateOnly) + " to " + s.to.Format(time.DateOnly)
	ns := []note{
		{"Generated", fmt.Sprintf("By ip2a-ops %s at %s UTC, from one REPEATABLE READ READ ONLY snapshot of the database "+
			"taken at %s UTC: every figure and row in this report comes from that same instant.", s.o.ToolVersion,
			s.o.Now.UTC().Format(time.DateTime), s.snapshotAt.UTC().Format(time.DateTime))},
		{"Time zone", fmt.Sprintf("Dates (enrollment, completion, outcome, placement, purchase) are calendar dates as "+
			"stored, without a time zone. Times in this report are UTC; the app stores its timestamps in UTC "+
			"(the database session time zone was %s).", s.timeZone)},
		{"Reporting period", fmt.Sprintf("%s, both days included. 'In period' counts rows whose date falls inside it; "+
			"'Through period end' counts rows dated on or before its last day; 'To date' counts every live row in the "+
			"snapshot, including any dated after the period. The Summary shows figures to date.", period)},
		{"Enrolled", "Grant enrollments of this grant (grant_enrollments), each student once."},
		{"Active", "Enrollments whose status is enrolled or active."},
		{"Completed", "Enrollments whose status is completed; in a period, those whose completion date falls in it."},
		{"Attrition", "Enrollments whose status is withdrawn plus those whose status is dropped."},
		{"Retention rate", "(Enrolled - attrition) / enrolled; blank when nobody is enrolled."},
		{"Budget", "grants.total_amount."},
		{"Spent", "The sum of total_price of the grant's live expenses, summed in the database as exact decimals " +
			"(grants.spent_amount is not maintained by the app and is not used). Every money figure is exact to the cent."},
		{"Remaining", "Budget - spent; negative when the grant is overspent."},
		{"Utilization", "Spent / budget; blank when the budget is zero."},
		{"Outcomes", "Enrollments by grant_enrollments.outcome, one row per outcome kind the database defines."},
		{"Placements", "Enrollments whose outcome is obtained_employment or entered_apprenticeship; in a period, by outcome date."},
		{"Credentials earned", "Live rows of credentials and certifications (which have no soft delete) of the grant's " +
			"students issued on or after the student's grant enrollment date; in a period, by issue date. A credential " +
			"recorded in both tables counts twice."},
		{"Targets", "target_enrollment, target_completion and target_placement of the grant; progress = actual / target."},
		{"Hourly wage", "placement_wage is free text (\"$18.50/hr\"); the Hourly wage column holds it as a number when " +
			"it reads as an hourly amount, and is blank otherwise."},
		{"Allowable categories", s.policyNote},
		{"Text", "Line breaks are written as line feeds (a carriage return, alone or before a line feed, becomes one) " +
			"and tabs as spaces up to the next multiple of four characters, so that every program prints them alike."},
		{"Soft-deleted rows", "Rows with is_deleted set or deleted_at set are excluded everywhere: the app sets both, " +
			"but nothing enforces it and parts of the app filter one or the other, so either one marks a row deleted. " +
			"Students or members deleted after enrolling are still listed, because their grant enrollment is not."},
	}
	ns = append(ns, s.excluded...)
	ns = append(ns, s.caveats...)
	if len(s.truncated) > 0 {
		ns = append(ns, note{"Truncated cells", xlsx.TruncatedNote(s.truncated)})
	}
	return ns
}
