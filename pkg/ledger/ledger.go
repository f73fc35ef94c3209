// Package ledger records every run of every job in the ip2a_ops.runs table
// and enforces "at most one running run per job" across hosts with a partial
// unique index plus a heartbeat. Each call is a single statement, so it works
// behind a transaction-pooling proxy: nothing depends on a session that
// lives as long as the run.
package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ip2a/ip2a-ops/pkg/exitcode"
	"github.com/ip2a/ip2a-ops/pkg/progress"
)

// Run states.
const (
	Running     = "running"
	Succeeded   = "succeeded"
	Failed      = "failed"
	Skipped     = "skipped"
	Interrupted = "interrupted"
	Abandoned   = "abandoned"
)

// Run is one ledger row.
type Run struct {
	ID          int64           `json:"id"`
	Job         string          `json:"job"`
	Trigger     string          `json:"trigger"`
	Host        string          `json:"host"`
	PID         int             `json:"pid"`
	Args        []string        `json:"args"`
	StartedAt   time.Time       `json:"started_at"`
	HeartbeatAt time.Time       `json:"heartbeat_at"`
	FinishedAt  *time.Time      `json:"finished_at"`
	State       string          `json:"state"`
	ExitCode    *int            `json:"exit_code"`
	Error       string          `json:"error,omitempty"`
	Summary     json.RawMessage `json:"summary,omitempty"`
	Slot        *time.Time      `json:"slot,omitempty"`
	// Progress is the latest progress the run's heartbeat stored: live
	// while it runs, where it stopped once it has ended.
	Progress *progress.State `json:"progress,omitempty"`
	// TaskID is the queue task the run served (trigger queue), else nil.
	TaskID *int64 `json:"task_id,omitempty"`
}

// Duration is finished minus started, or heartbeat minus started while running.
func (r Run) Duration() time.Duration {
	if r.FinishedAt != nil {
		return r.FinishedAt.Sub(r.StartedAt)
	}
	return r.HeartbeatAt.Sub(r.StartedAt)
}

// Ledger reads and writes the runs table of one schema. It is safe for
// concurrent use; keep one per process (it learns the database's identity
// once).
type Ledger struct {
	pool  *pgxpool.Pool
	table string
	// w takes the writes: the pool, or the group of LazyCommit.
	w writer
	// st is shared with the LazyCommit ledgers made from this one.
	st *ledgerState
}

// ledgerState is what a ledger learns once, and what its LazyCommit
// ledgers share.
type ledgerState struct {
	idOnce sync.Once
	id     *string // this database's identity; nil when the server hides it

	mu    sync.Mutex
	swept bool // the copied rows of every job were expired (see Start)

	groupOnce sync.Once
	group     *group // the LazyCommit ledgers' writes, sent together
}

// writer is what the ledger's writes go through.
type writer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// New returns a ledger over schema's runs table (the schema must be migrated).
func New(pool *pgxpool.Pool, schema string) *Ledger {
	return &Ledger{pool: pool, table: pgx.Identifier{schema, "runs"}.Sanitize(), w: pool, st: &ledgerState{}}
}

// StartParams describe a run about to start.
type StartParams struct {
	Job, Trigger, Host string
	PID                int
	Args               []string
	// StaleAfter: a running row whose heartbeat is older than this is marked
	// abandoned and no longer blocks the job.
	StaleAfter time.Duration
	Slot       *time.Time
	// TaskID, when not 0, is the queue task the run serves.
	TaskID int64
}

// BusyError is returned (it wraps exitcode.ErrSkipped) when another run of
// the job is active; Skipped is the skipped row recorded for this attempt.
type BusyError struct {
	Holder  Run
	Skipped Run
}

func (e *BusyError) Error() string {
	return fmt.Sprintf("%s is already running (run %d on %s pid %d since %s)", e.Holder.Job, e.Holder.ID, e.Holder.Host, e.Holder.PID, e.Holder.StartedAt.UTC().Format(time.RFC3339))
}
func (e *BusyError) Unwrap() error { return exitcode.ErrSkipped }

const cols = "id, job, trigger, host, pid, args, started_at, heartbeat_at, finished_at, state, exit_code, coalesce(error, ''), summary, slot, progress::text, task_id"

