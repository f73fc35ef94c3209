package reports

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ip2a/ip2a-ops/pkg/dbschema"
	"github.com/ip2a/ip2a-ops/pkg/exitcode"
)

// notDeleted is the soft-delete filter used everywhere: the app sets
// is_deleted and deleted_at together, but nothing enforces it and some app
// code filters one, some the other, so a row with either set is excluded.
func notDeleted(alias string) string {
	return fmt.Sprintf("(NOT %[1]s.is_deleted AND %[1]s.deleted_at IS NULL)", alias)
}

// resolveGrant finds a live grant by id (all digits) or grant_number (exact,
// then case-insensitive), or returns an *UnknownGrantError naming the
// closest grant numbers.
func resolveGrant(ctx context.Context, pool *pgxpool.Pool, schema, q string) (int32, error) {
	q = strings.TrimSpace(q)
	tbl := pgx.Identifier{schema, "grants"}.Sanitize()
	live := notDeleted("g")
	if n, err := strconv.ParseInt(q, 10, 32); err == nil {
		var id int32
		err := pool.QueryRow(ctx, "SELECT id FROM "+tbl+" g WHERE id = $1 AND "+live, n).Scan(&id)
		if err == nil {
			return id, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return 0, fmt.Errorf("find grant: %w", err)
		}
	}
	rows, err := pool.Query(ctx, "SELECT id, grant_number FROM "+tbl+" g WHERE "+live+" ORDER BY grant_number")
	if err != nil {
		return 0, fmt.Errorf("find grant: %w", err)
	}
	type gn struct {
		id     int32
		number string
	}
	all, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (gn, error) {
		var g gn
		err := r.Scan(&g.id, &g.number)
		return g, err
	})
	if err != nil {
		return 0, fmt.Errorf("find grant: %w", err)
	}
	var folded []gn
	for _, g := range all {
		if g.number == q {
			return g.id, nil
		}
		if strings.EqualFold(g.number, q) {
			folded = append(folded, g)
		}
	}
	if len(folded) == 1 {
		return folded[0].id, nil
	}
	numbers := make([]string, len(all))
	for i, g := range all {
		numbers[i] = g.number
	}
	return 0, &UnknownGrantError{Query: q, Closest: closest(q, numbers, 3)}
}

// LeftOutGrant is a grant that --all-active did not report on, and why.
type LeftOutGrant struct {
	GrantID     int32  `json:"grant_id"`
	GrantNumber string `json:"grant_number"`
	GrantName   string `json:"grant_name"`
	Reason      string `json:"reason"`
}

// selectGrants picks the grants AllActive reports on, as the app's own
// "all active grants" summary does: is_active and not is_deleted. (The
// app creates every grant with status 'pending' and never moves it, so
// status says nothing unless Statuses asks for it.) Statuses, when given,
// narrows the choice to grants whose status is one of them; the older
// schema has no status column, and asking for one there is ErrNoStatus.
// Every other grant comes back in leftOut with the reason.
func selectGrants(ctx context.Context, pool *pgxpool.Pool, schema string, statuses []string) (ids []int32, leftOut []LeftOutGrant, err error) {
	info, err := dbschema.Inspect(ctx, pool, schema)
	if err != nil {
		return nil, nil, fmt.Errorf("list active grants: %w", err)
	}
	status := "NULL::text"
	if info.HasColumns("grants", "status") {
		status = "g.status::text"
		labels := info.EnumLabels("grant_status")
		for _, st := range statuses {
			if !slices.Contains(labels, st) {
				return nil, nil, exitcode.Fieldf("Statuses", "%q is not a grant status (this database has %s): %w",
					st, strings.Join(labels, ", "), ErrBadStatus)
			}
		}
	} else if len(statuses) > 0 {
		return nil, nil, exitcode.Fieldf("Statuses", "%w", ErrNoStatus)
	}
	rows, err := pool.Query(ctx, `SELECT g.id, coalesce(g.grant_number, ''), g.name, g.is_active, g.is_deleted, `+status+`
		FROM `+pgx.Identifier{schema, "grants"}.Sanitize()+` g ORDER BY g.grant_number, g.id`)
	if err != nil {
		return nil, nil, fmt.Errorf("list active grants: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var g LeftOutGrant
		var active, deleted bool
		var st *string
		if err := rows.Scan(&g.GrantID, &g.GrantNumber, &g.GrantName, &active, &deleted, &st); err != nil {
			return nil, nil, fmt.Errorf("list active grants: %w", err)
		}
		switch {
		case deleted:
			g.Reason = "deleted (is_deleted)"
		case !active:
			g.Reason = "not active (is_active is false)"
		case len(statuses) > 0 && (st == nil || !slices.Contains(statuses, *st)):
			g.Reason = fmt.Sprintf("status %s is not one of --status %s", optQuoted(st), strings.Join(statuses, ","))
		default:
			ids = append(ids, g.GrantID)
			continue
		}
		leftOut = append(leftOut, g)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("list active grants: %w", err)
	}
	return ids, leftOut, nil
}

func optQuoted(s *string) string {
	if s == nil {
		return "(none)"
	}
	return strconv.Quote(*s)
}

// closest returns up to n candidates nearest to q by case-insensitive edit
// distance, nearest first, ties in candidate order.
func closest(q string, candidates []string, n int) []string {
	type scored struct {
		s string
		d int
		i int
	}
	lq := strings.ToLower(q)
	sc := make([]scored, len(candidates))
	for i, c := range candidates {
		sc[i] = scored{c, editDistance(lq, strings.ToLower(c)), i}
	}
	sort.SliceStable(sc, func(a, b int) bool { return sc[a].d < sc[b].d })
	var out []string
	for _, s := range sc {
		if len(out) == n {
			break
		}
		out = append(out, s.s)
	}
	return out
}

// editDistance is the Levenshtein distance over runes.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
