package ledger

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// LazyCommit returns a ledger for a queue's worker, whose many short runs
// would otherwise each wait for two round trips and two disk flushes:
//
//   - Its writes commit without waiting for their WAL to reach disk
//     (synchronous_commit off, for the write's own transaction only). Use
//     it only where a synchronous commit on the same server always
//     follows, which flushes the ledger's writes with it: the worker's
//     task completes in a synchronous commit after the run's end is
//     recorded. A server crash before that loses the run's rows and the
//     task's progress alike, and the queue runs the task again.
//   - The writes of concurrent runs (of every LazyCommit ledger made from
//     the same Ledger) go to the server together: while one group is on
//     its way, the writes that arrive wait, and then all go in one round
//     trip and one transaction. A write alone goes at once. When a group
//     fails (one bad write aborts its transaction, so none of it is
//     written), each of its writes is sent again on its own, so that a bad
//     write fails only itself.
func (l *Ledger) LazyCommit() *Ledger {
	l.st.groupOnce.Do(func() { l.st.group = &group{pool: l.pool} })
	return &Ledger{pool: l.pool, table: l.table, w: l.st.group, st: l.st}
}

// groupMax caps the writes sent in one round trip.
const groupMax = 256

// groupTimeout bounds one group's round trip; a write taken into a group
// waits for it even when its caller's context ends, so this also bounds
// how long such a caller waits.
const groupTimeout = 15 * time.Second

// group gathers concurrent writes and sends them in one batch. A flush
// runs in a goroutine of its own only while writes are pending.
type group struct {
	pool *pgxpool.Pool

	mu       sync.Mutex
	pending  []*groupReq
	flushing bool
}

// A groupReq's state: waiting in pending, taken into a flush, or given up
// by its caller before it was taken (then it is never sent).
const (
	reqQueued int32 = iota
	reqTaken
	reqCancelled
)

type groupReq struct {
	sql   string
	args  []any
	query bool  // QueryRow (scan into dest) rather than Exec
	dest  []any // Scan's destinations
	state atomic.Int32
	tag   pgconn.CommandTag
	err   error
	done  chan struct{}
}

func (g *group) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	r := &groupReq{sql: sql, args: args, done: make(chan struct{})}
	if err := g.do(ctx, r); err != nil {
		return pgconn.CommandTag{}, err
	}
	return r.tag, r.err
}

// QueryRow defers the statement to Scan, which sends it with the group and
// scans the row into dest.
func (g *group) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return groupRow{g: g, ctx: ctx, sql: sql, args: args}
}

type groupRow struct {
	g    *group
	ctx  context.Context
	sql  string
	args []any
}

func (r groupRow) Scan(dest ...any) error {
	req := &groupReq{sql: r.sql, args: r.args, query: true, dest: dest, done: make(chan struct{})}
	if err := r.g.do(r.ctx, req); err != nil {
		return err
	}
	return req.err
}

// do queues r, starts a flush when none is running, and waits for r's
// result. A caller whose context ends while r still waits takes it back;
// once r is on its way the caller waits for it (at most groupTimeout), so
// that nothing is written into dest after Scan has returned.
func (g *group) do(ctx context.Context, r *groupReq) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	g.mu.Lock()
	g.pending = append(g.pending, r)
	if !g.flushing {
		g.flushing = true
		go g.flushLoop()
	}
	g.mu.Unlock()
	select {
	case <-r.done:
		return nil
	case <-ctx.Done():
		if r.state.CompareAndSwap(reqQueued, reqCancelled) {
			return ctx.Err()
		}
		<-r.done
		return nil
	}
}

// flushLoop sends the pending writes, a group at a time, until none wait.
func (g *group) flushLoop() {
	for {
		g.mu.Lock()
		n := min(len(g.pending), groupMax)
		if n == 0 {
			g.flushing = false
			g.mu.Unlock()
			return
		}
		batch := g.pending[:n:n]
		g.pending = g.pending[n:]
		if len(g.pending) == 0 {
			g.pending = nil
		}
		g.mu.Unlock()
		g.flush(batch)
	}
}

func (g *group) flush(batch []*groupReq) {
	live := make([]*groupReq, 0, len(batch))
	for _, r := range batch {
		if r.state.CompareAndSwap(reqQueued, reqTaken) {
			live = append(live, r)
		}
	}
	if len(live) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), groupTimeout)
	defer cancel()
	if len(live) == 1 || g.send(ctx, live) != nil {
		// Alone, or the group's transaction rolled back: each on its own,
		// so a bad write fails only itself.
		for _, r := range live {
			r.tag, r.err = pgconn.CommandTag{}, nil
			if err := g.send(ctx, []*groupReq{r}); err != nil {
				r.err = err
			}
		}
	}
	for _, r := range live {
		close(r.done)
	}
}

// lazyCommitSQL makes the rest of a batch's implicit transaction commit
// without waiting for its WAL flush; it never outlives that transaction,
// so it is safe behind a transaction pooler.
const lazyCommitSQL = "SELECT set_config('synchronous_commit', 'off', true)"

// send sends reqs as one batch (one implicit transaction, one round trip)
// and returns nil when it committed. Each request keeps its own result; a
// statement's "no rows" is its result, not a failure. Any other error
// means the transaction (or the connection) is gone: as far as the caller
// knows, nothing of the batch was written.
func (g *group) send(ctx context.Context, reqs []*groupReq) error {
	b := &pgx.Batch{}
	b.Queue(lazyCommitSQL)
	for _, r := range reqs {
		b.Queue(r.sql, r.args...)
	}
	br := g.pool.SendBatch(ctx, b)
	_, err := br.Exec()
	for _, r := range reqs {
		if err != nil {
			break
		}
		if r.query {
			r.err = br.QueryRow().Scan(r.dest...)
			if !errors.Is(r.err, pgx.ErrNoRows) {
				err = r.err
			}
		} else {
			r.tag, err = br.Exec()
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return err
}
