package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"

	"github.com/ip2a/ip2a-ops/pkg/exitcode"
	"github.com/ip2a/ip2a-ops/pkg/migrate"
)

// RiverOptions configure the durable service.
type RiverOptions struct {
	// Schema holds River's tables (default ip2a_ops), created by
	// migrate.Up.
	Schema string
	// Handlers, when set, let Start work tasks; without them the service
	// only enqueues and reads (like `tasks enqueue` and `tasks status`).
	Handlers Handlers
	// Queues maps each queue this worker works to how many of its tasks run
	// at once (default {"default": 4}). Only used with Handlers.
	Queues map[string]int
	// Backoff between failed attempts (default DefaultBackoff).
	Backoff Backoff
	// Timeout bounds one attempt: its context is cancelled then and the
	// attempt fails (default 1 hour).
	Timeout time.Duration
	// RescueAfter is how long a task may stay running before River takes it
	// for dead (its worker was killed) and runs it again (default Timeout
	// plus 10 minutes). It must be longer than Timeout.
	RescueAfter time.Duration
	// PollInterval is how often a worker looks for tasks when no
	// notification came (default 1 s): a task inserted by a client that
	// does not notify (riverqueue-python) waits up to this long.
	PollInterval time.Duration
	// FetchCooldown is the least time between two fetches of a queue
	// (default DefaultFetchCooldown). A task enqueued within it after the
	// last fetch waits for it to pass, so it bounds enqueue-to-start
	// latency; River's own default is 100 ms.
	FetchCooldown time.Duration
	// LeaderElectionDisabled keeps this client out of maintenance (rescue,
	// scheduling, cleanup): benchmarks only.
	LeaderElectionDisabled bool
	Logger                 *slog.Logger
}

// Defaults for RiverOptions.
const (
	DefaultTimeout       = time.Hour             // bounds one attempt of a task
	DefaultFetchCooldown = 20 * time.Millisecond // least time between two fetches
)

// River is the durable Service on River.
type River struct {
	client  *river.Client[pgx.Tx]
	schema  string
	working bool
}

var _ Service = (*River)(nil)

