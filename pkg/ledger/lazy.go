package ledger

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// LazyCommit returns a ledger whose writes commit without waiting for
// their WAL to reach disk (synchronous_commit off, for each write's
// transaction only). Use it only where a synchronous commit on the same
// server always follows, which flushes the ledger's writes with it: a
// queue's worker, whose task completes in a synchronous commit after the
// run's end is recorded. A server crash before that loses the run's rows
// and the task's progress alike, and the queue runs the task again. A
// worker's short tasks otherwise wait for two disk flushes each.
func (l *Ledger) LazyCommit() *Ledger {
	return &Ledger{pool: l.pool, table: l.table, w: lazyCommit{l.pool}, st: l.st}
}

// lazyCommit sends each statement in one round trip after
// set_config('synchronous_commit', 'off', true): a batch is one implicit
// transaction, so the setting holds for that statement's commit only
// (never for the session: safe behind a transaction pooler).
type lazyCommit struct{ pool *pgxpool.Pool }

func (q lazyCommit) send(ctx context.Context, sql string, args []any) (pgx.BatchResults, error) {
	b := &pgx.Batch{}
	b.Queue("SELECT set_config('synchronous_commit', 'off', true)")
	b.Queue(sql, args...)
	br := q.pool.SendBatch(ctx, b)
	if _, err := br.Exec(); err != nil {
		br.Close()
		return nil, err
	}
	return br, nil
}

func (q lazyCommit) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	br, err := q.send(ctx, sql, args)
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	tag, err := br.Exec()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return tag, err
}

func (q lazyCommit) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	br, err := q.send(ctx, sql, args)
	return lazyRow{br, err}
}

// lazyRow is a lazyCommit statement's row: Scan reads it, then the
// batch's end (the commit).
type lazyRow struct {
	br  pgx.BatchResults
	err error
}

func (r lazyRow) Scan(dest ...any) error {
	if r.err != nil {
		return r.err
	}
	err := r.br.QueryRow().Scan(dest...)
	if cerr := r.br.Close(); err == nil {
		err = cerr
	}
	return err
}
