package audit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// How a run reaches the rows of a month. audit_logs has no index on
// changed_at (the app's schema), so a month's rows are found either
// through the id index, which is cheap when ids follow time (rows the app
// writes as things happen: a month is a narrow id range), or by scanning
// the heap, which is the only bounded way when they do not (imported or
// backfilled rows: every month's ids span the whole table). Reading or
// deleting month by month in that second layout would scan the table, or
// dirty every page of it, once per month; instead months go in groups,
// each exported with one scan and deleted with one pass over the heap.

// monthPlan is one month's rows as the database holds them now.
type monthPlan struct {
	Month              Month
	Rows, MinID, MaxID int64
	IDSum              int64
}

// DefaultPassRows bounds the rows of one group of months in the scan
// layout (RunOptions.PassRows).
const DefaultPassRows = 5_000_000

// group is consecutive planned months handled by one export query and one
// delete transaction.
type group struct {
	Months []monthPlan
	// ByBlock: deletes reach the rows by ranges of heap pages (ctid), not
	// by id ranges.
	ByBlock bool
}

// planStreams is how many queries plan a big table at once, each a range
// of its pages (TID range scans, PostgreSQL 14): the server then counts on
// both cores of a small server.
const planStreams = 2

// planMonths counts, in one pass over audit_logs, the rows of every month
// up to and including last, with the id range and id sum of each; byPage
// splits the pass into planStreams queries of a range of pages each, run
// at the same time. It groups by the timestamp date_trunc gives, not its
// ::date: the planner guesses a group per row for the cast and sorted the
// whole eligible set on disk; grouped by the timestamp it hashes (a third
// faster on 1.2M rows). sum(id), not sum(id::bigint): an integer id sums
// into a bigint, a bigint into numeric, which is slower.
func planMonths(ctx context.Context, c Config, last Month, byPage bool) ([]monthPlan, error) {
	const q = `SELECT date_trunc('month', changed_at)::date, count(*), min(id), max(id), sum(id)
FROM audit_logs WHERE changed_at < $1::timestamp%s GROUP BY date_trunc('month', changed_at)`
	conds := []string{""}
	if byPage {
		var pages int64
		if err := c.Pool.QueryRow(ctx, `SELECT pg_relation_size('audit_logs') / current_setting('block_size')::bigint`).Scan(&pages); err != nil {
			return nil, fmt.Errorf("plan audit months: %w", err)
		}
		conds = conds[:0]
		for k := range int64(planStreams) {
			cond := fmt.Sprintf(` AND ctid >= '(%d,0)'::tid`, pages*k/planStreams)
			if k < planStreams-1 {
				cond += fmt.Sprintf(` AND ctid < '(%d,0)'::tid`, pages*(k+1)/planStreams)
			}
			conds = append(conds, cond)
		}
	}
	parts := make([][]monthPlan, len(conds))
	errs := make([]error, len(conds))
	var wg sync.WaitGroup
	for k, cond := range conds {
		wg.Go(func() {
			rows, err := c.Pool.Query(ctx, fmt.Sprintf(q, cond), pgTS(last.End()))
			if err == nil {
				parts[k], err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (monthPlan, error) {
					var p monthPlan
					var m time.Time
					err := r.Scan(&m, &p.Rows, &p.MinID, &p.MaxID, &p.IDSum)
					p.Month = Month{m.Year(), m.Month()}
					return p, err
				})
			}
			errs[k] = err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("plan audit months: %w", err)
	}
	byMonth := map[Month]monthPlan{}
	for _, part := range parts {
		for _, p := range part {
			if q, ok := byMonth[p.Month]; ok {
				p.Rows, p.IDSum = p.Rows+q.Rows, p.IDSum+q.IDSum
				p.MinID, p.MaxID = min(p.MinID, q.MinID), max(p.MaxID, q.MaxID)
			}
			byMonth[p.Month] = p
		}
	}
	plan := make([]monthPlan, 0, len(byMonth))
	for _, p := range byMonth {
		plan = append(plan, p)
	}
	slices.SortFunc(plan, func(a, b monthPlan) int { return a.Month.Start().Compare(b.Month.Start()) })
	return plan, nil
}

// idsFollowTime reports whether reading each month through its id range
// costs about as much as reading its rows: the months' id ranges together
// hold at most twice the rows they plan. Ranges that overlap (ids that do
// not follow time) make each month's range cover other months' rows.
func idsFollowTime(plan []monthPlan) bool {
	var span, rows int64
	for _, p := range plan {
		span += p.MaxID - p.MinID + 1
		rows += p.Rows
	}
	return span <= 2*rows
}

// groupMonths splits plan into groups: one month each when ids follow time;
// otherwise runs of consecutive months of at most passRows rows (at least
// one month each), reached by heap page ranges.
func groupMonths(plan []monthPlan, passRows int64) []group {
	var out []group
	if idsFollowTime(plan) {
		for _, p := range plan {
			out = append(out, group{Months: []monthPlan{p}})
		}
		return out
	}
	var cur group
	var rows int64
	for _, p := range plan {
		if len(cur.Months) > 0 && rows+p.Rows > passRows {
			out = append(out, cur)
			cur, rows = group{}, 0
		}
		cur.Months = append(cur.Months, p)
		cur.ByBlock = true
		rows += p.Rows
	}
	if len(cur.Months) > 0 {
		out = append(out, cur)
	}
	return out
}

// scope is where the export looks for the rows of some months: changed_at
// in [From, To) and id in [MinID, MaxID].
type scope struct {
	From, To     time.Time
	MinID, MaxID int64
}

// scopeOf is the smallest scope holding every month of ms (not empty),
// which are in order.
func scopeOf(ms []monthPlan) scope {
	s := scope{From: ms[0].Month.Start(), To: ms[len(ms)-1].Month.End(), MinID: ms[0].MinID, MaxID: ms[0].MaxID}
	for _, p := range ms {
		s.MinID, s.MaxID = min(s.MinID, p.MinID), max(s.MaxID, p.MaxID)
	}
	return s
}

// where is the scope's ids and changed_at as a WHERE condition on
// audit_logs aliased a, with the values written out (COPY takes no
// parameters). The planner picks the access: the id index for a narrow
// range, a scan (and a sort by id) when the range is the whole table.
func (s scope) where() string {
	return fmt.Sprintf(`a.id >= %d AND a.id <= %d AND a.changed_at >= '%s'::timestamp AND a.changed_at < '%s'::timestamp`,
		s.MinID, s.MaxID, pgTimestamp(s.From), pgTimestamp(s.To))
}
