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

// Sheets of the membership workbook, in order.
const (
	MemberSheetSummary    = "Summary"
	MemberSheetHeadcount  = "Headcount"
	MemberSheetChanges    = "Changes"
	MemberSheetEmployers  = "Employers"
	MemberSheetUnemployed = "Without employment"
	MemberSheetNotes      = "Notes"
)

func (m *membership) workbook(ctx context.Context, tx pgx.Tx, w io.Writer) error {
	b, err := xlsx.New(m.o.TmpDir, MemberSheetSummary, MemberSheetHeadcount, MemberSheetChanges, MemberSheetEmployers,
		MemberSheetUnemployed, MemberSheetNotes)
	if err != nil {
		return err
	}
	defer b.Close()
	if err := runSteps(ctx, []step{
		{MemberSheetUnemployed, func() error { return m.unemployedSheet(ctx, tx, b) }},
		{MemberSheetChanges, func() error { return m.changesSheet(b) }},
		{MemberSheetHeadcount, func() error { return m.headcountSheet(b) }},
		{MemberSheetEmployers, func() error { return m.employersSheet(b) }},
		{MemberSheetSummary, func() error { return m.summarySheet(b) }},
		{MemberSheetNotes, func() error { return b.WriteNotes(MemberSheetNotes, m.notes(b.Truncated())) }},
		{"document properties", func() error { return m.properties(b) }},
	}); err != nil {
		return err
	}
	return b.Write(w)
}

func (m *membership) summarySheet(b *xlsx.Book) error {
	st := b.St
	f := b.NewForm(MemberSheetSummary, 2)
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
	asOf := m.o.AsOf.Format(time.DateOnly)
	err = f.Title("Membership report: " + m.o.Local)
	line("As of", m.o.AsOf, st.Date)
	line("Changes from", m.o.From, st.Date)
	line("Changes to", m.o.To, st.Date)
	line("Generated at (UTC)", m.o.Now.UTC(), st.DateTime)
	line("Data snapshot at (UTC)", m.snapshotAt.UTC(), st.DateTime)
	section("Members on the roll, " + asOf)
	line("Members", m.members, st.IntBold)
	for _, s := range m.byStatus {
		line(words(s.Label), s.N, st.Integer)
	}
	section("By classification, " + asOf)
	for _, c := range m.byClass {
		line(words(c.Label), c.N, st.Integer)
	}
	section("Changes, " + periodText(m.o.From, m.o.To))
	line("New members", m.newMembers, st.Integer)
	line("Removed (soft-deleted)", m.removed, st.Integer)
	line("Status changes (audit_logs)", m.nAudited, st.Integer)
	labels := m.info.EnumLabels("memberstatus")
	for _, s := range m.audited {
		if s.N > 0 {
			line("  to "+labelWords(labels, s.Label), s.N, st.Integer)
		}
	}
	line("Not ACTIVE, record updated, no audit row", m.unaudited, st.Integer)
	section("Employment, " + asOf)
	line("With current employment", m.with, st.Integer)
	line("Without current employment", m.without, st.Integer)
	line("ACTIVE members with current employment", m.activeWith, st.Integer)
	line("ACTIVE members without current employment", m.activeAll-m.activeWith, st.Integer)
	line("Employers with members", int64(len(m.employers)), st.Integer)
	section("Age of membership, " + asOf)
	for _, a := range m.ages {
		line(a.Label, a.N, st.Integer)
	}
	if err != nil {
		return err
	}
	return f.Close()
}

func (m *membership) headcountSheet(b *xlsx.Book) error {
	st := b.St
	headers := []string{"Classification"}
	for _, s := range m.byStatus {
		headers = append(headers, words(s.Label))
	}
	headers = append(headers, "Total")
	var rows [][]any
	for _, c := range m.byClass {
		r := []any{words(c.Label)}
		for _, s := range m.byStatus {
			r = append(r, excelize.Cell{StyleID: st.Integer, Value: m.matrix[[2]string{c.Label, s.Label}]})
		}
		rows = append(rows, append(r, excelize.Cell{StyleID: st.IntBold, Value: c.N}))
	}
	total := []any{excelize.Cell{StyleID: st.Bold, Value: "Total"}}
	for _, s := range m.byStatus {
		total = append(total, excelize.Cell{StyleID: st.IntBold, Value: s.N})
	}
	total = append(total, excelize.Cell{StyleID: st.IntBold, Value: m.members})
	return b.WriteRows(MemberSheetHeadcount, headers, rows, total)
}

