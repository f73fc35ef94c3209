package audit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ip2a/ip2a-ops/pkg/exitcode"
)

// RunOptions configure Run. Zero values mean defaults.
type RunOptions struct {
	Config
	// ArchiveAfter: months wholly older than this are archived (default 3y).
	ArchiveAfter Age
	// Retain is the total retention, used for the Object Lock retain-until
	// date and checked against ArchiveAfter (default 7y).
	Retain Age
	// Until, when set, limits the run to months up to and including it; it
	// must itself be old enough to archive.
	Until Month
	// DryRun plans and changes nothing.
	DryRun bool
	// KeepOnline archives and verifies but never deletes rows.
	KeepOnline bool
	// ObjectLock asks the store to retain each object until the month is
	// past Retain (S3 Object Lock, compliance mode).
	ObjectLock bool
	// DeleteBatch is the id span of one DELETE statement inside the delete
	// transaction (default 50,000): it bounds the guard's transition table.
	DeleteBatch int64
	// ProgressFunc, when set, is called after each month with the result so far.
	ProgressFunc func(RunResult)
}

// Validate names the first bad field.
func (o RunOptions) Validate() error {
	if err := o.Config.validate(!o.DryRun); err != nil {
		return err
	}
	return CheckPolicy(o.Config.withDefaults().Now(), o.ArchiveAfter, o.Retain, o.Until)
}

// CheckPolicy validates the retention flags at now, without a database:
// Retain may not be shorter than ArchiveAfter (zero ages mean the
// defaults), and Until (when set) may be neither in the future nor too
// young to archive.
func CheckPolicy(now time.Time, after, retain Age, until Month) error {
	if after == (Age{}) {
		after = DefaultArchiveAfter
	}
	if retain == (Age{}) {
		retain = DefaultRetain
	}
	if retain.TotalMonths() < after.TotalMonths() {
		return fmt.Errorf("Retain: %s is shorter than ArchiveAfter %s: rows would be purged before they are archived", retain, after)
	}
	if !until.IsZero() {
		if MonthOf(now).Before(until) {
			return fmt.Errorf("Until: %s is in the future", until)
		}
		if last := LastEligible(now, after); last.Before(until) {
			return fmt.Errorf("Until: %s is not yet older than %s (the newest month that is: %s)", until, after, last)
		}
	}
	return nil
}

func (o RunOptions) withDefaults() RunOptions {
	o.Config = o.Config.withDefaults()
	if o.ArchiveAfter == (Age{}) {
		o.ArchiveAfter = DefaultArchiveAfter
	}
	if o.Retain == (Age{}) {
		o.Retain = DefaultRetain
	}
	if o.DeleteBatch <= 0 {
		o.DeleteBatch = 50_000
	}
	return o
}

// MonthResult is what a run did with one month.
type MonthResult struct {
	Month Month `json:"month"`
	// Rows in the month's archive (or, in a dry run, in the database).
	Rows int64 `json:"rows"`
	// Uploaded: the archive was written in this run (false: it was already
	// stored and recorded, so it was only read back).
	Uploaded        bool   `json:"uploaded"`
	Verified        bool   `json:"verified"`
	Deleted         int64  `json:"deleted"`
	CompressedBytes int64  `json:"compressed_bytes"`
	Problem         string `json:"problem,omitempty"`
}

// RunResult is what Run did.
type RunResult struct {
	// LastEligible is the newest month old enough to archive.
	LastEligible Month `json:"last_eligible"`
	DryRun       bool  `json:"dry_run"`
	// GuardInstalled, and when rows were not deleted, why not.
	GuardInstalled bool          `json:"guard_installed"`
	DeleteSkipped  string        `json:"delete_skipped,omitempty"`
	Months         []MonthResult `json:"months"`
	MonthsUploaded int           `json:"months_uploaded"`
	MonthsVerified int           `json:"months_verified"`
	MonthsDeleted  int           `json:"months_deleted"`
	RowsArchived   int64         `json:"rows_archived"`
	RowsDeleted    int64         `json:"rows_deleted"`
	BytesUploaded  int64         `json:"bytes_uploaded"`
	Problems       []string      `json:"problems,omitempty"`
}

