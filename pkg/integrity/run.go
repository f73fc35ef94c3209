package integrity

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ip2a/ip2a-ops/pkg/progress"
)

// Run executes the selected checks against one consistent snapshot and,
// when asked, the repairs. A check that cannot apply to this schema is
// skipped with the reason; a check that fails (a timeout, a bad user query)
// has status error and the others go on. The error is for what stops the
// whole run: bad options, no connection, cancellation.
func Run(ctx context.Context, o Options) (Result, error) {
	if err := o.Validate(); err != nil {
		return Result{Checks: []CheckResult{}}, err
	}
	o = o.withDefaults()
	start := time.Now()
	res := Result{AsOf: o.Now, Checks: []CheckResult{}}
	all, err := allChecks(o.UserChecksDir)
	if err != nil {
		return res, err
	}
	infos := make([]CheckInfo, len(all))
	byID := map[string]*check{}
	for i, c := range all {
		infos[i] = c.info()
		byID[c.id] = c
	}
	sel, err := Select(infos, o.Only, o.Skip)
	if err != nil {
		return res, err
	}
	s, results, err := runChecks(ctx, o, sel, byID)
	res.Checks = results
	res.total()
	if err != nil {
		res.Seconds = time.Since(start).Seconds()
		return res, err
	}
	if o.Repair {
		runRepairs(ctx, o, s, byID, &res)
		if err := ctx.Err(); err != nil {
			return res, fmt.Errorf("integrity: %w", err)
		}
	}
	res.Seconds = time.Since(start).Seconds()
	return res, nil
}