func (m *membership) changesSheet(b *xlsx.Book) error {
	headers := []string{"Date", "Member number", "Last name", "First name", "Change", "From", "To", "Source"}
	rows := make([][]any, len(m.changes))
	for i, c := range m.changes {
		r := i + 2
		number := b.Str(MemberSheetChanges, 2, r, c.Number)
		if c.Number == nil && c.RecordID != "" {
			number = "record_id " + c.RecordID + " (no such member)"
		}
		rows[i] = []any{b.Date(&c.Date), number, b.Str(MemberSheetChanges, 3, r, c.Last), b.Str(MemberSheetChanges, 4, r, c.First),
			c.Change, b.Text(MemberSheetChanges, 6, r, c.From), b.Text(MemberSheetChanges, 7, r, c.To), c.Source}
	}
	cols := xlsx.ColumnsOf(headers, rows, 10)
	cols[0].Width = 12
	return b.WriteTable(MemberSheetChanges, cols, rows, nil)
}

func (m *membership) employersSheet(b *xlsx.Book) error {
	st := b.St
	rows := make([][]any, len(m.employers))
	for i, e := range m.employers {
		name := b.Text(MemberSheetEmployers, 1, i+2, e.Name)
		if e.Deleted {
			name += " (deleted)"
		}
		rows[i] = []any{name, words(e.Type), excelize.Cell{StyleID: st.Integer, Value: e.Members}, b.Share(e.Members, m.with, st.Percent)}
	}
	return b.WriteRows(MemberSheetEmployers, []string{"Employer", "Type", "Members employed", "Share of members employed"}, rows, nil)
}