// Run archives every eligible month, oldest first, verifies each stored
// archive by reading it back, and deletes its rows when the guard is
// installed. It is idempotent: a month already recorded is not uploaded
// again, only read back; a crash at any point leaves either the rows in
// audit_logs or a verified archive of them (never neither, never both
// counted as deleted). A mismatch stops that month's delete and returns
// an error wrapping ErrMismatch; rows of an already-deleted month found
// again in audit_logs are a problem (exitcode.ErrProblems).
func Run(ctx context.Context, o RunOptions) (RunResult, error) {
	if err := o.Validate(); err != nil {
		return RunResult{}, err
	}
	o = o.withDefaults()
	c := o.Config
	res := RunResult{DryRun: o.DryRun, Months: []MonthResult{}}
	now := c.Now()
	res.LastEligible = LastEligible(now, o.ArchiveAfter)
	last := res.LastEligible
	if !o.Until.IsZero() && o.Until.Before(last) {
		last = o.Until
	}
	cols, err := tableColumns(ctx, c.Pool)
	if err != nil {
		return res, fmt.Errorf("archive audit logs: %w", err)
	}
	guard, err := Guard(ctx, c)
	if err != nil {
		return res, err
	}
	res.GuardInstalled = guard.Installed
	switch {
	case o.DryRun:
		res.DeleteSkipped = "dry run"
	case o.KeepOnline:
		res.DeleteSkipped = "--keep-online"
	case !guard.Installed:
		res.DeleteSkipped = "the audit guard is not installed (run 'ip2a-ops audit-archive install-guard' as the owner of audit_logs); archives were written and verified, no row was deleted"
	}
	plan, err := planMonths(ctx, c, last)
	if err != nil {
		return res, err
	}
	recs, err := records(ctx, c)
	if err != nil {
		return res, err
	}
	byMonth := map[Month]Record{}
	var tip link
	for _, r := range recs {
		byMonth[r.Month] = r
		tip = link{r.Month, r.ManifestSHA256}
	}
	// Three stages, one month apart: while month N's rows are deleted,
	// month N+1 is read back and verified and month N+2 exported. Each
	// stage hands over one month at a time and waits, so at most one month
	// is in flight between two stages and memory stays that of a few
	// streams. Each month still goes through the same steps in the same
	// order, each one safe to crash in: the stages only overlap different
	// months.
	stageCtx, cancel := context.WithCancel(ctx)
	exportedCh, verifiedCh := make(chan staged), make(chan staged)
	var wg sync.WaitGroup
	wg.Go(func() { o.exportStage(stageCtx, cols, plan, byMonth, tip, exportedCh) })
	wg.Go(func() { o.verifyStage(stageCtx, exportedCh, verifiedCh, res.DeleteSkipped != "") })
	defer func() {
		cancel()
		for range verifiedCh {
		}
		wg.Wait()
	}()
	var mismatch bool
	for s := range verifiedCh {
		if s.err != nil {
			return res, s.err
		}
		if err := ctx.Err(); err != nil {
			return res, err
		}
		mr := s.mr
		if mr.Problem != "" {
			res.Problems = append(res.Problems, mr.Problem)
			res.Months = append(res.Months, mr)
			continue
		}
		if o.DryRun {
			res.Months = append(res.Months, mr)
			continue
		}
		rec := s.rec
		if mr.Uploaded {
			res.MonthsUploaded++
			res.RowsArchived += rec.RowCount
			res.BytesUploaded += rec.CompressedBytes + s.manifestBytes
		}
		mr.Rows, mr.CompressedBytes = rec.RowCount, rec.CompressedBytes
		if err := s.verifyErr; err != nil {
			mismatch = true
			mr.Problem = err.Error()
			res.Problems = append(res.Problems, mr.Problem)
			res.Months = append(res.Months, mr)
			continue
		}
		mr.Verified = true
		res.MonthsVerified++
		if res.DeleteSkipped == "" {
			n, err := deleteMonth(ctx, c, rec, o.DeleteBatch)
			if err != nil {
				if !errors.Is(err, ErrMismatch) {
					return res, err
				}
				mismatch = true
				mr.Problem = err.Error()
				res.Problems = append(res.Problems, mr.Problem)
			} else {
				mr.Deleted = n
				res.MonthsDeleted++
				res.RowsDeleted += n
				c.Logger.Info("deleted archived rows", "month", s.mr.Month.String(), "rows", n)
			}
		}
		res.Months = append(res.Months, mr)
		if o.ProgressFunc != nil {
			o.ProgressFunc(res)
		}
	}
	// The export stage gives up without a word only when ctx is done.
	if err := ctx.Err(); err != nil {
		return res, err
	}
	switch {
	case mismatch:
		return res, fmt.Errorf("archive audit logs: %d problems, nothing deleted for those months: %w", len(res.Problems), ErrMismatch)
	case len(res.Problems) > 0:
		return res, fmt.Errorf("archive audit logs: %d problems: %w", len(res.Problems), exitcode.ErrProblems)
	}
	return res, nil
}

