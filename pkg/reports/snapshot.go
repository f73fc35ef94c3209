package reports

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ip2a/ip2a-ops/pkg/dbschema"
	"github.com/ip2a/ip2a-ops/pkg/reports/xlsx"
)

// grantRow is the grant's own record. Money is in cents.
type grantRow struct {
	id                        int32
	name, number              string
	funder, frequency, status *string
	budget                    int64
	start                     time.Time
	end, nextReportDue        *time.Time
	allowable                 *string
	targetEnroll, targetCompl *int32
	targetPlace               *int32
	isActive                  bool
	hasStatus, hasTargets     bool
}

// periodCount is one figure inside the period, through its end, and to
// date (every live row in the snapshot, whatever its date).
type periodCount struct{ inPeriod, throughEnd, toDate int64 }

type enrFigures struct {
	total, enrolled, active, completed, withdrawn, dropped int64
	newEnrollments, completions, placements, credentials   periodCount
	outcomes                                               []labelCount
	noOutcome                                              int64
}

type labelCount struct {
	Label string `json:"label"`
	N     int64  `json:"n"`
}

type catRow struct {
	name        string // "" for expenses without a category
	hasName     bool
	count       int64
	cents       int64
	periodCents int64
	// allowed: "yes", "no" (out of policy) or "" (no policy to check).
	allowed string
}

type expFigures struct {
	count, spent periodCount // spent in cents
	categories   []catRow
	outOfPolicy  int64 // cents spent in categories outside the policy
}

// note is one row of the Notes sheet.
type note struct{ topic, text string }

// snapshot is everything the workbook shows except the detail rows, which
// are streamed from the same transaction while the workbook is written.
type snapshot struct {
	o          GrantOptions
	info       *dbschema.Info
	snapshotAt time.Time
	timeZone   string
	grant      grantRow
	from, to   time.Time
	hasGE      bool
	enrSource  string // a CTE body selecting the grant's enrollments
	enr        enrFigures
	exp        expFigures
	policy     []string // allowable categories, as stored
	policyNote string
	excluded   []note
	caveats    []note // also returned in the run's result
	truncated  []string
}

func (s *snapshot) runNotes() []string {
	out := make([]string, 0, len(s.caveats)+1)
	for _, c := range s.caveats {
		out = append(out, c.text)
	}
	if len(s.truncated) > 0 {
		out = append(out, xlsx.TruncatedNote(s.truncated))
	}
	return out
}

func loadSnapshot(ctx context.Context, tx pgx.Tx, o GrantOptions, id int32) (*snapshot, error) {
	s := &snapshot{o: o}
	// The first statement fixes the snapshot; now() is the transaction's start.
	if err := tx.QueryRow(ctx, "SELECT now(), current_setting('TimeZone')").Scan(&s.snapshotAt, &s.timeZone); err != nil {
		return nil, fmt.Errorf("read snapshot time: %w", err)
	}
	info, err := dbschema.Inspect(ctx, tx, o.Schema)
	if err != nil {
		return nil, err
	}
	s.info = info
	for _, t := range []string{"grants", "expenses", "students", "members"} {
		if !info.HasTable(t) {
			return nil, fmt.Errorf("table %s does not exist in schema %s: not an IP2A database", t, o.Schema)
		}
	}
	if err := s.loadGrant(ctx, tx, id); err != nil {
		return nil, err
	}
	s.from, s.to = dateOf(o.From), dateOf(o.To)
	if o.From.IsZero() {
		s.from = s.grant.start
	}
	if o.To.IsZero() {
		s.to = dateOf(o.Now.UTC())
	}
	if s.from.After(s.to) {
		return nil, fmt.Errorf("period %s to %s ends before it starts (grant %s starts %s): %w",
			s.from.Format(time.DateOnly), s.to.Format(time.DateOnly), s.grant.number, s.grant.start.Format(time.DateOnly), ErrBadPeriod)
	}
	s.hasGE = info.HasTable("grant_enrollments")
	s.enrSource = s.enrollmentSource()
	if err := s.loadEnrollments(ctx, tx); err != nil {
		return nil, err
	}
	if err := s.loadExpenses(ctx, tx); err != nil {
		return nil, err
	}
	if err := s.loadExcluded(ctx, tx); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *snapshot) loadGrant(ctx context.Context, tx pgx.Tx, id int32) error {
	g := &s.grant
	g.hasStatus = s.info.HasColumns("grants", "status")
	g.hasTargets = s.info.HasColumns("grants", "target_enrollment", "target_completion", "target_placement")
	status, targets := "NULL::text", "NULL::int, NULL::int, NULL::int"
	if g.hasStatus {
		status = "status::text"
	}
	if g.hasTargets {
		targets = "target_enrollment, target_completion, target_placement"
	}
	err := tx.QueryRow(ctx, `SELECT id, name, grant_number, funding_source, (total_amount * 100)::bigint, start_date, end_date,
		allowable_categories::text, reporting_frequency, next_report_due, `+status+`, `+targets+`, is_active
		FROM grants WHERE id = $1`, id).Scan(&g.id, &g.name, &g.number, &g.funder, &g.budget, &g.start, &g.end,
		&g.allowable, &g.frequency, &g.nextReportDue, &g.status,
		&g.targetEnroll, &g.targetCompl, &g.targetPlace, &g.isActive)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("grant %d disappeared before the snapshot: %w", id, ErrUnknownGrant)
	}
	if err != nil {
		return fmt.Errorf("read grant: %w", err)
	}
	return nil
}

