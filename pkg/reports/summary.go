package reports

import (
	"fmt"
	"strings"
	"time"

	"github.com/xuri/excelize/v2"
)

var categoryHeaders = []string{"Category", "Allowable", "Expenses", "Spent", "Spent in period", "Share of spend"}

func (b *wb) categories() error {
	s, st := b.s, b.st
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
			allowed = excelize.Cell{StyleID: st.flag, Value: "Out of policy"}
		}
		rows = append(rows, []any{b.text(SheetCategories, 1, len(rows)+2, name), allowed,
			excelize.Cell{StyleID: st.integer, Value: c.count}, excelize.Cell{StyleID: st.money, Value: money(c.cents)},
			excelize.Cell{StyleID: st.money, Value: money(c.periodCents)}, b.share(c.cents, total, st.percent)})
	}
	// The total row holds the SQL sums, not a sum of the cells above.
	tot := []any{excelize.Cell{StyleID: st.bold, Value: "Total"}, nil,
		excelize.Cell{StyleID: st.intBold, Value: s.exp.count.toDate}, excelize.Cell{StyleID: st.moneyBold, Value: money(total)},
		excelize.Cell{StyleID: st.moneyBold, Value: money(s.exp.spent.inPeriod)}, b.share(total, total, st.percentBold)}
	return b.writeRows(SheetCategories, categoryHeaders, rows, tot)
}

// share is part/whole as a percentage cell, empty when whole is zero.
func (b *wb) share(part, whole int64, style int) any {
	if whole == 0 {
		return nil
	}
	return excelize.Cell{StyleID: style, Value: float64(part) / float64(whole)}
}

func (b *wb) period() error {
	s, st := b.s, b.st
	headers := []string{"Figure", fmt.Sprintf("In period (%s to %s)", s.from.Format(time.DateOnly), s.to.Format(time.DateOnly)),
		"Through period end", "To date (whole grant)"}
	count := func(label string, p periodCount, ok bool) []any {
		if !ok {
			return []any{label, nil, nil, nil}
		}
		return []any{label, excelize.Cell{StyleID: st.integer, Value: p.inPeriod},
			excelize.Cell{StyleID: st.integer, Value: p.throughEnd}, excelize.Cell{StyleID: st.integer, Value: p.toDate}}
	}
	e, x := s.enr, s.exp
	rows := [][]any{
		count("New enrollments", e.newEnrollments, true),
		count("Completions", e.completions, true),
		count("Placements", e.placements, s.hasGE),
		count("Credentials earned", e.credentials, true),
		count("Expenses (rows)", x.count, true),
		{"Spend", excelize.Cell{StyleID: st.money, Value: money(x.spent.inPeriod)},
			excelize.Cell{StyleID: st.money, Value: money(x.spent.throughEnd)}, excelize.Cell{StyleID: st.money, Value: money(x.spent.toDate)}},
	}
	return b.writeRows(SheetPeriod, headers, rows, nil)
}

