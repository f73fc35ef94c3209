package reports

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
)

// membership is every figure of the membership report except the list of
// members without employment, which is streamed from the snapshot.
type membership struct {
	reportBase
	o          MembershipOptions
	members    int64
	byStatus   []labelCount
	byClass    []labelCount
	matrix     map[[2]string]int64 // classification, status -> members
	changes    []memberChange
	newMembers int64
	removed    int64
	audited    []labelCount // audit_logs status changes by new status
	nAudited   int64
	unaudited  int64
	with       int64
	without    int64
	activeWith int64
	activeAll  int64
	employers  []employerRow
	ages       []labelCount
}

// memberChange is one row of the Changes sheet.
type memberChange struct {
	Date                     time.Time
	Number, Last, First      *string
	Change, From, To, Source string
	Order                    int // ties on Date: new, status, removed
	RecordID                 string
}

type employerRow struct {
	Name, Type string
	Deleted    bool
	Members    int64
}

// rollCTE is the members on the roll on $1 (as-of): live, joined (hire
// date, else the day the record was created) on or before it.
const rollCTE = `roll AS (SELECT m.id, m.member_number, m.first_name, m.last_name, m.status::text AS status,
	m.classification::text AS classification, coalesce(m.hire_date, m.created_at::date) AS joined
	FROM members m WHERE NOT m.is_deleted AND m.deleted_at IS NULL AND coalesce(m.hire_date, m.created_at::date) <= $1)`

// currentCTE is the employments current on $1: started on or before it and
// not ended before it (end_date NULL or on or after it). Join it: a CTE
// used twice is materialized, and EXISTS over it scans it per member.
const currentCTE = `cur AS (SELECT e.member_id, e.organization_id FROM member_employments e
	WHERE e.start_date <= $1 AND (e.end_date IS NULL OR e.end_date >= $1))`

// ageBuckets are the age-of-membership groups, in whole years since
// joining: [lo, hi) with hi 0 meaning no upper bound.
var ageBuckets = []struct {
	label  string
	lo, hi int
}{{"Under 1 year", 0, 1}, {"1 to 4 years", 1, 5}, {"5 to 9 years", 5, 10}, {"10 to 19 years", 10, 20},
	{"20 to 29 years", 20, 30}, {"30 years or more", 30, 0}}

func loadMembership(ctx context.Context, tx pgx.Tx, o MembershipOptions) (*membership, error) {
	base, err := readBase(ctx, tx, o.Schema, "members", "member_employments", "organizations", "audit_logs")
	if err != nil {
		return nil, err
	}
	m := &membership{reportBase: base, o: o, matrix: map[[2]string]int64{}}
	for _, step := range []struct {
		what string
		fn   func(context.Context, pgx.Tx) error
	}{{"headcount", m.loadHeadcount}, {"changes", m.loadChanges}, {"employment", m.loadEmployment}, {"age of membership", m.loadAges}} {
		if err := step.fn(ctx, tx); err != nil {
			return nil, fmt.Errorf("read %s: %w", step.what, err)
		}
	}
	return m, nil
}

func (m *membership) loadHeadcount(ctx context.Context, tx pgx.Tx) error {
	a := m.o.AsOf
	if err := tx.QueryRow(ctx, `WITH `+rollCTE+` SELECT count(*) FROM roll`, a).Scan(&m.members); err != nil {
		return err
	}
	var err error
	if m.byStatus, err = labelCounts(ctx, tx, m.info.EnumLabels("memberstatus"),
		`WITH `+rollCTE+` SELECT status, count(*) FROM roll GROUP BY 1 ORDER BY 1`, a); err != nil {
		return err
	}
	if m.byClass, err = labelCounts(ctx, tx, m.info.EnumLabels("memberclassification"),
		`WITH `+rollCTE+` SELECT classification, count(*) FROM roll GROUP BY 1 ORDER BY 1`, a); err != nil {
		return err
	}
	rows, err := tx.Query(ctx, `WITH `+rollCTE+` SELECT classification, status, count(*) FROM roll GROUP BY 1, 2`, a)
	if err != nil {
		return err
	}
	var c, s string
	var n int64
	_, err = pgx.ForEachRow(rows, []any{&c, &s, &n}, func() error { m.matrix[[2]string{c, s}] = n; return nil })
	return err
}