// enrollmentSource is the CTE body of the grant's enrollments ($1 = grant
// id), in the shape of grant_enrollments. On the older schema, which has no
// grant_enrollments, it derives them from what exists: the students an
// expense of the grant was charged to, with the student's own dates and a
// status mapped from student_status_enum.
func (s *snapshot) enrollmentSource() string {
	if s.hasGE {
		return `SELECT ge.id, ge.student_id, ge.enrollment_date, lower(ge.status::text) AS status, ge.completion_date,
			lower(ge.outcome::text) AS outcome, ge.outcome_date, ge.placement_employer, ge.placement_date, ge.placement_wage,
			ge.placement_job_title, ge.notes
			FROM grant_enrollments ge WHERE ge.grant_id = $1 AND ` + notDeleted("ge")
	}
	s.caveats = append(s.caveats, note{"Older schema",
		"This database has no grant_enrollments table (the older IP2A schema). Enrollment figures count the students " +
			"that at least one live expense of this grant was charged to, with each student's own enrollment date " +
			"(else application date), completion date and status (ENROLLED and ON_LEAVE count as active, COMPLETED as " +
			"completed, DROPPED as dropped, DISMISSED as withdrawn, APPLICANT as enrolled). Outcomes, placements and " +
			"targets are not recorded by this schema and show as blank."})
	return `SELECT s.id, s.id AS student_id, coalesce(s.enrollment_date, s.application_date) AS enrollment_date,
		CASE upper(s.status::text) WHEN 'ENROLLED' THEN 'active' WHEN 'ON_LEAVE' THEN 'active' WHEN 'COMPLETED' THEN 'completed'
			WHEN 'DROPPED' THEN 'dropped' WHEN 'DISMISSED' THEN 'withdrawn' ELSE 'enrolled' END AS status,
		s.actual_completion_date AS completion_date, NULL::text AS outcome, NULL::date AS outcome_date,
		NULL::text AS placement_employer, NULL::date AS placement_date, NULL::text AS placement_wage,
		NULL::text AS placement_job_title, s.notes
		FROM students s WHERE ` + notDeleted("s") + ` AND s.id IN (SELECT x.student_id FROM expenses x
			WHERE x.grant_id = $1 AND ` + notDeleted("x") + `)`
}

// placementOutcomes are the outcomes that count as placements.
const placementSQL = "('obtained_employment', 'entered_apprenticeship')"