// summary is a form, not a table: label in A, value in B (targets use B-D).
func (b *wb) summary() error {
	s, st, f := b.s, b.st, b.f
	g, e, x := s.grant, s.enr, s.exp
	const sh = SheetSummary
	row := 0
	var widthA, widthB int
	put := func(col int, v any, style int) error {
		ref, _ := excelize.CoordinatesToCellName(col, row)
		if str, ok := v.(string); ok {
			v = b.text(sh, col, row, str)
			if col == 1 && row > 1 { // the title may overhang
				widthA = max(widthA, textWidth(str))
			} else if col == 2 && row > 1 {
				widthB = max(widthB, textWidth(str))
			}
		}
		if v != nil {
			if err := f.SetCellValue(sh, ref, v); err != nil {
				return err
			}
		}
		if style != 0 {
			return f.SetCellStyle(sh, ref, ref, style)
		}
		return nil
	}
	line := func(label string, v any, style int) error {
		row++
		if err := put(1, label, 0); err != nil {
			return err
		}
		return put(2, v, style)
	}
	section := func(title string) error {
		row += 2
		ref, _ := excelize.CoordinatesToCellName(1, row)
		end, _ := excelize.CoordinatesToCellName(4, row)
		if err := f.SetCellValue(sh, ref, title); err != nil {
			return err
		}
		return f.SetCellStyle(sh, ref, end, st.section)
	}
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
	add(func() error { row = 1; return put(1, "Grant report: "+g.name, st.title) })
	add(func() error { return line("Grantee", s.o.Grantee, 0) })
	add(func() error { return line("Program", s.o.Program, 0) })
	add(func() error { return section("Grant") })
	add(func() error { return line("Name", g.name, 0) })
	add(func() error { return line("Number", g.number, 0) })
	add(func() error { return line("Funder", optStr(g.funder), 0) })
	add(func() error {
		if g.hasStatus {
			return line("Status", optStr(g.status), 0)
		}
		active := "inactive"
		if g.isActive {
			active = "active"
		}
		return line("Status", active+" (is_active; this schema has no grant status)", 0)
	})
	add(func() error { return line("Start date", g.start, st.date) })
	add(func() error { return line("End date", optDate(g.end), st.date) })
	add(func() error { return line("Reporting frequency", optStr(g.frequency), 0) })
	add(func() error { return line("Next report due", optDate(g.nextReportDue), st.date) })
	add(func() error { return section("Reporting period") })
	add(func() error { return line("Period start", s.from, st.date) })
	add(func() error { return line("Period end", s.to, st.date) })
	add(func() error { return line("Generated at (UTC)", s.o.Now.UTC(), st.dateTime) })
	add(func() error { return line("Data snapshot at (UTC)", s.snapshotAt.UTC(), st.dateTime) })
	add(func() error { return section("Enrollment (to date)") })
	add(func() error { return line("Enrolled", e.total, st.integer) })
	add(func() error { return line("Active (enrolled or active)", e.enrolled+e.active, st.integer) })
	add(func() error { return line("Completed", e.completed, st.integer) })
	add(func() error { return line("Withdrawn", e.withdrawn, st.integer) })
	add(func() error { return line("Dropped", e.dropped, st.integer) })
	add(func() error { return line("Attrition (withdrawn + dropped)", e.withdrawn+e.dropped, st.integer) })
	add(func() error { return line("Retention rate", ratio(e.total-e.withdrawn-e.dropped, e.total), st.percent) })
	add(func() error { return section("Money (to date)") })
	add(func() error { return line("Budget", money(g.budget), st.money) })
	add(func() error { return line("Spent", money(x.spent.toDate), st.money) })
	add(func() error { return line("Remaining", money(g.budget-x.spent.toDate), st.money) })
	add(func() error { return line("Utilization", ratio(x.spent.toDate, g.budget), st.percent) })
	add(func() error { return line("Spent out of policy", money(x.outOfPolicy), st.money) })
	add(func() error { return section("Outcomes (to date)") })
	if s.hasGE {
		for _, o := range e.outcomes {
			add(func() error { return line(outcomeLabel(o.label), o.n, st.integer) })
		}
		add(func() error { return line("No outcome recorded", e.noOutcome, st.integer) })
		add(func() error { return line("Placements (employment + apprenticeship)", e.placements.toDate, st.integer) })
	} else {
		add(func() error { return line("Outcomes", "not recorded by this schema (see Notes)", 0) })
	}
	add(func() error { return line("Credentials earned", e.credentials.toDate, st.integer) })
	add(func() error { return section("Targets") })
	add(func() error {
		row++
		// Goal, actual and progress are numbers: their headers align right, above them.
		for i, h := range []string{"Target", "Goal", "Actual", "Progress"} {
			style := st.boldNum
			if i == 0 {
				style = st.bold
			}
			if err := put(i+1, h, style); err != nil {
				return err
			}
		}
		return nil
	})
	target := func(label string, goal *int32, actual int64) func() error {
		return func() error {
			row++
			if err := put(1, label, 0); err != nil {
				return err
			}
			if goal == nil {
				if err := put(2, "no target", st.right); err != nil {
					return err
				}
			} else if err := put(2, int64(*goal), st.integer); err != nil {
				return err
			}
			if err := put(3, actual, st.integer); err != nil {
				return err
			}
			if goal != nil && *goal > 0 {
				return put(4, float64(actual)/float64(*goal), st.percent)
			}
			return nil
		}
	}
	add(target("Enrollment", g.targetEnroll, e.total))
	add(target("Completion", g.targetCompl, e.completed))
	add(target("Placement", g.targetPlace, e.placements.toDate))
	for _, fn := range steps {
		if err := fn(); err != nil {
			return err
		}
	}
	if err := f.SetColWidth(sh, "A", "A", colWidth(widthA, 12)); err != nil {
		return err
	}
	if err := f.SetColWidth(sh, "B", "B", colWidth(max(widthB, 19), 16)); err != nil {
		return err
	}
	if err := f.SetColWidth(sh, "C", "D", 14); err != nil {
		return err
	}
	if err := f.SetSheetDimension(sh, fmt.Sprintf("A1:D%d", row)); err != nil {
		return err
	}
	// One portrait page: a form a few dozen rows long, so no block (the
	// outcomes, the targets) is split across pages.
	portrait, one, fit := "portrait", 1, true
	if err := f.SetPageLayout(sh, &excelize.PageLayoutOptions{Orientation: &portrait, FitToWidth: &one, FitToHeight: &one}); err != nil {
		return err
	}
	return f.SetSheetProps(sh, &excelize.SheetPropsOptions{FitToPage: &fit})
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
	period := s.from.Format(time.DateOnly) + " to " + s.to.Format(time.DateOnly)
	ns := []note{
		{"Generated", fmt.Sprintf("By ip2a-ops %s at %s UTC, from one REPEATABLE READ READ ONLY snapshot of the database "+
			"taken at %s UTC: every figure and row in this workbook comes from that same instant.", s.o.ToolVersion,
			s.o.Now.UTC().Format(time.DateTime), s.snapshotAt.UTC().Format(time.DateTime))},
		{"Time zone", fmt.Sprintf("Dates (enrollment, completion, outcome, placement, purchase) are calendar dates as "+
			"stored, without a time zone. Times in this workbook are UTC; the app stores its timestamps in UTC "+
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
		ns = append(ns, note{"Truncated cells", truncatedNote(s.truncated)})
	}
	rows := make([][]any, len(ns))
	for i, n := range ns {
		rows[i] = []any{n.topic, b.text(SheetNotes, 2, i+2, n.text)}
	}
	// The note column is as wide as a landscape page allows beside the
	// topics, and its text wraps: unwrapped, fit-to-width shrank the page
	// to the longest note.
	return b.writeTable(SheetNotes, notesColumns(ns), rows, nil)
}

// noteWidth is the Notes sheet's note column, in characters.
const noteWidth = 90

func notesColumns(ns []note) []column {
	w := len("Topic")
	for _, n := range ns {
		w = max(w, textWidth(n.topic))
	}
	return []column{{header: "Topic", width: colWidth(w, 12)}, {header: "Note", width: noteWidth}}
}
