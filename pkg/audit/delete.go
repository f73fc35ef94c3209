package audit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// inMonths is the condition that keeps a row of audit_logs a to some
// months and their recorded id ranges: $3 holds the start of every month
// from the first to the last, $1 and $2 the min and max id of each (an
// empty range for a month left out); $4-$7 bound ids and changed_at so
// that the planner reaches the rows without reading the rest of the table.
// A condition, not a join: a join sorted the rows and lost the heap order
// a delete should go in. The parameters are typed (pgtype values, which the
// exec mode sends with their type): a text parameter cast to timestamp is
// cast again for every row.
const inMonths = `a.id >= $4::bigint AND a.id <= $5::bigint AND a.changed_at >= $6::timestamp AND a.changed_at < $7::timestamp
  AND a.id >= ($1::bigint[])[` + monthIndex + `] AND a.id <= ($2::bigint[])[` + monthIndex + `]`

// monthIndex numbers the month of a row, 1 for the first of inMonths (a
// binary search: date_part or date_trunc per row cost twice as much).
const monthIndex = `width_bucket(a.changed_at, $3::timestamp[])`

// monthArgs are the parameters $1-$7 of inMonths for recs (in order, not
// empty).
func monthArgs(recs []Record) []any {
	first, last := recs[0].Month, recs[len(recs)-1].Month
	var starts []pgtype.Timestamp
	for m := first; !last.Before(m); m = m.Next() {
		starts = append(starts, pgTS(m.Start()))
	}
	lo, hi := make([]int64, len(starts)), make([]int64, len(starts))
	for i := range lo {
		lo[i], hi[i] = 1, 0
	}
	minID, maxID := recs[0].MinID, recs[0].MaxID
	for _, r := range recs {
		i := monthNumber(r.Month) - monthNumber(first)
		lo[i], hi[i] = r.MinID, r.MaxID
		minID, maxID = min(minID, r.MinID), max(maxID, r.MaxID)
	}
	return []any{lo, hi, starts, minID, maxID, pgTS(first.Start()), pgTS(last.End())}
}

// monthNumber counts months from year 0.
func monthNumber(m Month) int { return m.Year*12 + int(m.Month) }

// tally is a count of rows and the sum of their ids.
type tally struct{ n, sum int64 }

// collectTallies adds the (month index, count, id sum) rows of a
// statement to t, whose months start at first.
func collectTallies(rows pgx.Rows, first Month, t map[Month]tally) error {
	var i int
	var n, sum int64
	_, err := pgx.ForEachRow(rows, []any{&i, &n, &sum}, func() error {
		mo := MonthOf(first.Start().AddDate(0, i-1, 0))
		t[mo] = tally{t[mo].n + n, t[mo].sum + sum}
		return nil
	})
	return err
}

// countMonths counts, with one statement, the rows that audit_logs holds
// now of each month of recs (in order, not empty) within its recorded id
// range.
func countMonths(ctx context.Context, db querier, recs []Record) (map[Month]tally, error) {
	rows, err := db.Query(ctx, `SELECT `+monthIndex+`, count(*), sum(a.id) FROM audit_logs a WHERE `+inMonths+` GROUP BY 1`,
		append([]any{pgx.QueryExecModeExec}, monthArgs(recs)...)...)
	if err != nil {
		return nil, fmt.Errorf("count %s in audit_logs: %w", recs[0].Month, err)
	}
	t := map[Month]tally{}
	if err := collectTallies(rows, recs[0].Month, t); err != nil {
		return nil, fmt.Errorf("count %s in audit_logs: %w", recs[0].Month, err)
	}
	return t, nil
}

// deleteStreams is how many transactions delete a group of months at once
// (each its own months, each a pass over the whole table, starting at a
// different page): like the export, the server side then uses both cores
// of a small server.
const deleteStreams = 2