// staged is one month handed from the export stage to the verify-and-delete
// stage: a problem, a dry-run entry, or a recorded archive to verify.
type staged struct {
	mr            MonthResult
	rec           Record
	manifestBytes int64
	// verifyErr is the mismatch the read-back found (wraps ErrMismatch).
	verifyErr error
	err       error
}

// handOver sends s unless ctx is done first.
func handOver(ctx context.Context, out chan<- staged, s staged) bool {
	select {
	case out <- s:
		return true
	case <-ctx.Done():
		return false
	}
}

// verifyStage reads back and verifies every recorded archive from in (see
// verifyForDelete) and hands each month on to out in order, with the
// mismatch it found. Other errors stop it after handing them over. It
// closes out when done.
func (o RunOptions) verifyStage(ctx context.Context, in <-chan staged, out chan<- staged, count bool) {
	defer close(out)
	for s := range in {
		if s.err == nil && s.mr.Problem == "" && !o.DryRun {
			if err := verifyForDelete(ctx, o.Config, &s.rec, count); err != nil {
				if errors.Is(err, ErrMismatch) {
					s.verifyErr = err
				} else {
					s.err = err
				}
			}
		}
		if !handOver(ctx, out, s) || s.err != nil {
			return
		}
	}
}

// exportStage classifies every planned month, exports and records those
// not archived yet (oldest first, extending the chain from tip), and hands
// each month to out in order. It stops after the first error, which it
// hands over too, and closes out when done; it gives up when ctx is done.
func (o RunOptions) exportStage(ctx context.Context, cols []Column, plan []monthPlan, byMonth map[Month]Record, tip link, out chan<- staged) {
	defer close(out)
	c := o.Config
	send := func(s staged) bool { return handOver(ctx, out, s) }
	for _, p := range plan {
		s := staged{mr: MonthResult{Month: p.Month, Rows: p.Rows}}
		if err := ctx.Err(); err != nil {
			s.err = err
			send(s)
			return
		}
		rec, ok := byMonth[p.Month]
		switch {
		case ok && (rec.State == StateDeleted || rec.State == StatePurged):
			s.mr.Problem = fmt.Sprintf("%d rows of %s are in audit_logs although the month was archived and deleted (written later?); they are not archived", p.Rows, p.Month)
		case !ok && p.Month.Before(tip.month):
			s.mr.Problem = fmt.Sprintf("%d rows of %s are older than the newest archive (%s); archiving them would break the chain", p.Rows, p.Month, tip.month)
		}
		if s.mr.Problem == "" && !o.DryRun && !ok {
			var until time.Time
			if o.ObjectLock {
				until = p.Month.End().AddDate(o.Retain.Years, o.Retain.Months, 0)
			}
			e, err := exportMonth(ctx, c, cols, p, tip, until)
			if err == nil {
				rec, err = saveArchived(ctx, c, e)
			}
			if err != nil {
				s.err = err
				send(s)
				return
			}
			c.Logger.Info("archived month", "month", p.Month.String(), "rows", rec.RowCount, "bytes", rec.CompressedBytes)
			tip = link{rec.Month, rec.ManifestSHA256}
			s.mr.Uploaded = true
			s.manifestBytes = int64(len(e.manifestRaw))
		}
		s.rec = rec
		if !send(s) {
			return
		}
	}
}

// planMonths counts, in one pass over audit_logs, the rows of every month
// up to and including last. It groups by the timestamp date_trunc gives,
// not its ::date: the planner guesses a group per row for the cast and
// sorted the whole eligible set on disk; grouped by the timestamp it
// hashes (a third faster on 1.2M rows).
func planMonths(ctx context.Context, c Config, last Month) ([]monthPlan, error) {
	rows, err := c.Pool.Query(ctx, `SELECT date_trunc('month', changed_at)::date, count(*), min(id)::bigint, max(id)::bigint, sum(id::bigint)
FROM audit_logs WHERE changed_at < $1::timestamp GROUP BY date_trunc('month', changed_at) ORDER BY 1`, pgTimestamp(last.End()))
	if err != nil {
		return nil, fmt.Errorf("plan audit months: %w", err)
	}
	plan, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (monthPlan, error) {
		var p monthPlan
		var m time.Time
		err := r.Scan(&m, &p.Rows, &p.MinID, &p.MaxID, &p.IDSum)
		p.Month = Month{m.Year(), m.Month()}
		return p, err
	})
	if err != nil {
		return nil, fmt.Errorf("plan audit months: %w", err)
	}
	return plan, nil
}