func (m *membership) loadChanges(ctx context.Context, tx pgx.Tx) error {
	from, to := m.o.From, m.o.To
	add := func(q string, scan func(pgx.CollectableRow) (memberChange, error), args ...any) (int64, error) {
		rows, err := tx.Query(ctx, q, args...)
		if err != nil {
			return 0, err
		}
		got, err := pgx.CollectRows(rows, scan)
		m.changes = append(m.changes, got...)
		return int64(len(got)), err
	}
	var err error
	m.newMembers, err = add(`SELECT coalesce(hire_date, created_at::date), member_number, last_name, first_name,
		hire_date IS NULL, status::text FROM members
		WHERE NOT is_deleted AND deleted_at IS NULL AND coalesce(hire_date, created_at::date) BETWEEN $1 AND $2`,
		func(r pgx.CollectableRow) (memberChange, error) {
			var c memberChange
			var noHire bool
			var status string
			err := r.Scan(&c.Date, &c.Number, &c.Last, &c.First, &noHire, &status)
			c.Change, c.To, c.Source = "New member", status, "members.hire_date"
			if noHire {
				c.Source = "members.created_at (no hire date)"
			}
			return c, err
		}, from, to)
	if err != nil {
		return err
	}
	m.removed, err = add(`SELECT deleted_at::date, member_number, last_name, first_name, status::text FROM members
		WHERE deleted_at IS NOT NULL AND deleted_at::date BETWEEN $1 AND $2`,
		func(r pgx.CollectableRow) (memberChange, error) {
			var c memberChange
			var status string
			err := r.Scan(&c.Date, &c.Number, &c.Last, &c.First, &status)
			c.Change, c.From, c.Source, c.Order = "Removed (soft-deleted)", status, "members.deleted_at", 2
			return c, err
		}, from, to)
	if err != nil {
		return err
	}
	// Status changes recorded by the app's audit trail; its rows name the
	// member by record_id (text, no foreign key).
	auditQ := `SELECT a.changed_at::date, m.member_number, m.last_name, m.first_name, coalesce(a.old_values->>'status', ''),
		coalesce(a.new_values->>'status', ''), a.id, coalesce(a.changed_by, ''), a.record_id
		FROM audit_logs a LEFT JOIN members m ON m.id::text = a.record_id
		WHERE a.table_name = 'members' AND a.changed_at >= $1 AND a.changed_at < $2::date + 1
		AND a.new_values ? 'status' AND (a.old_values->>'status') IS DISTINCT FROM (a.new_values->>'status')`
	m.nAudited, err = add(auditQ+` ORDER BY a.changed_at, a.id`,
		func(r pgx.CollectableRow) (memberChange, error) {
			var c memberChange
			var id int32
			var by string
			err := r.Scan(&c.Date, &c.Number, &c.Last, &c.First, &c.From, &c.To, &id, &by, &c.RecordID)
			c.Change, c.Order = "Status change", 1
			c.Source = fmt.Sprintf("audit_logs #%d", id)
			if by != "" {
				c.Source += " by " + by
			}
			return c, err
		}, from, to)
	if err != nil {
		return err
	}
	counts := map[string]int64{}
	for _, c := range m.changes {
		if c.Change == "Status change" {
			counts[c.To]++
		}
	}
	m.audited = orderedCounts(m.info.EnumLabels("memberstatus"), counts)
	// From the data: members not ACTIVE whose record changed in the period
	// with no audit row for them in it (the data keeps no status history).
	m.unaudited, err = add(`SELECT m.updated_at::date, m.member_number, m.last_name, m.first_name, m.status::text FROM members m
		WHERE NOT m.is_deleted AND m.deleted_at IS NULL AND m.status::text <> 'ACTIVE'
		AND m.updated_at >= $1 AND m.updated_at < $2::date + 1
		AND NOT EXISTS (SELECT 1 FROM audit_logs a WHERE a.table_name = 'members' AND a.record_id = m.id::text
			AND a.changed_at >= $1 AND a.changed_at < $2::date + 1 AND a.new_values ? 'status')`,
		func(r pgx.CollectableRow) (memberChange, error) {
			var c memberChange
			err := r.Scan(&c.Date, &c.Number, &c.Last, &c.First, &c.To)
			c.Change, c.Order = "Status now "+c.To+" (record updated, no audit row)", 1
			c.Source = "members.status, members.updated_at"
			return c, err
		}, from, to)
	if err != nil {
		return err
	}
	sortChanges(m.changes)
	return nil
}