func scan(row pgx.Row) (Run, error) {
	var r Run
	var args []byte
	var summary []byte
	var prog *string
	err := row.Scan(&r.ID, &r.Job, &r.Trigger, &r.Host, &r.PID, &args, &r.StartedAt, &r.HeartbeatAt, &r.FinishedAt, &r.State, &r.ExitCode, &r.Error, &summary, &r.Slot, &prog, &r.TaskID)
	if err != nil {
		return r, err
	}
	if prog != nil {
		var p progress.State
		if json.Unmarshal([]byte(*prog), &p) == nil {
			r.Progress = &p
		}
	}
	if len(args) > 0 {
		_ = json.Unmarshal(args, &r.Args)
	}
	if len(summary) > 0 {
		r.Summary = json.RawMessage(summary)
	}
	return r, nil
}

// databaseID returns this database's identity as the server sees it, the
// cluster's system identifier and the database's OID, whatever URL or
// proxy leads to it; a restored or copied database has another. It is nil
// (unknown: only the heartbeat tells a dead run) when the server does not
// let this role read pg_control_system().
func (l *Ledger) databaseID(ctx context.Context) *string {
	l.st.idOnce.Do(func() {
		var id string
		err := l.pool.QueryRow(ctx, `SELECT (SELECT system_identifier FROM pg_control_system())::text || '/' || oid::text
			FROM pg_database WHERE datname = current_database()`).Scan(&id)
		if err == nil {
			l.st.id = &id
		}
	})
	return l.st.id
}

// Start claims the job by inserting a running row. When another run holds
// the job, it marks that row abandoned if its heartbeat is stale, and
// every running row (of any job) that was started on another database,
// i.e. copied here by a restore, and tries again; the first Start of a
// Ledger does that sweep of copied rows before its insert. When another
// live run holds the job it records a skipped row and returns a
// *BusyError.
func (l *Ledger) Start(ctx context.Context, p StartParams) (Run, error) {
	if p.StaleAfter <= 0 {
		p.StaleAfter = 2 * time.Minute
	}
	if p.Args == nil {
		p.Args = []string{}
	}
	// JSON is bound as text with an explicit cast: raw bytes would go out
	// as bytea in the exec and simple_protocol modes a pooling proxy needs.
	argsJSON, _ := json.Marshal(p.Args)
	args := string(argsJSON)
	dbID := l.databaseID(ctx)
	var taskID *int64
	if p.TaskID != 0 {
		taskID = &p.TaskID
	}
	if err := l.sweepCopied(ctx, p, dbID); err != nil {
		return Run{}, err
	}
	// The insert comes first: most starts find the job free, and then one
	// statement is all a start costs (a worker runs many short tasks).
	for attempt := 0; attempt < 3; attempt++ {
		if err := ctx.Err(); err != nil {
			return Run{}, err
		}
		// Only what the server chose comes back; the rest is p.
		r := Run{Job: p.Job, Trigger: p.Trigger, Host: p.Host, PID: p.PID, Args: p.Args, State: Running, TaskID: taskID}
		// The claim is not cut short by the caller's cancellation (SIGINT):
		// an INSERT interrupted in flight may still commit, and then a
		// running row would be left that no one finishes. It is bounded by
		// claimTimeout instead; the caller sees its cancellation right
		// after, with the run recorded, and ends it interrupted.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), claimTimeout)
		err := l.w.QueryRow(cctx, `INSERT INTO `+l.table+` (job, trigger, host, pid, args, state, slot, database_id, task_id)
			VALUES ($1, $2, $3, $4, $5::jsonb, 'running', $6, $7, $8)
			ON CONFLICT (job) WHERE state = 'running' DO NOTHING RETURNING id, started_at, heartbeat_at, slot`,
			p.Job, p.Trigger, p.Host, p.PID, args, p.Slot, dbID, taskID).Scan(&r.ID, &r.StartedAt, &r.HeartbeatAt, &r.Slot)
		cancel()
		if err == nil {
			return r, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return Run{}, fmt.Errorf("ledger: start run: %w", err)
		}
		// Busy: free the job of a holder that died or was copied here, and
		// try again.
		expired, err := l.expire(ctx, p, dbID)
		if err != nil {
			return Run{}, err
		}
		if expired > 0 {
			continue
		}
		holder, err := scan(l.pool.QueryRow(ctx, `SELECT `+cols+` FROM `+l.table+` WHERE job = $1 AND state = 'running'`, p.Job))
		if errors.Is(err, pgx.ErrNoRows) {
			continue // the holder finished meanwhile; try again
		}
		if err != nil {
			return Run{}, fmt.Errorf("ledger: read active run: %w", err)
		}
		busy := &BusyError{Holder: holder}
		skipped, err := scan(l.w.QueryRow(ctx, `INSERT INTO `+l.table+` (job, trigger, host, pid, args, state, finished_at, exit_code, error, slot, task_id)
			VALUES ($1, $2, $3, $4, $5::jsonb, 'skipped', now(), $6, $7, $8, $9) RETURNING `+cols,
			p.Job, p.Trigger, p.Host, p.PID, args, exitcode.Skipped, busy.Error(), p.Slot, taskID))
		if err != nil {
			return Run{}, fmt.Errorf("ledger: record skipped run: %w", err)
		}
		busy.Skipped = skipped
		return Run{}, busy
	}
	return Run{}, errors.New("ledger: could not claim the job after 3 attempts")
}

