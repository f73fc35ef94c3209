package reports

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
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

// activeGrants lists live grants to report on with --all-active: is_active
// and, where the column exists (newer schema), status 'active'.
func activeGrants(ctx context.Context, pool *pgxpool.Pool, schema string) ([]int32, error) {
	var hasStatus bool
	err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM information_schema.columns
		WHERE table_schema = $1 AND table_name = 'grants' AND column_name = 'status')`, schema).Scan(&hasStatus)
	if err != nil {
		return nil, fmt.Errorf("list active grants: %w", err)
	}
	q := "SELECT id FROM " + pgx.Identifier{schema, "grants"}.Sanitize() + " g WHERE g.is_active AND " + notDeleted("g")
	if hasStatus {
		// Grant enums store lowercase labels; lower() keeps this right if
		// a database was migrated with the names instead.
		q += " AND lower(g.status::text) = 'active'"
	}
	rows, err := pool.Query(ctx, q+" ORDER BY g.grant_number, g.id")
	if err != nil {
		return nil, fmt.Errorf("list active grants: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return nil, fmt.Errorf("list active grants: %w", err)
	}
	return ids, nil
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