func (m *membership) loadEmployment(ctx context.Context, tx pgx.Tx) error {
	a := m.o.AsOf
	if err := tx.QueryRow(ctx, `WITH `+rollCTE+`, `+currentCTE+`, curm AS (SELECT DISTINCT member_id FROM cur)
		SELECT count(curm.member_id), count(curm.member_id) FILTER (WHERE roll.status = 'ACTIVE'),
			count(*) FILTER (WHERE roll.status = 'ACTIVE')
		FROM roll LEFT JOIN curm ON curm.member_id = roll.id`, a).Scan(&m.with, &m.activeWith, &m.activeAll); err != nil {
		return err
	}
	m.without = m.members - m.with
	rows, err := tx.Query(ctx, `WITH `+rollCTE+`, `+currentCTE+`
		SELECT o.name, o.org_type::text, o.is_deleted OR o.deleted_at IS NOT NULL, count(DISTINCT cur.member_id)
		FROM cur JOIN roll ON roll.id = cur.member_id JOIN organizations o ON o.id = cur.organization_id
		GROUP BY o.id ORDER BY 4 DESC, o.name, o.id`, a)
	if err != nil {
		return err
	}
	m.employers, err = pgx.CollectRows(rows, pgx.RowToStructByPos[employerRow])
	return err
}

func (m *membership) loadAges(ctx context.Context, tx pgx.Tx) error {
	rows, err := tx.Query(ctx, `WITH `+rollCTE+` SELECT extract(year FROM age($1::date, joined))::int, count(*) FROM roll GROUP BY 1`, m.o.AsOf)
	if err != nil {
		return err
	}
	byYears := map[int]int64{}
	var y int
	var n int64
	if _, err := pgx.ForEachRow(rows, []any{&y, &n}, func() error { byYears[y] += n; return nil }); err != nil {
		return err
	}
	m.ages = make([]labelCount, len(ageBuckets))
	for i, b := range ageBuckets {
		m.ages[i].Label = b.label
		for years, n := range byYears {
			if years >= b.lo && (b.hi == 0 || years < b.hi) {
				m.ages[i].N += n
			}
		}
	}
	return nil
}

func (m *membership) result() MembershipResult {
	return MembershipResult{AsOf: m.o.AsOf.Format(time.DateOnly), From: m.o.From.Format(time.DateOnly), To: m.o.To.Format(time.DateOnly),
		SnapshotAt: m.snapshotAt, Members: m.members, ByStatus: m.byStatus, NewMembers: m.newMembers, Removed: m.removed,
		StatusChanges: m.nAudited, UnauditedChanges: m.unaudited, WithEmployment: m.with, WithoutEmployment: m.without}
}

// orderedCounts lists counts by label: the enum's labels first, in order
// (zero included), then any other label counted, sorted.
func orderedCounts(labels []string, counts map[string]int64) []labelCount {
	out := make([]labelCount, 0, len(labels))
	seen := map[string]bool{}
	for _, l := range labels {
		out = append(out, labelCount{Label: l, N: counts[l]})
		seen[l] = true
	}
	var extra []string
	for l := range counts {
		if !seen[l] {
			extra = append(extra, l)
		}
	}
	sort.Strings(extra)
	for _, l := range extra {
		out = append(out, labelCount{Label: l, N: counts[l]})
	}
	return out
}

// sortChanges orders the Changes sheet by date, then new members, status
// changes and removals, then member number.
func sortChanges(cs []memberChange) {
	sort.SliceStable(cs, func(i, j int) bool {
		a, b := cs[i], cs[j]
		if !a.Date.Equal(b.Date) {
			return a.Date.Before(b.Date)
		}
		if a.Order != b.Order {
			return a.Order < b.Order
		}
		return deref(a.Number) < deref(b.Number)
	})
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