// runChecks opens the snapshot (a REPEATABLE READ, READ ONLY transaction
// that exports it), inspects the schema inside it, and hands the checks to
// Workers transactions that import the same snapshot, so every check sees
// the same data whatever commits meanwhile.
func runChecks(ctx context.Context, o Options, sel []CheckInfo, byID map[string]*check) (*schemaInfo, []CheckResult, error) {
	results := make([]CheckResult, len(sel))
	conn, err := o.Pool.Acquire(ctx)
	if err != nil {
		return nil, results[:0], fmt.Errorf("integrity: connect: %w", err)
	}
	defer conn.Release()
	tx, err := beginSnapshot(ctx, conn, o, "")
	if err != nil {
		return nil, results[:0], err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	var snap string
	if err := tx.QueryRow(ctx, `SELECT pg_export_snapshot()`).Scan(&snap); err != nil {
		return nil, results[:0], fmt.Errorf("integrity: export snapshot: %w", err)
	}
	s, err := inspect(ctx, tx, o.Schema)
	if err != nil {
		return nil, results[:0], fmt.Errorf("integrity: %w", err)
	}
	q := &qctx{s: s, opts: o, prog: &checkProgress{t: o.Tracker}}
	var jobs []int
	for i, ci := range sel {
		c := byID[ci.ID]
		results[i] = CheckResult{CheckInfo: ci, SampleIDs: []string{}}
		why := c.skipReason(s)
		if why == "" && c.files && o.Files == nil {
			why = "no file store given (--files-dir or --files-url)"
		}
		if why != "" {
			results[i].Status, results[i].Reason = StatusSkipped, why
			continue
		}
		jobs = append(jobs, i)
	}
	q.prog.start(len(jobs))

	var mu sync.Mutex
	done := func(i int, r CheckResult) {
		mu.Lock()
		defer mu.Unlock()
		results[i] = r
		q.prog.checkDone()
		if o.Progress != nil {
			o.Progress(r)
		}
	}
	ch := make(chan int)
	go func() {
		defer close(ch)
		for _, i := range jobs {
			select {
			case ch <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	work := func(tx pgx.Tx) {
		for i := range ch {
			done(i, runOne(ctx, tx, q, byID[sel[i].ID], results[i]))
		}
	}
	workers := min(o.Workers, len(jobs), int(o.Pool.Config().MaxConns)-1)
	var wg sync.WaitGroup
	var setupErr error
	for w := 1; w < workers; w++ {
		wg.Go(func() {
			c, err := o.Pool.Acquire(ctx)
			if err != nil {
				mu.Lock()
				setupErr = err
				mu.Unlock()
				return
			}
			defer c.Release()
			wtx, err := beginSnapshot(ctx, c, o, snap)
			if err != nil {
				mu.Lock()
				setupErr = err
				mu.Unlock()
				return
			}
			defer func() { _ = wtx.Rollback(context.WithoutCancel(ctx)) }()
			work(wtx)
		})
	}
	// The exporting transaction works too: it must stay open until every
	// worker has imported the snapshot anyway.
	work(tx)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return s, results, fmt.Errorf("integrity: %w", err)
	}
	for i := range results {
		if results[i].Status == "" {
			results[i].Status, results[i].Reason = StatusError, fmt.Sprintf("not run: %v", setupErr)
		}
	}
	return s, results, nil
}

// beginSnapshot starts a read-only REPEATABLE READ transaction with the
// statement timeout, importing snapshot snap unless it is "".
func beginSnapshot(ctx context.Context, conn *pgxpool.Conn, o Options, snap string) (pgx.Tx, error) {
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("integrity: begin snapshot: %w", err)
	}
	if snap != "" {
		if _, err := tx.Exec(ctx, "SET TRANSACTION SNAPSHOT "+quoteLiteral(snap)); err != nil {
			_ = tx.Rollback(ctx)
			return nil, fmt.Errorf("integrity: import snapshot: %w", err)
		}
	}
	if _, err := tx.Exec(ctx, fmt.Sprintf("SET LOCAL statement_timeout = %d", o.StatementTimeout.Milliseconds())); err != nil {
		_ = tx.Rollback(ctx)
		return nil, fmt.Errorf("integrity: set statement_timeout: %w", err)
	}
	return tx, nil
}

// runOne runs one check inside a savepoint, so a failing check (a timeout)
// leaves the transaction usable for the next.
func runOne(ctx context.Context, tx pgx.Tx, q *qctx, c *check, in CheckResult) (r CheckResult) {
	r = in
	start := time.Now()
	defer func() { r.Seconds = time.Since(start).Seconds() }()
	sp, err := tx.Begin(ctx)
	if err != nil {
		r.Status, r.Reason = StatusError, err.Error()
		return r
	}
	if c.files {
		err = runFiles(ctx, sp, q, c, &r)
	} else {
		sql := `WITH f AS MATERIALIZED (SELECT * FROM (` + c.query(q) + `
			) AS f0(id)) SELECT (SELECT count(*) FROM f), ARRAY(SELECT f.id::text FROM f ORDER BY f.id LIMIT @sample)`
		err = sp.QueryRow(ctx, sql, args(q.opts)).Scan(&r.Count, &r.SampleIDs)
	}
	if err != nil {
		_ = sp.Rollback(ctx)
		r.Count, r.SampleIDs = 0, []string{}
		var pe *pgconn.PgError
		switch {
		case errors.As(err, &pe) && (pe.Code == "42P01" || pe.Code == "42703"):
			// A user check (or the schema) names what this database lacks.
			r.Status, r.Reason = StatusSkipped, pe.Message
		case errors.As(err, &pe) && pe.Code == "57014":
			r.Status, r.Reason = StatusError, fmt.Sprintf("timed out after %s (statement_timeout)", q.opts.StatementTimeout)
		default:
			r.Status, r.Reason = StatusError, err.Error()
		}
		return r
	}
	if err := sp.Commit(ctx); err != nil {
		r.Status, r.Reason = StatusError, err.Error()
		return r
	}
	r.Status = StatusOK
	if r.Count > 0 {
		r.Status = StatusFindings
	}
	return r
}

// checkProgress counts checks on the tracker, and gives it over to the
// files of the missing-files check while that one stats them (checks that
// finish meanwhile are counted, and shown again when it ends).
type checkProgress struct {
	t     *progress.Tracker
	mu    sync.Mutex
	total int
	done  int
	files bool
}

func (p *checkProgress) start(total int) {
	p.total = total
	p.t.Phase("checks", progress.Checks, int64(total))
}

func (p *checkProgress) checkDone() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done++
	if !p.files {
		p.t.Set(int64(p.done))
	}
}

func (p *checkProgress) startFiles(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.files = true
	p.t.Phase("files", progress.Files, int64(n))
}

func (p *checkProgress) fileDone() { p.t.Add(1) }

func (p *checkProgress) endFiles() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.files = false
	p.t.Phase("checks", progress.Checks, int64(p.total))
	p.t.Set(int64(p.done))
}