// deleteMonths deletes the rows of the months of items (in order): when
// ranges is set (the guard takes a range of months) in deleteStreams
// transactions of consecutive months, at the same time; else in one
// transaction per month, one after the other. Each transaction commits
// only if, for every one of its months, exactly the archived rows (count
// and id sum) went; a month that does not match is left out (its error,
// wrapping ErrMismatch, in refused) and the others are deleted again
// without it. byBlock reaches the rows through heap page ranges of about
// batch rows each, else through id ranges of batch ids.
func deleteMonths(ctx context.Context, c Config, items []Record, batch int64, byBlock, ranges bool) (deleted map[Month]int64, refused map[Month]error, err error) {
	deleted, refused = map[Month]int64{}, map[Month]error{}
	var units [][]Record
	switch {
	case !ranges:
		for _, it := range items {
			units = append(units, []Record{it})
		}
	case len(items) < deleteStreams:
		units = [][]Record{items}
	default:
		// Consecutive months, about as many rows each.
		var total, sum int64
		for _, it := range items {
			total += it.RowCount
		}
		units = make([][]Record, deleteStreams)
		for _, it := range items {
			k := min(int(sum*deleteStreams/max(total, 1)), deleteStreams-1)
			units[k] = append(units[k], it)
			sum += it.RowCount
		}
	}
	var mu sync.Mutex
	run := func(k int, u []Record) error {
		for len(u) > 0 {
			got, bad, err := deleteUnit(ctx, c, delUnit{recs: u, batch: batch, byBlock: byBlock, part: k, parts: len(units)})
			if err != nil {
				return err
			}
			mu.Lock()
			for m, n := range got {
				deleted[m] = n
			}
			for m, e := range bad {
				refused[m] = e
			}
			mu.Unlock()
			if len(bad) == 0 {
				return nil
			}
			kept := u[:0:0]
			for _, it := range u {
				if _, ok := bad[it.Month]; !ok {
					kept = append(kept, it)
				}
			}
			u = kept
		}
		return nil
	}
	if !ranges {
		for _, u := range units {
			if err := run(0, u); err != nil {
				return deleted, refused, err
			}
		}
		return deleted, refused, nil
	}
	errs := make([]error, len(units))
	var wg sync.WaitGroup
	for k, u := range units {
		if len(u) > 0 {
			wg.Go(func() { errs[k] = run(k, u) })
		}
	}
	wg.Wait()
	return deleted, refused, errors.Join(errs...)
}

// delUnit is the months one delete transaction takes.
type delUnit struct {
	recs    []Record
	batch   int64
	byBlock bool
	// part of parts: by pages, it starts at that share of the table (the
	// transactions of one group do not all start on the same pages).
	part, parts int
}

// errRefused rolls back a delete transaction that found mismatches.
var errRefused = errors.New("delete refused")