// NewRiver returns the River service over pool. River's tables must exist
// (migrate.Up creates them). With Handlers, call Start to work tasks.
func NewRiver(pool *pgxpool.Pool, opts RiverOptions) (*River, error) {
	if opts.Schema == "" {
		opts.Schema = migrate.DefaultSchema
	}
	if err := migrate.ValidateSchema(opts.Schema); err != nil {
		return nil, err
	}
	if err := opts.Handlers.Validate(); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Backoff == nil {
		opts.Backoff = DefaultBackoff
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.FetchCooldown <= 0 {
		opts.FetchCooldown = DefaultFetchCooldown
	}
	if opts.RescueAfter <= 0 {
		opts.RescueAfter = opts.Timeout + 10*time.Minute
	}
	if opts.RescueAfter <= opts.Timeout {
		return nil, exitcode.Usagef("--rescue-after longer than --task-timeout", "rescue-after %s must be longer than the task timeout %s", opts.RescueAfter, opts.Timeout)
	}
	cfg := &river.Config{
		Schema:              opts.Schema,
		Logger:              opts.Logger,
		SkipUnknownJobCheck: true, // kinds are checked by whoever knows them
		MaxAttempts:         DefaultMaxAttempts,
		RetryPolicy:         retryPolicy{opts.Backoff},
		// River's rescuer leaves a job without a timeout alone forever, so
		// every attempt has one.
		JobTimeout:                  opts.Timeout,
		RescueStuckJobsAfter:        opts.RescueAfter,
		FetchPollInterval:           opts.PollInterval,
		FetchCooldown:               opts.FetchCooldown,
		LeaderElectionDisabled:      opts.LeaderElectionDisabled,
		CompletedJobRetentionPeriod: 7 * 24 * time.Hour,
		CancelledJobRetentionPeriod: 7 * 24 * time.Hour,
		DiscardedJobRetentionPeriod: 30 * 24 * time.Hour,
	}
	if len(opts.Handlers) > 0 {
		cfg.Workers = river.NewWorkers()
		for kind, h := range opts.Handlers {
			if err := addWorker(cfg.Workers, kind, h); err != nil {
				return nil, err
			}
		}
		queues := opts.Queues
		if len(queues) == 0 {
			queues = map[string]int{DefaultQueue: 4}
		}
		cfg.Queues = map[string]river.QueueConfig{}
		for q, n := range queues {
			if !kindRE.MatchString(q) || n < 1 {
				return nil, fmt.Errorf("queue %q with %d workers: need a lower-case name and at least one worker", q, n)
			}
			cfg.Queues[q] = river.QueueConfig{MaxWorkers: n}
		}
	}
	client, err := river.NewClient(riverpgxv5.New(pool), cfg)
	if err != nil {
		return nil, fmt.Errorf("river client: %w", err)
	}
	return &River{client: client, schema: opts.Schema, working: len(opts.Handlers) > 0}, nil
}

// Start begins working tasks (only with Handlers). It returns once River
// runs; River keeps reconnecting on its own when the database goes away.
func (r *River) Start(ctx context.Context) error {
	if !r.working {
		return errors.New("river task service has no handlers to work with")
	}
	if err := r.client.Start(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("start river: %w", err)
	}
	return nil
}

// Stop stops fetching tasks and lets running ones finish until ctx is done;
// then it cancels them. A handler that returns because of that gives its
// task back (available again, the attempt not counted) for another worker;
// one that does not return within grace stays "running" until River's
// rescuer takes it (RescueAfter).
func (r *River) Stop(ctx context.Context, grace time.Duration) error {
	err := r.client.Stop(ctx)
	if err == nil || ctx.Err() == nil {
		return err
	}
	hard, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
	defer cancel()
	if err := r.client.StopAndCancel(hard); err != nil {
		return fmt.Errorf("stop river: running tasks did not return within %s after cancellation: %w", grace, err)
	}
	return nil
}

// rawArgs carries any kind's JSON args through River unchanged.
type rawArgs struct {
	kind string
	raw  json.RawMessage
}

func (a rawArgs) Kind() string                  { return a.kind }
func (a rawArgs) MarshalJSON() ([]byte, error)  { return a.raw, nil }
func (a *rawArgs) UnmarshalJSON(b []byte) error { a.raw = append(a.raw[:0], b...); return nil }

// retryPolicy applies a Backoff to River's retries (and rescues).
type retryPolicy struct{ b Backoff }

func (p retryPolicy) NextRetry(j *rivertype.JobRow) time.Time {
	return time.Now().Add(p.b(j.Attempt))
}

type riverWorker struct {
	river.WorkerDefaults[rawArgs]
	h Handler
}

func addWorker(w *river.Workers, kind string, h Handler) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("register task kind %s: %v", kind, p)
		}
	}()
	river.AddWorkerArgs(w, rawArgs{kind: kind}, river.Worker[rawArgs](&riverWorker{h: h}))
	return nil
}

func (w *riverWorker) Work(ctx context.Context, job *river.Job[rawArgs]) error {
	t := Task{ID: ID(job.ID), Kind: job.Kind, Args: json.RawMessage(job.EncodedArgs), Attempt: job.Attempt, MaxAttempts: job.MaxAttempts,
		Metadata: ownMetadata(job.Metadata)}
	out, err := call(ctx, w.h, t)
	if len(out) > 0 {
		if rerr := river.RecordOutput(ctx, out); rerr != nil && err == nil {
			err = Permanent(fmt.Errorf("record output: %w", rerr))
		}
	}
	return riverError(ctx, err)
}