// verifyForDelete reads the stored archive back and compares it with its
// record and a fresh count of the month in the database, then marks the
// record verified.
//
// count is false when a delete follows: it counts the month again inside
// its own transaction, which is the count that matters.
func verifyForDelete(ctx context.Context, c Config, rec *Record, count bool) error {
	if _, err := checkStored(ctx, c.Store, *rec); err != nil {
		return err
	}
	if count {
		n, sum, err := freshCount(ctx, c.Pool, *rec)
		if err != nil {
			return err
		}
		if n != rec.RowCount || sum != rec.IDSum {
			return fmt.Errorf("%w: %s: audit_logs now holds %d rows of the month in ids %d-%d, the archive %d", ErrMismatch, rec.Month, n, rec.MinID, rec.MaxID, rec.RowCount)
		}
	}
	if rec.State == StateArchived {
		if _, err := c.Pool.Exec(ctx, `UPDATE `+c.q()+`.audit_archive_months SET state = 'verified', verified_at = now() WHERE month = $1 AND state = 'archived'`, rec.Month.Start()); err != nil {
			return fmt.Errorf("record %s verified: %w", rec.Month, err)
		}
		rec.State = StateVerified
	}
	return nil
}

// deleteMonth deletes the month's rows in one transaction, by id windows,
// and commits only if exactly the archived rows (count and id sum) went.
// lock_timeout keeps it from queueing ahead of the app's inserts behind a
// conflicting lock; the rows it deletes are old, so inserts never wait on it.
func deleteMonth(ctx context.Context, c Config, rec Record, batch int64) (int64, error) {
	var total, sum int64
	err := pgx.BeginFunc(ctx, c.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT set_config('lock_timeout', '1s', true), set_config($1, $2, true)`, DeleteSetting, rec.Month.String()); err != nil {
			return err
		}
		var state string
		if err := tx.QueryRow(ctx, `SELECT state FROM `+c.q()+`.audit_archive_months WHERE month = $1 FOR UPDATE`, rec.Month.Start()).Scan(&state); err != nil {
			return err
		}
		if state != StateVerified {
			return fmt.Errorf("%w: %s: state is %s, not verified", ErrMismatch, rec.Month, state)
		}
		n, s, err := freshCount(ctx, tx, rec)
		if err != nil {
			return err
		}
		if n != rec.RowCount || s != rec.IDSum {
			return fmt.Errorf("%w: %s: audit_logs holds %d rows of the month, the archive %d", ErrMismatch, rec.Month, n, rec.RowCount)
		}
		from, to := pgTimestamp(rec.Month.Start()), pgTimestamp(rec.Month.End())
		for lo := rec.MinID; lo <= rec.MaxID; lo += batch {
			var n, s int64
			err := tx.QueryRow(ctx, `WITH d AS (DELETE FROM audit_logs
  WHERE id >= $1::bigint AND id < $2::bigint AND id <= $3::bigint AND changed_at >= $4::timestamp AND changed_at < $5::timestamp RETURNING id)
SELECT count(*), coalesce(sum(id::bigint), 0) FROM d`, pgx.QueryExecModeExec, lo, lo+batch, rec.MaxID, from, to).Scan(&n, &s)
			if err != nil {
				return fmt.Errorf("delete %s: %w", rec.Month, err)
			}
			total, sum = total+n, sum+s
		}
		if total != rec.RowCount || sum != rec.IDSum {
			return fmt.Errorf("%w: %s: the delete matched %d rows, the archive holds %d; rolled back", ErrMismatch, rec.Month, total, rec.RowCount)
		}
		_, err = tx.Exec(ctx, `UPDATE `+c.q()+`.audit_archive_months SET state = 'deleted', deleted_at = now(), deleted_rows = $2 WHERE month = $1`, rec.Month.Start(), total)
		return err
	})
	if err != nil {
		if errors.Is(err, ErrMismatch) {
			return 0, err
		}
		return 0, fmt.Errorf("delete archived rows of %s: %w", rec.Month, err)
	}
	return total, nil
}