// expire marks abandoned the job's running row whose heartbeat is stale
// and every running row started on another database; it returns how many.
func (l *Ledger) expire(ctx context.Context, p StartParams, dbID *string) (int64, error) {
	tag, err := l.w.Exec(ctx, `UPDATE `+l.table+` SET state = 'abandoned', finished_at = now(),
		error = CASE WHEN database_id <> $3 THEN '`+abandonedCopied+`'
			ELSE 'abandoned: no heartbeat since ' || to_char(heartbeat_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') || ' (process died or lost the database)' END
		WHERE state = 'running' AND ((job = $1 AND heartbeat_at < now() - $2::interval) OR database_id <> $3)`, p.Job, p.StaleAfter.String(), dbID)
	if err != nil {
		return 0, fmt.Errorf("ledger: expire stale runs: %w", err)
	}
	return tag.RowsAffected(), nil
}

// sweepCopied expires the copied rows of every job (and the job's stale
// row) on the ledger's first Start, so that jobs status on a restored
// database is true after any run; later Starts of the same Ledger (a
// worker's many runs) look only when their job is busy.
func (l *Ledger) sweepCopied(ctx context.Context, p StartParams, dbID *string) error {
	l.st.mu.Lock()
	defer l.st.mu.Unlock()
	if l.st.swept {
		return nil
	}
	if _, err := l.expire(ctx, p, dbID); err != nil {
		return err
	}
	l.st.swept = true
	return nil
}

// abandonedCopied is the error of a running row found on a database other
// than the one it was started on.
const abandonedCopied = "abandoned: started on another database (a copy or restore of this one); it does not run here"

// AbandonRunning marks every running row abandoned, with "abandoned: " and
// reason as its error, and returns how many it marked. It is for a
// database just restored from a backup, whose running rows were copied
// from the source and run nowhere here. It needs only the runs table of
// migration 001, so it works on a ledger restored from an older version;
// a database without the table has nothing to mark (0, nil).
func (l *Ledger) AbandonRunning(ctx context.Context, reason string) (int64, error) {
	tag, err := l.pool.Exec(ctx, `UPDATE `+l.table+` SET state = 'abandoned', finished_at = now(), error = 'abandoned: ' || $1
		WHERE state = 'running'`, reason)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (pgErr.Code == "42P01" || pgErr.Code == "3F000") { // undefined_table, invalid_schema_name
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("ledger: abandon running runs: %w", err)
	}
	return tag.RowsAffected(), nil
}

// claimTimeout bounds a Start's claim, which the caller's cancellation
// does not cut short.
const claimTimeout = 10 * time.Second

// ErrLostClaim is returned by Heartbeat when the run's row is no longer
// running (another process marked it abandoned): the job must stop.
var ErrLostClaim = errors.New("run is no longer marked running in the ledger")

