package audit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/ip2a/ip2a-ops/pkg/exitcode"
	"github.com/ip2a/ip2a-ops/pkg/progress"
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
	// DeleteBatch bounds one DELETE statement inside a delete transaction
	// (default 50,000): an id span of that many ids when ids follow time,
	// else heap pages holding about that many of the months' rows. It
	// bounds the guard's transition table.
	DeleteBatch int64
	// PassRows bounds the rows of a group of months read with one scan of
	// audit_logs and deleted in one transaction, when ids do not follow
	// time (default DefaultPassRows). Months of such a group are written
	// uncompressed to TempDir until the scan ends.
	PassRows int64
	// ProgressFunc, when set, is called after each month with the result so far.
	ProgressFunc func(RunResult)
	// Tracker, when set, counts the months done (exported, verified and
	// deleted, or found wanting) of those the run plans.
	Tracker *progress.Tracker
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
	if o.PassRows <= 0 {
		o.PassRows = DefaultPassRows
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
	// Page ranges (TID range scans) need PostgreSQL 14.
	var version int
	if err := c.Pool.QueryRow(ctx, `SELECT current_setting('server_version_num')::int`).Scan(&version); err != nil {
		return res, fmt.Errorf("archive audit logs: %w", err)
	}
	plan, err := planMonths(ctx, c, last, version >= 140000)
	if err != nil {
		return res, err
	}
	groups := groupMonths(plan, o.PassRows)
	byBlock := len(groups) > 0 && groups[0].ByBlock && version >= 140000
	if len(groups) > 0 && groups[0].ByBlock {
		c.Logger.Info("ids do not follow time: months go in groups, one scan each", "groups", len(groups), "by_page", byBlock)
	}
	ranges := guard.Version >= 2
	if res.DeleteSkipped == "" && byBlock && !ranges {
		c.Logger.Warn("the installed audit guard deletes one month per statement: months are deleted one by one, each a pass over audit_logs; run 'ip2a-ops audit-archive install-guard' to upgrade it")
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
	// months. A group of several months (ids that do not follow time) is
	// exported by one scan, and verified and deleted together once its
	// last month has been read back.
	planned := 0
	for _, g := range groups {
		planned += len(g.Months)
	}
	o.Tracker.Phase("archive", progress.Months, int64(planned))
	stageCtx, cancel := context.WithCancel(ctx)
	exportedCh, verifiedCh := make(chan staged), make(chan staged)
	var wg sync.WaitGroup
	wg.Go(func() { o.exportStage(stageCtx, cols, groups, byMonth, tip, exportedCh) })
	wg.Go(func() { o.verifyStage(stageCtx, exportedCh, verifiedCh, res.DeleteSkipped != "") })
	defer func() {
		cancel()
		for range verifiedCh {
		}
		wg.Wait()
	}()
	var mismatch bool
	var batch []staged
	for s := range verifiedCh {
		if s.err != nil {
			return res, s.err
		}
		if err := ctx.Err(); err != nil {
			return res, err
		}
		// A group's months are deleted together once the last one is
		// verified. (Deleting a big group in two halves, the first while
		// the second is read back, was slower: every page is scanned and
		// dirtied twice.)
		if batch = append(batch, s); !s.last {
			continue
		}
		var del []Record
		for i := range batch {
			s := &batch[i]
			if s.mr.Problem != "" || o.DryRun {
				continue
			}
			if s.mr.Uploaded {
				res.MonthsUploaded++
				res.RowsArchived += s.rec.RowCount
				res.BytesUploaded += s.rec.CompressedBytes + s.manifestBytes
			}
			s.mr.Rows, s.mr.CompressedBytes = s.rec.RowCount, s.rec.CompressedBytes
			if s.verifyErr != nil {
				mismatch = true
				s.mr.Problem = s.verifyErr.Error()
				continue
			}
			s.mr.Verified = true
			res.MonthsVerified++
			if res.DeleteSkipped == "" {
				del = append(del, s.rec)
			}
		}
		var deleted map[Month]int64
		var refused map[Month]error
		if len(del) > 0 {
			if deleted, refused, err = deleteMonths(ctx, c, del, o.DeleteBatch, byBlock, ranges); err != nil {
				return res, err
			}
		}
		for _, s := range batch {
			mr := s.mr
			if n, ok := deleted[mr.Month]; ok {
				mr.Deleted = n
				res.MonthsDeleted++
				res.RowsDeleted += n
				c.Logger.Info("deleted archived rows", "month", mr.Month.String(), "rows", n)
			} else if e, ok := refused[mr.Month]; ok {
				mismatch = true
				mr.Problem = e.Error()
			}
			if mr.Problem != "" {
				res.Problems = append(res.Problems, mr.Problem)
			}
			res.Months = append(res.Months, mr)
			o.Tracker.Add(1)
			if mr.Verified && o.ProgressFunc != nil {
				o.ProgressFunc(res)
			}
		}
		batch = nil
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
	plan          monthPlan
	manifestBytes int64
	// last: the last month of its group.
	last bool
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

// verifyStage reads back and verifies every recorded archive from in, and
// when count is set (no delete follows) compares each month with a fresh
// count of the database, once per group; then it marks the months
// verified and hands each on to out in order, with the mismatch it found
// (at once without count, at the end of its group with). Other errors stop
// it after handing them over. It closes out when done.
func (o RunOptions) verifyStage(ctx context.Context, in <-chan staged, out chan<- staged, count bool) {
	defer close(out)
	var group []staged
	for s := range in {
		if s.err == nil && s.mr.Problem == "" && !o.DryRun {
			if _, err := checkStored(ctx, o.Config.Store, s.rec); err != nil {
				if errors.Is(err, ErrMismatch) {
					s.verifyErr = err
				} else {
					s.err = err
				}
			}
		}
		if group = append(group, s); count && !s.last && s.err == nil {
			continue
		}
		if s.err == nil {
			s.err = o.markVerified(ctx, group, count)
			group[len(group)-1].err = s.err
		}
		for _, g := range group {
			if !handOver(ctx, out, g) {
				return
			}
		}
		if s.err != nil {
			return
		}
		group = group[:0]
	}
}

// markVerified compares the read-back months of group that matched their
// manifests with a fresh count of the database (when count is set: a
// delete counts for itself), and records those that still match as
// verified.
func (o RunOptions) markVerified(ctx context.Context, group []staged, count bool) error {
	c := o.Config
	var recs []Record
	for _, s := range group {
		if s.err == nil && s.mr.Problem == "" && !o.DryRun && s.verifyErr == nil {
			recs = append(recs, s.rec)
		}
	}
	if len(recs) == 0 {
		return nil
	}
	var counted map[Month]tally
	if count {
		var err error
		if counted, err = countMonths(ctx, c.Pool, recs); err != nil {
			return err
		}
	}
	for i := range group {
		s := &group[i]
		if s.err != nil || s.mr.Problem != "" || o.DryRun || s.verifyErr != nil {
			continue
		}
		rec := &s.rec
		if t := counted[rec.Month]; count && (t.n != rec.RowCount || t.sum != rec.IDSum) {
			s.verifyErr = fmt.Errorf("%w: %s: audit_logs now holds %d rows of the month in ids %d-%d, the archive %d", ErrMismatch, rec.Month, t.n, rec.MinID, rec.MaxID, rec.RowCount)
			continue
		}
		if rec.State == StateArchived {
			if err := noWaitCommit(ctx, c, nil, `UPDATE `+c.q()+`.audit_archive_months SET state = 'verified', verified_at = now() WHERE month = $1 AND state = 'archived'`, rec.Month.Start()); err != nil {
				return fmt.Errorf("record %s verified: %w", rec.Month, err)
			}
			rec.State = StateVerified
		}
	}
	return nil
}

// exportStage classifies every planned month, exports and records those
// not archived yet (oldest first, extending the chain from tip; the months
// of a group with one read), and hands each month to out in order. It
// stops after the first error, which it hands over too, and closes out
// when done; it gives up when ctx is done.
func (o RunOptions) exportStage(ctx context.Context, cols []Column, groups []group, byMonth map[Month]Record, tip link, out chan<- staged) {
	defer close(out)
	c := o.Config
	send := func(s staged) bool { return handOver(ctx, out, s) }
	for _, g := range groups {
		items := make([]staged, len(g.Months))
		var todo []monthPlan
		for i, p := range g.Months {
			s := staged{mr: MonthResult{Month: p.Month, Rows: p.Rows}, plan: p, last: i == len(g.Months)-1}
			rec, ok := byMonth[p.Month]
			switch {
			case ok && (rec.State == StateDeleted || rec.State == StatePurged):
				s.mr.Problem = fmt.Sprintf("%d rows of %s are in audit_logs although the month was archived and deleted (written later?); they are not archived", p.Rows, p.Month)
			case !ok && p.Month.Before(tip.month):
				s.mr.Problem = fmt.Sprintf("%d rows of %s are older than the newest archive (%s); archiving them would break the chain", p.Rows, p.Month, tip.month)
			}
			s.rec = rec
			if s.mr.Problem == "" && !o.DryRun && !ok {
				todo = append(todo, p)
			}
			items[i] = s
		}
		// Months of the group between the first and the last to export
		// that are not exported: the read must leave them out.
		skipped := len(todo) > 0 && len(todo) < len(g.Months) &&
			slices.ContainsFunc(g.Months, func(p monthPlan) bool {
				return todo[0].Month.Before(p.Month) && p.Month.Before(todo[len(todo)-1].Month) && !slices.Contains(todo, p)
			})
		if err := ctx.Err(); err != nil {
			send(staged{err: err})
			return
		}
		var list []*monthSink
		if len(todo) > 0 {
			var err error
			if list, err = exportGroup(ctx, c, cols, todo, skipped); err != nil {
				send(staged{err: err})
				return
			}
		}
		if !o.storeGroup(ctx, cols, items, list, &tip, send) {
			return
		}
	}
}

// storeGroup compresses and stores the data of the exported months of
// list (ahead, two at a time in goroutines of their own: while a group is
// stored the server has nothing to do, so both cores may), then stores
// their manifests and records them in order, extending the chain from tip;
// it hands every item to send, in order. It reports whether to go on.
func (o RunOptions) storeGroup(ctx context.Context, cols []Column, items []staged, list []*monthSink, tip *link, send func(staged) bool) bool {
	c := o.Config
	ctx, stop := context.WithCancel(ctx)
	stored := make([]chan error, len(list))
	for i := range stored {
		stored[i] = make(chan error, 1)
	}
	jobs := make(chan int)
	go func() {
		defer close(jobs)
		for i := range list {
			select {
			case jobs <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	until := func(m Month) time.Time {
		if !o.ObjectLock {
			return time.Time{}
		}
		return m.End().AddDate(o.Retain.Years, o.Retain.Months, 0)
	}
	var workers sync.WaitGroup
	for range min(2, len(list)) {
		workers.Go(func() {
			for i := range jobs {
				stored[i] <- list[i].storeData(ctx, c, until(list[i].plan.Month))
			}
		})
	}
	defer func() {
		stop()
		workers.Wait()
		for _, s := range list {
			s.close()
		}
	}()
	next := 0
	for _, s := range items {
		if next < len(list) && list[next].plan.Month == s.plan.Month {
			sink := list[next]
			var err error
			select {
			case err = <-stored[next]:
			case <-ctx.Done():
				err = ctx.Err()
			}
			next++
			var e exported
			if err == nil {
				e, err = storeManifest(ctx, c, cols, sink, *tip, until(s.plan.Month))
			}
			if err == nil {
				s.rec, err = saveArchived(ctx, c, e)
			}
			sink.close()
			if err != nil {
				s.err = err
				send(s)
				return false
			}
			c.Logger.Info("archived month", "month", s.plan.Month.String(), "rows", s.rec.RowCount, "bytes", s.rec.CompressedBytes)
			*tip = link{s.rec.Month, s.rec.ManifestSHA256}
			s.mr.Uploaded = true
			s.manifestBytes = int64(len(e.manifestRaw))
		}
		if !send(s) {
			return false
		}
	}
	return true
}