// riverError maps a handler's error onto River's outcomes.
func riverError(ctx context.Context, err error) error {
	var snooze *SnoozeError
	var perm *PermanentError
	var cancelled *CancelledError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &snooze):
		return river.JobSnooze(snooze.For)
	case errors.As(err, &cancelled):
		return river.JobCancel(cancelled.Err)
	case errors.As(err, &perm):
		// River discards only after max attempts; a cancellation carrying
		// the permanent prefix is what Status reads as failed.
		return river.JobCancel(perm)
	case ctx.Err() != nil && !errors.Is(err, ctx.Err()):
		// Let River see the cancellation (a stopping worker gives the task
		// back only when the error says the context was cancelled).
		return fmt.Errorf("%w (%w)", err, ctx.Err())
	}
	return err
}

// Enqueue implements Service.
func (r *River) Enqueue(ctx context.Context, kind string, args json.RawMessage, opts EnqueueOptions) (Enqueued, error) {
	return r.enqueue(ctx, nil, kind, args, opts)
}

// EnqueueTx is Enqueue inside tx: the task exists only if tx commits (a
// daemon's slot claim and its task go together).
func (r *River) EnqueueTx(ctx context.Context, tx pgx.Tx, kind string, args json.RawMessage, opts EnqueueOptions) (Enqueued, error) {
	return r.enqueue(ctx, tx, kind, args, opts)
}

func (r *River) enqueue(ctx context.Context, tx pgx.Tx, kind string, args json.RawMessage, opts EnqueueOptions) (Enqueued, error) {
	args, err := normalize(kind, args, &opts)
	if err != nil {
		return Enqueued{}, err
	}
	io := &river.InsertOpts{MaxAttempts: opts.MaxAttempts, Priority: opts.Priority, Queue: opts.Queue, ScheduledAt: opts.ScheduledAt}
	if len(opts.Metadata) > 0 {
		b, err := json.Marshal(map[string]any{metadataKey: opts.Metadata})
		if err != nil {
			return Enqueued{}, fmt.Errorf("enqueue %s: metadata: %w", kind, err)
		}
		io.Metadata = b
	}
	if opts.UniqueFor > 0 {
		io.UniqueOpts = river.UniqueOpts{ByArgs: true, ByPeriod: opts.UniqueFor}
	}
	var res *rivertype.JobInsertResult
	if tx != nil {
		res, err = r.client.InsertTx(ctx, tx, rawArgs{kind: kind, raw: args}, io)
	} else {
		res, err = r.client.Insert(ctx, rawArgs{kind: kind, raw: args}, io)
	}
	if err != nil {
		return Enqueued{}, fmt.Errorf("enqueue %s: %w", kind, err)
	}
	return Enqueued{ID: ID(res.Job.ID), Duplicate: res.UniqueSkippedAsDuplicate}, nil
}

// metadataKey holds EnqueueOptions.Metadata inside River's metadata, apart
// from River's own keys (output, snoozes, ...).
const metadataKey = "ip2a_ops"

// ownMetadata is EnqueueOptions.Metadata read back from River's metadata
// (nil when there is none or it is not ours).
func ownMetadata(raw []byte) map[string]string {
	var m struct {
		Own map[string]string `json:"ip2a_ops"`
	}
	if len(raw) == 0 || json.Unmarshal(raw, &m) != nil || len(m.Own) == 0 {
		return nil
	}
	return m.Own
}

// Schedule implements Service.
func (r *River) Schedule(ctx context.Context, kind string, runAt time.Time, args json.RawMessage, opts EnqueueOptions) (Enqueued, error) {
	opts.ScheduledAt = runAt
	return r.Enqueue(ctx, kind, args, opts)
}

// Status implements Service.
func (r *River) Status(ctx context.Context, id ID) (Result, error) {
	row, err := r.client.JobGet(ctx, int64(id))
	return rowResult("task", id, row, err)
}

// Cancel implements Service.
func (r *River) Cancel(ctx context.Context, id ID) (Result, error) {
	row, err := r.client.JobCancel(ctx, int64(id))
	return rowResult("cancel task", id, row, err)
}

// Retry implements Service.
func (r *River) Retry(ctx context.Context, id ID) (Result, error) {
	row, err := r.client.JobRetry(ctx, int64(id))
	return rowResult("retry task", id, row, err)
}

