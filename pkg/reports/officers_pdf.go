package reports

import (
	"fmt"
	"io"
	"time"

	"github.com/ip2a/ip2a-ops/pkg/reports/pdf"
	"github.com/ip2a/ip2a-ops/pkg/reports/xlsx"
)

// pdfListLimit is the most rows a PDF prints of a list that can run to
// thousands (changes, overdue members); the workbook has them all.
const pdfListLimit = 250

// limited cuts rows to pdfListLimit and says what was left out.
func limited(rows [][]string, what string) ([][]string, string) {
	if len(rows) <= pdfListLimit {
		return rows, ""
	}
	return rows[:pdfListLimit], fmt.Sprintf("The first %d of %s %s; the workbook lists them all.", pdfListLimit, intText(int64(len(rows))), what)
}

// notePairs turns Notes sheet rows into the PDF's notes.
func notePairs(ns []xlsx.Note) [][2]string {
	out := make([][2]string, len(ns))
	for i, n := range ns {
		out[i] = [2]string{n.Topic, n.Text}
	}
	return out
}

// writePDF writes the membership report on paper: the Summary's figures,
// the headcount table, the changes, the employers, and the notes. The list
// of members without employment stays in the workbook.
func (m *membership) writePDF(w io.Writer) error {
	asOf := m.o.AsOf.Format(time.DateOnly)
	period := periodText(m.o.From, m.o.To)
	doc := pdf.New(pdf.Meta{Title: "Membership report: " + m.o.Local + " (" + asOf + ")",
		Subject: "Membership as of " + asOf + ", changes " + period, Keywords: "membership report; " + asOf,
		Author: m.o.Local, Created: m.o.Now, Header: "Membership report " + asOf})
	doc.Title("Membership report: "+m.o.Local, "Members on the roll as of "+asOf+"; changes "+period,
		fmt.Sprintf("Generated %s UTC from a snapshot taken at %s UTC", m.o.Now.UTC().Format(time.DateTime), m.snapshotAt.UTC().Format(time.DateTime)))

	kv := []pdf.KV{{Label: "Members", Value: intText(m.members), Bold: true}}
	for _, s := range m.byStatus {
		kv = append(kv, pdf.KV{Label: words(s.Label), Value: intText(s.N)})
	}
	doc.Heading("Members on the roll, "+asOf, pdf.KVHeight(len(kv)))
	doc.KVs(kv)

	cols := []pdf.Col{{Header: "Classification", Weight: 2.6}}
	for _, s := range m.byStatus {
		cols = append(cols, pdf.Col{Header: words(s.Label), Weight: 1, Numeric: true})
	}
	cols = append(cols, pdf.Col{Header: "Total", Weight: 1, Numeric: true})
	var rows [][]string
	for _, c := range m.byClass {
		r := []string{words(c.Label)}
		for _, s := range m.byStatus {
			r = append(r, intText(m.matrix[[2]string{c.Label, s.Label}]))
		}
		rows = append(rows, append(r, intText(c.N)))
	}
	total := []string{"Total"}
	for _, s := range m.byStatus {
		total = append(total, intText(s.N))
	}
	doc.Heading("By classification and status", 40)
	doc.Table(cols, rows, append(total, intText(m.members)))

	labels := m.info.EnumLabels("memberstatus")
	kv = []pdf.KV{{Label: "New members", Value: intText(m.newMembers)}, {Label: "Removed (soft-deleted)", Value: intText(m.removed)},
		{Label: "Status changes (audit_logs)", Value: intText(m.nAudited)}}
	for _, s := range m.audited {
		if s.N > 0 {
			kv = append(kv, pdf.KV{Label: "    to " + labelWords(labels, s.Label), Value: intText(s.N)})
		}
	}
	kv = append(kv, pdf.KV{Label: "Not ACTIVE, record updated, no audit row", Value: intText(m.unaudited)})
	doc.Heading("Changes, "+period, pdf.KVHeight(len(kv)))
	doc.KVs(kv)

	kv = []pdf.KV{{Label: "With current employment", Value: intText(m.with)}, {Label: "Without current employment", Value: intText(m.without)},
		{Label: "ACTIVE members with current employment", Value: intText(m.activeWith)},
		{Label: "ACTIVE members without current employment", Value: intText(m.activeAll - m.activeWith)}}
	doc.Heading("Employment, "+asOf, pdf.KVHeight(len(kv)))
	doc.KVs(kv)

	var ages []pdf.Bar
	for _, a := range m.ages {
		ages = append(ages, pdf.Bar{Label: a.Label, Value: float64(a.N), Text: intText(a.N)})
	}
	doc.Heading("Age of membership, "+asOf, 36)
	doc.BarChart(ages)

	rows = rows[:0]
	for _, e := range m.employers {
		name := e.Name
		if e.Deleted {
			name += " (deleted)"
		}
		rows = append(rows, []string{name, words(e.Type), intText(e.Members), pctText(e.Members, m.with)})
	}
	doc.Heading("Employers", 20)
	doc.Table([]pdf.Col{{Header: "Employer", Weight: 4}, {Header: "Type", Weight: 1.6}, {Header: "Members", Weight: 1.2, Numeric: true},
		{Header: "Share", Weight: 1, Numeric: true}}, rows, nil)

	rows = rows[:0]
	for _, c := range m.changes {
		who := deref(c.Number)
		if c.Number == nil && c.RecordID != "" {
			who = "record_id " + c.RecordID
		}
		rows = append(rows, []string{c.Date.Format(time.DateOnly), who, deref(c.Last) + ", " + deref(c.First), c.Change, c.From, c.To, c.Source})
	}
	rows, more := limited(rows, "changes")
	doc.Heading("Changes in detail", 20)
	if more != "" {
		doc.Paragraphs([]string{more})
	}
	doc.Table([]pdf.Col{{Header: "Date", Weight: 1.3}, {Header: "Member", Weight: 1.2}, {Header: "Name", Weight: 2}, {Header: "Change", Weight: 2.2},
		{Header: "From", Weight: 1.1}, {Header: "To", Weight: 1.1}, {Header: "Source", Weight: 2.4}}, rows, nil)

	doc.Heading("Notes", 15)
	doc.Notes(notePairs(m.notes(nil)))
	return doc.Write(w)
}