func (s *snapshot) loadEnrollments(ctx context.Context, tx pgx.Tx) error {
	e := &s.enr
	q := `WITH ge AS (` + s.enrSource + `) SELECT count(*),
		count(*) FILTER (WHERE status = 'enrolled'), count(*) FILTER (WHERE status = 'active'),
		count(*) FILTER (WHERE status = 'completed'), count(*) FILTER (WHERE status = 'withdrawn'),
		count(*) FILTER (WHERE status = 'dropped'),
		count(*) FILTER (WHERE enrollment_date BETWEEN $2 AND $3), count(*) FILTER (WHERE enrollment_date <= $3),
		count(*) FILTER (WHERE status = 'completed' AND completion_date BETWEEN $2 AND $3),
		count(*) FILTER (WHERE status = 'completed' AND completion_date <= $3),
		count(*) FILTER (WHERE outcome IN ` + placementSQL + ` AND outcome_date BETWEEN $2 AND $3),
		count(*) FILTER (WHERE outcome IN ` + placementSQL + ` AND outcome_date <= $3),
		count(*) FILTER (WHERE outcome IN ` + placementSQL + `),
		count(*) FILTER (WHERE outcome IS NULL)
		FROM ge`
	err := tx.QueryRow(ctx, q, s.grant.id, s.from, s.to).Scan(&e.total, &e.enrolled, &e.active, &e.completed, &e.withdrawn,
		&e.dropped, &e.newEnrollments.inPeriod, &e.newEnrollments.throughEnd, &e.completions.inPeriod, &e.completions.throughEnd,
		&e.placements.inPeriod, &e.placements.throughEnd, &e.placements.toDate, &e.noOutcome)
	if err != nil {
		return fmt.Errorf("count enrollments: %w", err)
	}
	e.newEnrollments.toDate, e.completions.toDate = e.total, e.completed
	if s.hasGE {
		// Every label of the enum, in its order, so a kind with no
		// student still shows as 0.
		counts := map[string]int64{}
		rows, err := tx.Query(ctx, `WITH ge AS (`+s.enrSource+`) SELECT outcome, count(*) FROM ge WHERE outcome IS NOT NULL GROUP BY 1`, s.grant.id)
		if err != nil {
			return fmt.Errorf("count outcomes: %w", err)
		}
		var label string
		var n int64
		if _, err := pgx.ForEachRow(rows, []any{&label, &n}, func() error { counts[label] = n; return nil }); err != nil {
			return fmt.Errorf("count outcomes: %w", err)
		}
		for _, l := range s.info.EnumLabels("grant_outcome") {
			k := strings.ToLower(l)
			e.outcomes = append(e.outcomes, labelCount{k, counts[k]})
			delete(counts, k)
		}
		for k, v := range counts { // labels the enum no longer has
			e.outcomes = append(e.outcomes, labelCount{k, v})
		}
	}
	// Credentials earned: live credentials and certifications of the
	// grant's students issued on or after their grant enrollment. The app's
	// certifications table has no soft delete, so all its rows are live.
	var parts []string
	for _, t := range []string{"credentials", "certifications"} {
		if !s.info.HasColumns(t, "student_id", "issue_date") {
			continue
		}
		live := "true"
		if s.info.HasColumns(t, "is_deleted", "deleted_at") {
			live = notDeleted("c")
		}
		parts = append(parts, `SELECT c.issue_date FROM `+t+` c JOIN ge ON ge.student_id = c.student_id
			WHERE `+live+` AND c.issue_date >= ge.enrollment_date`)
	}
	if len(parts) > 0 {
		q := `WITH ge AS (` + s.enrSource + `), cr AS (` + strings.Join(parts, " UNION ALL ") + `)
			SELECT count(*) FILTER (WHERE issue_date BETWEEN $2 AND $3), count(*) FILTER (WHERE issue_date <= $3), count(*) FROM cr`
		c := &e.credentials
		if err := tx.QueryRow(ctx, q, s.grant.id, s.from, s.to).Scan(&c.inPeriod, &c.throughEnd, &c.toDate); err != nil {
			return fmt.Errorf("count credentials: %w", err)
		}
	}
	return nil
}

func (s *snapshot) loadExpenses(ctx context.Context, tx pgx.Tx) error {
	x := &s.exp
	// Sums are numeric in SQL and become exact cents; no float is summed.
	err := tx.QueryRow(ctx, `SELECT count(*) FILTER (WHERE purchased_at BETWEEN $2 AND $3),
		count(*) FILTER (WHERE purchased_at <= $3), count(*),
		coalesce((sum(total_price) * 100)::bigint, 0),
		coalesce((sum(total_price) FILTER (WHERE purchased_at BETWEEN $2 AND $3) * 100)::bigint, 0),
		coalesce((sum(total_price) FILTER (WHERE purchased_at <= $3) * 100)::bigint, 0)
		FROM expenses x WHERE x.grant_id = $1 AND `+notDeleted("x"), s.grant.id, s.from, s.to).Scan(
		&x.count.inPeriod, &x.count.throughEnd, &x.count.toDate, &x.spent.toDate, &x.spent.inPeriod, &x.spent.throughEnd)
	if err != nil {
		return fmt.Errorf("sum expenses: %w", err)
	}
	s.parsePolicy()
	rows, err := tx.Query(ctx, `SELECT category, count(*), coalesce((sum(total_price) * 100)::bigint, 0),
		coalesce((sum(total_price) FILTER (WHERE purchased_at BETWEEN $2 AND $3) * 100)::bigint, 0)
		FROM expenses x WHERE x.grant_id = $1 AND `+notDeleted("x")+` GROUP BY category`, s.grant.id, s.from, s.to)
	if err != nil {
		return fmt.Errorf("sum expenses by category: %w", err)
	}
	var cat *string
	var r catRow
	seen := map[string]bool{}
	_, err = pgx.ForEachRow(rows, []any{&cat, &r.count, &r.cents, &r.periodCents}, func() error {
		c := r
		c.hasName = cat != nil
		if cat != nil {
			c.name = *cat
		}
		c.allowed = s.allowed(c)
		if c.allowed == "no" {
			x.outOfPolicy += c.cents
		}
		seen[policyKey(c.name)] = true
		x.categories = append(x.categories, c)
		return nil
	})
	if err != nil {
		return fmt.Errorf("sum expenses by category: %w", err)
	}
	// Allowed categories nothing was spent on still get a row.
	for _, p := range s.policy {
		if !seen[policyKey(p)] {
			seen[policyKey(p)] = true
			x.categories = append(x.categories, catRow{name: p, hasName: true, allowed: "yes"})
		}
	}
	sort.SliceStable(x.categories, func(i, j int) bool {
		a, b := x.categories[i], x.categories[j]
		if a.cents != b.cents {
			return a.cents > b.cents
		}
		if a.hasName != b.hasName {
			return a.hasName
		}
		return a.name < b.name
	})
	return nil
}