// unemployedSheet streams the members on the roll without a current
// employment, with their last employer.
func (m *membership) unemployedSheet(ctx context.Context, tx pgx.Tx, b *xlsx.Book) error {
	a := m.o.AsOf
	with := `WITH ` + rollCTE + `, ` + currentCTE + `, gone AS (SELECT roll.* FROM roll LEFT JOIN (SELECT DISTINCT member_id FROM cur) c ON c.member_id = roll.id
		WHERE c.member_id IS NULL) `
	var n int
	var lens [3]int
	if err := tx.QueryRow(ctx, with+`SELECT count(*), coalesce(max(length(member_number)), 0), coalesce(max(length(last_name)), 0),
		coalesce(max(length(first_name)), 0) FROM gone`, a).Scan(&n, &lens[0], &lens[1], &lens[2]); err != nil {
		return fmt.Errorf("measure: %w", err)
	}
	headers := []string{"Member number", "Last name", "First name", "Status", "Classification", "Joined", "Last employer", "Last employment ended"}
	cols := make([]xlsx.Column, len(headers))
	for i, h := range headers {
		cols[i] = xlsx.Column{Header: h, Width: xlsx.ColWidth(len(h), 12)}
	}
	for i, l := range lens {
		cols[i].Width = xlsx.ColWidth(max(l, len(headers[i])), 12)
	}
	cols[4].Width, cols[6].Width = 22, 36
	cols[5].Numeric, cols[7].Numeric = true, true
	t, err := b.NewTable(MemberSheetUnemployed, cols, n+1)
	if err != nil {
		return err
	}
	rows, err := tx.Query(ctx, with+`SELECT g.member_number, g.last_name, g.first_name, g.status, g.classification, g.joined, l.name, l.end_date
		FROM gone g LEFT JOIN LATERAL (SELECT o.name, e.end_date FROM member_employments e JOIN organizations o ON o.id = e.organization_id
			WHERE e.member_id = g.id AND e.start_date <= $1 ORDER BY e.end_date DESC NULLS FIRST, e.id DESC LIMIT 1) l ON true
		ORDER BY g.last_name, g.first_name, g.member_number`, a)
	if err != nil {
		return err
	}
	defer rows.Close()
	var (
		number, last, first, status, class string
		joined                             time.Time
		employer                           *string
		ended                              *time.Time
	)
	v := t.Buf
	for rows.Next() {
		if err := rows.Scan(&number, &last, &first, &status, &class, &joined, &employer, &ended); err != nil {
			return err
		}
		r := t.Row() + 1
		v[0], v[1], v[2] = b.Text(MemberSheetUnemployed, 1, r, number), b.Text(MemberSheetUnemployed, 2, r, last), b.Text(MemberSheetUnemployed, 3, r, first)
		v[3], v[4], v[5] = words(status), words(class), b.Date(&joined)
		v[6], v[7] = b.Str(MemberSheetUnemployed, 7, r, employer), b.Date(ended)
		if err := t.Add(v); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	return t.Close()
}

func (m *membership) notes(truncated []string) []xlsx.Note {
	asOf := m.o.AsOf.Format(time.DateOnly)
	ns := []xlsx.Note{
		m.generatedNote(m.o.ToolVersion, m.o.Now),
		{Topic: "Members on the roll", Text: fmt.Sprintf("Live members (neither is_deleted nor deleted_at set) who had joined by %s: "+
			"joined is members.hire_date, or the day the record was created when there is no hire date. Members removed "+
			"(soft-deleted) since are not counted: the database does not say whether they were on the roll then.", asOf)},
		{Topic: "Status and classification", Text: "members.status and members.classification as stored now: the schema keeps " +
			"no history of either, so a report as of a past date shows today's values for the members on the roll then. " +
			"Status changes the app's audit trail recorded are listed on the Changes sheet."},
		{Topic: "Headcount", Text: "The Headcount sheet counts members on the roll by classification and status; its totals are " +
			"the Summary's figures."},
		{Topic: "New members", Text: "Live members whose joined date (hire date, else record creation) falls in the period."},
		{Topic: "Removed", Text: "Members whose deleted_at falls in the period (the app's soft delete); their status is the one " +
			"stored. Rows with is_deleted set but no deleted_at have no removal date and are not listed."},
		{Topic: "Status changes (audit_logs)", Text: "audit_logs rows of table members whose changed_at falls in the period and " +
			"whose new_values holds a status different from old_values' (from the audit trail, as recorded, including " +
			"labels that are not memberstatus labels). The member is found by record_id; a row whose member no longer " +
			"exists says so. Rows moved to the archive by audit-archive are not read."},
		{Topic: "Not ACTIVE, no audit row", Text: "From the data, where the audit trail is silent: live members whose status is " +
			"not ACTIVE and whose record was updated (updated_at) in the period, with no audit row of a status change for " +
			"them in the period. The update may or may not have been the status change: the data keeps no history."},
		{Topic: "Current employment", Text: fmt.Sprintf("A member_employments row that started on or before %s and had not ended "+
			"before it (end_date empty, or on or after it). is_current is not used: the integrity check reports rows where "+
			"it disagrees with the dates. A member with several current employments counts once in the totals and "+
			"under each employer.", asOf)},
		{Topic: "Employers", Text: "Organizations with members on the roll currently employed, by the number of those members; " +
			"a deleted organization is still named, and marked."},
		{Topic: "Without employment", Text: "Members on the roll with no current employment, with the employer and end date " +
			"of their latest employment (blank: never employed)."},
		{Topic: "Age of membership", Text: fmt.Sprintf("Whole years from the joined date to %s.", asOf)},
	}
	if len(truncated) > 0 {
		ns = append(ns, xlsx.Note{Topic: "Truncated cells", Text: xlsx.TruncatedNote(truncated)})
	}
	return ns
}

func (m *membership) properties(b *xlsx.Book) error {
	asOf := m.o.AsOf.Format(time.DateOnly)
	return b.SetProperties(xlsx.Properties{
		Title:       "Membership report: " + m.o.Local + " (" + asOf + ")",
		Subject:     fmt.Sprintf("Membership as of %s, changes %s", asOf, periodText(m.o.From, m.o.To)),
		Description: fmt.Sprintf("Generated by ip2a-ops %s from a snapshot taken at %s.", m.o.ToolVersion, m.snapshotAt.UTC().Format(time.RFC3339)),
		Keywords:    "membership report; " + asOf,
		Category:    "Membership report",
		Version:     m.o.ToolVersion,
		Created:     m.o.Now,
		Custom: []excelize.CustomProperty{{Name: "As of", Value: asOf}, {Name: "Period start", Value: m.o.From.Format(time.DateOnly)},
			{Name: "Period end", Value: m.o.To.Format(time.DateOnly)}, {Name: "Tool version", Value: "ip2a-ops " + m.o.ToolVersion}},
	})
}