// Heartbeat refreshes the run's heartbeat, and stores summary and prog when
// non-nil, so a run that dies later still shows what it had done and
// `jobs status` shows how far along a running one is.
func (l *Ledger) Heartbeat(ctx context.Context, id int64, summary any, prog *progress.State) error {
	var sumText, progText *string
	for _, f := range []struct {
		v   any
		out **string
	}{{summary, &sumText}, {prog, &progText}} {
		if f.v == nil || f.v == (*progress.State)(nil) {
			continue
		}
		b, err := json.Marshal(f.v)
		if err != nil {
			return fmt.Errorf("ledger: encode heartbeat: %w", err)
		}
		t := string(b)
		*f.out = &t
	}
	// JSON is bound as text with an explicit cast, which every pgx query
	// exec mode (and a transaction-pooling proxy) sends the same way.
	tag, err := l.w.Exec(ctx, `UPDATE `+l.table+` SET heartbeat_at = now(),
		summary = coalesce($2::text::jsonb, summary), progress = coalesce($3::text::jsonb, progress)
		WHERE id = $1 AND state = 'running'`, id, sumText, progText)
	if err != nil {
		return fmt.Errorf("ledger: heartbeat: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrLostClaim
	}
	return nil
}

// Finish records the end of a run.
func (l *Ledger) Finish(ctx context.Context, id int64, state string, exitCode int, errText string, summary any) error {
	var sum *string // NULL keeps the summary a heartbeat stored
	if summary != nil {
		b, err := json.Marshal(summary)
		if err != nil {
			return fmt.Errorf("ledger: encode summary: %w", err)
		}
		s := string(b)
		sum = &s
	}
	var errArg any
	if errText != "" {
		errArg = errText
	}
	_, err := l.w.Exec(ctx, `UPDATE `+l.table+` SET state = $2, exit_code = $3, error = $4,
		summary = coalesce($5::jsonb, summary), finished_at = now(), heartbeat_at = now() WHERE id = $1`, id, state, exitCode, errArg, sum)
	if err != nil {
		return fmt.Errorf("ledger: finish run %d: %w", id, err)
	}
	return nil
}

// Get returns one run; a missing id wraps pgx.ErrNoRows.
func (l *Ledger) Get(ctx context.Context, id int64) (Run, error) {
	r, err := scan(l.pool.QueryRow(ctx, `SELECT `+cols+` FROM `+l.table+` WHERE id = $1`, id))
	if err != nil {
		return r, fmt.Errorf("ledger: run %d: %w", id, err)
	}
	return r, nil
}

// HistoryFilter selects runs for History. Zero values mean all jobs, 20 rows.
type HistoryFilter struct {
	Job   string
	State string
	Limit int
}

// History returns runs newest first.
func (l *Ledger) History(ctx context.Context, f HistoryFilter) ([]Run, error) {
	if f.Limit <= 0 {
		f.Limit = 20
	}
	rows, err := l.pool.Query(ctx, `SELECT `+cols+` FROM `+l.table+`
		WHERE ($1 = '' OR job = $1) AND ($2 = '' OR state = $2) ORDER BY started_at DESC, id DESC LIMIT $3`, f.Job, f.State, f.Limit)
	if err != nil {
		return nil, fmt.Errorf("ledger: history: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Run, error) { return scan(r) })
	if err != nil {
		return nil, fmt.Errorf("ledger: history: %w", err)
	}
	return out, nil
}

// JobStatus summarises one job for `jobs status`.
type JobStatus struct {
	Job         string     `json:"job"`
	LastRun     *Run       `json:"last_run"`
	LastSuccess *time.Time `json:"last_success"`
	Running     *Run       `json:"running"`
	Runs        int64      `json:"runs"`
	Failures    int64      `json:"failures"`
}

// Status returns one entry per job that has ever run, by job name.
func (l *Ledger) Status(ctx context.Context) ([]JobStatus, error) {
	rows, err := l.pool.Query(ctx, `SELECT job, count(*), count(*) FILTER (WHERE state IN ('failed', 'abandoned', 'interrupted')),
		max(finished_at) FILTER (WHERE state = 'succeeded'),
		(SELECT id FROM `+l.table+` r2 WHERE r2.job = r.job AND r2.state <> 'skipped' ORDER BY started_at DESC, id DESC LIMIT 1),
		(SELECT id FROM `+l.table+` r3 WHERE r3.job = r.job AND r3.state = 'running' LIMIT 1)
		FROM `+l.table+` r GROUP BY job ORDER BY job`)
	if err != nil {
		return nil, fmt.Errorf("ledger: status: %w", err)
	}
	type agg struct {
		st            JobStatus
		last, running *int64
	}
	var aggs []agg
	for rows.Next() {
		var a agg
		if err := rows.Scan(&a.st.Job, &a.st.Runs, &a.st.Failures, &a.st.LastSuccess, &a.last, &a.running); err != nil {
			rows.Close()
			return nil, fmt.Errorf("ledger: status: %w", err)
		}
		aggs = append(aggs, a)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("ledger: status: %w", err)
	}
	out := make([]JobStatus, 0, len(aggs))
	for _, a := range aggs {
		if a.last != nil {
			r, err := l.Get(ctx, *a.last)
			if err != nil {
				return nil, err
			}
			a.st.LastRun = &r
		}
		if a.running != nil {
			r, err := l.Get(ctx, *a.running)
			if err != nil {
				return nil, err
			}
			a.st.Running = &r
		}
		out = append(out, a.st)
	}
	return out, nil
}