func policyKey(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// parsePolicy reads allowable_categories: a JSON array of strings. Anything
// else (NULL, an object, numbers) means there is no policy to check against,
// which the Notes say.
func (s *snapshot) parsePolicy() {
	a := s.grant.allowable
	if a == nil || strings.TrimSpace(*a) == "" || strings.TrimSpace(*a) == "null" {
		s.policyNote = "The grant has no allowable categories recorded (allowable_categories is NULL), so no expense is marked out of policy."
		return
	}
	var cats []string
	if err := json.Unmarshal([]byte(*a), &cats); err != nil {
		s.policyNote = "allowable_categories is not a JSON array of strings, so no expense is marked out of policy. Stored value: " + truncateRunes(*a, 500)
		return
	}
	s.policy = cats
	s.policyNote = fmt.Sprintf("Allowable categories (allowable_categories): %s. Categories are compared ignoring case "+
		"and surrounding spaces; an expense with no category is out of policy when a policy exists.", strings.Join(cats, ", "))
	if len(cats) == 0 {
		s.policyNote = "allowable_categories is an empty list: every expense is out of policy."
	}
}

func (s *snapshot) allowed(c catRow) string {
	if s.policy == nil {
		return ""
	}
	if !c.hasName {
		return "no"
	}
	for _, p := range s.policy {
		if policyKey(p) == policyKey(c.name) {
			return "yes"
		}
	}
	return "no"
}

// loadExcluded counts the soft-deleted rows the report leaves out.
func (s *snapshot) loadExcluded(ctx context.Context, tx pgx.Tx) error {
	type q struct{ topic, sql string }
	qs := []q{{"Expenses", `SELECT count(*), coalesce((sum(total_price) * 100)::bigint, 0) FROM expenses x
		WHERE x.grant_id = $1 AND NOT ` + notDeleted("x")}}
	if s.hasGE {
		qs = append(qs, q{"Grant enrollments", `SELECT count(*), 0::bigint FROM grant_enrollments ge WHERE ge.grant_id = $1 AND NOT ` + notDeleted("ge")})
	}
	for _, x := range qs {
		var n, cents int64
		if err := tx.QueryRow(ctx, x.sql, s.grant.id).Scan(&n, &cents); err != nil {
			return fmt.Errorf("count soft-deleted %s: %w", strings.ToLower(x.topic), err)
		}
		text := fmt.Sprintf("%d soft-deleted rows excluded", n)
		if x.topic == "Expenses" {
			text = fmt.Sprintf("%d soft-deleted expenses excluded (%s)", n, formatCents(cents))
		}
		s.excluded = append(s.excluded, note{x.topic, text})
	}
	return nil
}

// formatCents renders cents as $1,234.56 for note text (cells hold numbers).
func formatCents(c int64) string {
	neg := c < 0
	if neg {
		c = -c
	}
	whole := fmt.Sprint(c / 100)
	var b strings.Builder
	for i, r := range whole {
		if i > 0 && (len(whole)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	out := fmt.Sprintf("$%s.%02d", b.String(), c%100)
	if neg {
		out = "-" + out
	}
	return out
}