// writePDF writes the dues report on paper: the Summary's figures, the
// tables by period, classification and payment method, the overdue
// members, the adjustments by status, and the notes.
func (d *dues) writePDF(w io.Writer) error {
	p := d.periodLabel()
	doc := pdf.New(pdf.Meta{Title: "Dues report: " + d.o.Local + " (" + p + ")", Subject: "Dues periods " + p,
		Keywords: "dues report; " + p, Author: d.o.Local, Created: d.o.Now, Header: "Dues report " + p})
	doc.Title("Dues report: "+d.o.Local, fmt.Sprintf("Dues periods %s (%d); overdue counted to %s", p, len(d.periods), d.asOf.Format(time.DateOnly)),
		fmt.Sprintf("Generated %s UTC from a snapshot taken at %s UTC", d.o.Now.UTC().Format(time.DateTime), d.snapshotAt.UTC().Format(time.DateTime)))
	t := d.total
	kv := []pdf.KV{{Label: "Payment rows", Value: intText(t.Payments)}, {Label: "Members billed", Value: intText(t.Members)},
		{Label: "Billed", Value: formatCents(t.Billed), Bold: true}, {Label: "Paid", Value: formatCents(t.Paid)},
		{Label: "Outstanding", Value: formatCents(t.Outstanding)}, {Label: "Waived", Value: formatCents(t.Waived)},
		{Label: "Written off", Value: formatCents(t.WrittenOff)}, {Label: "Other difference (paid rows)", Value: formatCents(t.Other)},
		{Label: "Collection rate (paid / billed)", Value: pctText(t.Paid, t.Billed)}}
	doc.Heading("Dues", pdf.KVHeight(len(kv)))
	doc.KVs(kv)

	cols := func(key string) []pdf.Col {
		return []pdf.Col{{Header: key, Weight: 2.2}, {Header: "Payments", Weight: 1.1, Numeric: true}, {Header: "Billed", Weight: 1.5, Numeric: true},
			{Header: "Paid", Weight: 1.5, Numeric: true}, {Header: "Outstanding", Weight: 1.5, Numeric: true},
			{Header: "Waived", Weight: 1.3, Numeric: true}, {Header: "Written off", Weight: 1.3, Numeric: true}}
	}
	row := func(label string, f duesFigures) []string {
		return []string{label, intText(f.Payments), formatCents(f.Billed), formatCents(f.Paid), formatCents(f.Outstanding),
			formatCents(f.Waived), formatCents(f.WrittenOff)}
	}
	var rows [][]string
	for _, f := range d.periods {
		rows = append(rows, row(f.Label, f))
	}
	doc.Heading("By period", 25)
	doc.Table(cols("Period"), rows, row("Total", t))
	rows = nil
	classes := d.info.EnumLabels("memberclassification")
	for _, f := range d.classes {
		rows = append(rows, row(labelWords(classes, f.Label), f))
	}
	doc.Heading("By classification", 25)
	doc.Table(cols("Classification"), rows, row("Total", t))

	rows = nil
	var bars []pdf.Bar
	for _, m := range d.methods {
		label := words(m.Method)
		if m.Method == "" {
			label = "(no method recorded)"
		}
		rows = append(rows, []string{label, m.Method, intText(m.Payments), formatCents(m.Paid), pctText(m.Paid, t.Paid)})
		bars = append(bars, pdf.Bar{Label: label, Value: float64(m.Paid), Text: formatCents(m.Paid)})
	}
	doc.Heading("By payment method", 40)
	doc.Table([]pdf.Col{{Header: "Payment method", Weight: 2}, {Header: "Label as stored", Weight: 2}, {Header: "Payments", Weight: 1, Numeric: true},
		{Header: "Paid", Weight: 1.4, Numeric: true}, {Header: "Share", Weight: 1, Numeric: true}}, rows, nil)
	doc.BarChart(bars)

	rows = nil
	var members, cents int64
	for _, b := range d.buckets {
		rows = append(rows, []string{b.Label, intText(b.Members), formatCents(b.Cents)})
		members += b.Members
		cents += b.Cents
	}
	doc.Heading("Overdue past the grace period", 30)
	doc.Table([]pdf.Col{{Header: "Days past the grace period", Weight: 3}, {Header: "Members", Weight: 1, Numeric: true},
		{Header: "Amount", Weight: 1.4, Numeric: true}}, rows, []string{"Total", intText(members), formatCents(cents)})
	rows = nil
	for _, o := range d.overdue {
		rows = append(rows, []string{o.Number, o.Last + ", " + o.First, words(o.Class), words(o.Status), intText(o.Periods),
			formatCents(o.Cents), o.OldestGrace.Format(time.DateOnly), intText(int64(o.Days))})
	}
	if len(rows) > 0 {
		rows, more := limited(rows, "overdue members, oldest first")
		doc.Heading("Overdue members", 20)
		if more != "" {
			doc.Paragraphs([]string{more})
		}
		doc.Table([]pdf.Col{{Header: "Member", Weight: 1.2}, {Header: "Name", Weight: 2.2}, {Header: "Classification", Weight: 1.8},
			{Header: "Status", Weight: 1.1}, {Header: "Periods", Weight: 0.9, Numeric: true}, {Header: "Amount", Weight: 1.2, Numeric: true},
			{Header: "Oldest grace end", Weight: 1.4, Numeric: true}, {Header: "Days", Weight: 0.8, Numeric: true}}, rows, nil)
	}

	rows = nil
	for _, a := range d.adjSum {
		rows = append(rows, []string{words(a.Status), intText(a.Count), formatCents(a.Cents)})
	}
	doc.Heading("Adjustments", 20)
	doc.Table([]pdf.Col{{Header: "Status", Weight: 3}, {Header: "Adjustments", Weight: 1, Numeric: true}, {Header: "Amount", Weight: 1.4, Numeric: true}}, rows, nil)

	doc.Heading("Notes", 15)
	doc.Notes(notePairs(d.notes(nil)))
	return doc.Write(w)
}