func rowResult(what string, id ID, row *rivertype.JobRow, err error) (Result, error) {
	if errors.Is(err, river.ErrNotFound) {
		return Result{}, fmt.Errorf("%s %d: %w", what, id, ErrNotFound)
	}
	if err != nil {
		return Result{}, fmt.Errorf("%s %d: %w", what, id, err)
	}
	return fromRow(row), nil
}

// The SQL forms of the states River's own filter cannot tell apart.
const (
	sqlPermanent = `(state = 'cancelled' AND errors IS NOT NULL AND errors[array_upper(errors, 1)]->>'error' LIKE 'JobCancelError: ` + permanentPrefix + `%')`
)

var stateSQL = map[State]string{
	StatePending:   `state IN ('available', 'pending')`,
	StateScheduled: `state = 'scheduled'`,
	StateRunning:   `state = 'running'`,
	StateRetrying:  `state = 'retryable'`,
	StateCompleted: `state = 'completed'`,
	StateFailed:    `(state = 'discarded' OR ` + sqlPermanent + `)`,
	StateCancelled: `(state = 'cancelled' AND NOT ` + sqlPermanent + `)`,
}

// List implements Service.
func (r *River) List(ctx context.Context, opts ListOptions) ([]Result, error) {
	limit, err := listLimit(opts)
	if err != nil {
		return nil, err
	}
	p := river.NewJobListParams().First(limit).OrderBy(river.JobListOrderByID, river.SortOrderDesc)
	if len(opts.Kinds) > 0 {
		p = p.Kinds(opts.Kinds...)
	}
	if len(opts.States) > 0 {
		var or []string
		for _, s := range opts.States {
			q, ok := stateSQL[s]
			if !ok {
				return nil, fmt.Errorf("list tasks: unknown state %q", s)
			}
			or = append(or, q)
		}
		p = p.Where("(" + strings.Join(or, " OR ") + ")")
	}
	res, err := r.client.JobList(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("list tasks: %w", err)
	}
	out := make([]Result, 0, len(res.Jobs))
	for _, row := range res.Jobs {
		out = append(out, fromRow(row))
	}
	return out, nil
}

// fromRow maps River's row onto a Result.
func fromRow(j *rivertype.JobRow) Result {
	r := Result{
		ID: ID(j.ID), Kind: j.Kind, Queue: j.Queue, Priority: j.Priority, Attempts: j.Attempt, MaxAttempts: j.MaxAttempts,
		Args: json.RawMessage(j.EncodedArgs), CreatedAt: j.CreatedAt, ScheduledAt: j.ScheduledAt,
		AttemptedAt: j.AttemptedAt, FinalizedAt: j.FinalizedAt, Backend: "river", BackendState: string(j.State),
		Durable: true, Errors: []AttemptError{}, Warnings: []string{}, Metadata: ownMetadata(j.Metadata),
	}
	if out := j.Output(); len(out) > 0 {
		r.Output = json.RawMessage(out)
	}
	for _, e := range j.Errors {
		r.Errors = append(r.Errors, AttemptError{Attempt: e.Attempt, At: e.At, Error: strings.TrimPrefix(e.Error, "JobCancelError: ")})
	}
	switch j.State {
	case rivertype.JobStateAvailable, rivertype.JobStatePending:
		r.State = StatePending
	case rivertype.JobStateScheduled:
		r.State = StateScheduled
	case rivertype.JobStateRunning:
		r.State = StateRunning
	case rivertype.JobStateRetryable:
		r.State = StateRetrying
	case rivertype.JobStateCompleted:
		r.State = StateCompleted
	case rivertype.JobStateDiscarded:
		r.State = StateFailed
	case rivertype.JobStateCancelled:
		r.State = StateCancelled
		if strings.HasPrefix(r.LastError(), permanentPrefix) {
			r.State = StateFailed
		}
	default:
		r.State = State(j.State)
	}
	return r
}