// deleteUnit deletes the rows of u's months in one transaction, which
// commits only if the count and id sum of the rows deleted are those of
// the archives, and returns the rows deleted per month; or, having rolled
// back, the months that did not match. lock_timeout keeps it from queueing
// ahead of the app's inserts behind a conflicting lock; the rows it
// deletes are old, so inserts never wait on it.
func deleteUnit(ctx context.Context, c Config, u delUnit) (map[Month]int64, map[Month]error, error) {
	recs, batch, byBlock := u.recs, u.batch, u.byBlock
	var total int64
	for _, r := range recs {
		total += r.RowCount
	}
	setting := recs[0].Month.String()
	if len(recs) > 1 {
		setting += ".." + recs[len(recs)-1].Month.String()
	}
	args := monthArgs(recs)
	c.Logger.Info("deleting archived rows", "months", setting, "rows", total, "by_page", byBlock)
	bad := map[Month]error{}
	var got, want tally
	for _, r := range recs {
		want.n, want.sum = want.n+r.RowCount, want.sum+r.IDSum
	}
	mismatch := false
	err := pgx.BeginFunc(ctx, c.Pool, func(tx pgx.Tx) error {
		// work_mem: the guard's transition table of a statement (about
		// batch rows) stays in memory instead of a temp file.
		if _, err := tx.Exec(ctx, `SELECT set_config('lock_timeout', '1s', true), set_config('work_mem', '64MB', true), set_config($1, $2, true)`,
			DeleteSetting, setting); err != nil {
			return err
		}
		months := make([]string, len(recs))
		for i, r := range recs {
			months[i] = r.Month.Start().Format(time.DateOnly)
		}
		rows, err := tx.Query(ctx, `SELECT month, state FROM `+c.q()+`.audit_archive_months WHERE month = ANY($1::date[]) ORDER BY month FOR UPDATE`, months)
		if err != nil {
			return err
		}
		states := map[Month]string{}
		var m time.Time
		var state string
		if _, err := pgx.ForEachRow(rows, []any{&m, &state}, func() error { states[MonthOf(m)] = state; return nil }); err != nil {
			return err
		}
		for _, r := range recs {
			if st := states[r.Month]; st != StateVerified {
				bad[r.Month] = fmt.Errorf("%w: %s: state is %s, not verified", ErrMismatch, r.Month, st)
			}
		}
		if len(bad) > 0 {
			return errRefused
		}
		// The count and id sum of each statement's rows, not of each
		// month's: grouping the returned rows by month cost a quarter of
		// the delete. A mismatch is traced to its months after rolling
		// back (see below).
		q := `WITH d AS (DELETE FROM audit_logs a WHERE %s AND ` + inMonths + ` RETURNING a.id) SELECT count(*), coalesce(sum(id), 0) FROM d`
		each := func(chunk string, from, to any) error {
			var n, sum int64
			if err := tx.QueryRow(ctx, fmt.Sprintf(q, chunk), append(append([]any{pgx.QueryExecModeExec}, args...), from, to)...).Scan(&n, &sum); err != nil {
				return err
			}
			got.n, got.sum = got.n+n, got.sum+sum
			return nil
		}
		if byBlock {
			// Every page of the table, in ranges holding about batch of
			// the months' rows each. Pages added later hold rows written
			// after the export: not archived, so not deleted.
			var pages int64
			if err := tx.QueryRow(ctx, `SELECT pg_relation_size('audit_logs') / current_setting('block_size')::bigint`).Scan(&pages); err != nil {
				return err
			}
			per := max(1, batch*pages/max(total, 1))
			first := (pages * int64(u.part) / int64(max(u.parts, 1))) / per * per
			for i := int64(0); i < pages; i += per {
				b := (first + i) % ((pages + per - 1) / per * per)
				if err := each(`a.ctid >= $8::tid AND a.ctid < $9::tid`, tid(b), tid(b+per)); err != nil {
					return fmt.Errorf("delete %s: %w", setting, err)
				}
			}
		} else {
			lo, hi := args[3].(int64), args[4].(int64)
			for ; lo <= hi; lo += batch {
				if err := each(`a.id >= $8::bigint AND a.id < $9::bigint`, lo, lo+batch); err != nil {
					return fmt.Errorf("delete %s: %w", setting, err)
				}
			}
		}
		if got != want {
			mismatch = true
			return errRefused
		}
		n := make([]int64, len(recs))
		for i, r := range recs {
			n[i] = r.RowCount
		}
		_, err = tx.Exec(ctx, `UPDATE `+c.q()+`.audit_archive_months a SET state = 'deleted', deleted_at = now(), deleted_rows = v.n
FROM unnest($1::date[], $2::bigint[]) AS v(month, n) WHERE a.month = v.month`, months, n)
		return err
	})
	switch {
	case errors.Is(err, errRefused) && !mismatch:
		return nil, bad, nil
	case errors.Is(err, errRefused):
		// Which months hold other rows than their archive: count them
		// again (one pass), now that the delete is undone.
		if len(recs) > 1 {
			counted, err := countMonths(ctx, c.Pool, recs)
			if err != nil {
				return nil, nil, err
			}
			for _, r := range recs {
				if t := counted[r.Month]; t.n != r.RowCount || t.sum != r.IDSum {
					bad[r.Month] = fmt.Errorf("%w: %s: audit_logs holds %d rows of the month in ids %d-%d, the archive %d; nothing deleted", ErrMismatch, r.Month, t.n, r.MinID, r.MaxID, r.RowCount)
				}
			}
		}
		if len(bad) == 0 {
			for _, r := range recs {
				bad[r.Month] = fmt.Errorf("%w: %s: the delete of %s matched %d rows, the archives hold %d; rolled back", ErrMismatch, r.Month, setting, got.n, want.n)
			}
		}
		return nil, bad, nil
	case err != nil:
		return nil, nil, fmt.Errorf("delete archived rows of %s: %w", setting, err)
	}
	out := map[Month]int64{}
	for _, r := range recs {
		out[r.Month] = r.RowCount
	}
	return out, nil, nil
}

// tid is the first tuple of heap page b.
func tid(b int64) pgtype.TID { return pgtype.TID{BlockNumber: uint32(b), Valid: true} }

// pgTS is t as a timestamp parameter (naive, UTC): a time.Time would go as
// timestamptz and shift with the session's time zone.
func pgTS(t time.Time) pgtype.Timestamp { return pgtype.Timestamp{Time: t.UTC(), Valid: true} }
