package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// InProcessWarning is carried by every in-process Result.
const InProcessWarning = "in-process task: kept only in this process's memory; it is lost if the process exits (use the River backend to keep tasks)"

// MemoryOptions configure an in-process service.
type MemoryOptions struct {
	Handlers Handlers
	// Concurrency bounds the tasks running at once (default 4).
	Concurrency int
	// Backoff between failed attempts (default DefaultBackoff).
	Backoff Backoff
	Logger  *slog.Logger
}

// Memory is the in-process Service: a bounded pool of goroutines and a map.
// It keeps nothing: a restart loses every task, whatever its state, so use
// it only where losing a task is acceptable (tests, a single short-lived
// process). Start it before tasks can run; Stop it to drain.
type Memory struct {
	opts MemoryOptions

	mu       sync.Mutex
	tasks    map[ID]*memTask
	nextID   ID
	running  int
	started  bool
	stopping bool
	wake     chan struct{}
	quit     chan struct{}
	loopDone chan struct{}
	workers  sync.WaitGroup
}

type memTask struct {
	res       Result
	uniqueKey string
	cancel    context.CancelCauseFunc // set while running
	cancelReq bool                    // Cancel was called while it ran
}

var _ Service = (*Memory)(nil)

// errStopping and errCancelRequested are the causes a running task's
// context is cancelled with.
var (
	errStopping        = errors.New("worker stopping")
	errCancelRequested = errors.New("task cancelled")
)

// NewMemory returns an in-process service; call Start to run tasks.
func NewMemory(opts MemoryOptions) (*Memory, error) {
	if err := opts.Handlers.Validate(); err != nil {
		return nil, err
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 4
	}
	if opts.Backoff == nil {
		opts.Backoff = DefaultBackoff
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Memory{opts: opts, tasks: map[ID]*memTask{}, wake: make(chan struct{}, 1), quit: make(chan struct{}), loopDone: make(chan struct{})}, nil
}

// Start begins running tasks. It returns at once.
func (m *Memory) Start(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.started {
		return errors.New("in-process task service already started")
	}
	m.started = true
	go m.loop()
	return nil
}

// Stop stops taking tasks, lets running ones finish until ctx is done, then
// cancels them and waits for their handlers to return. A task whose handler
// returned because of the stop goes back to pending (and is lost with the
// process).
func (m *Memory) Stop(ctx context.Context) error {
	m.mu.Lock()
	if !m.started || m.stopping {
		m.mu.Unlock()
		return nil
	}
	m.stopping = true
	close(m.quit)
	m.mu.Unlock()
	<-m.loopDone
	done := make(chan struct{})
	go func() { m.workers.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	m.mu.Lock()
	for _, t := range m.tasks {
		if t.cancel != nil {
			t.cancel(errStopping)
		}
	}
	m.mu.Unlock()
	<-done
	return nil
}

func (m *Memory) poke() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

func (m *Memory) loop() {
	defer close(m.loopDone)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		m.mu.Lock()
		now := time.Now()
		for m.running < m.opts.Concurrency {
			t := m.nextReady(now)
			if t == nil {
				break
			}
			m.startLocked(t, now)
		}
		wait := time.Hour
		for _, t := range m.tasks {
			if waiting(t.res.State) && t.res.ScheduledAt.After(now) {
				wait = min(wait, t.res.ScheduledAt.Sub(now))
			}
		}
		m.mu.Unlock()
		timer.Reset(wait)
		select {
		case <-m.quit:
			return
		case <-m.wake:
		case <-timer.C:
		}
	}
}

func waiting(s State) bool { return s == StatePending || s == StateScheduled || s == StateRetrying }

// nextReady picks the due task River would: lowest priority number, then
// earliest scheduled, then lowest ID.
func (m *Memory) nextReady(now time.Time) *memTask {
	var best *memTask
	for _, t := range m.tasks {
		r := &t.res
		if !waiting(r.State) || r.ScheduledAt.After(now) {
			continue
		}
		if best == nil || r.Priority < best.res.Priority ||
			(r.Priority == best.res.Priority && (r.ScheduledAt.Before(best.res.ScheduledAt) ||
				(r.ScheduledAt.Equal(best.res.ScheduledAt) && r.ID < best.res.ID))) {
			best = t
		}
	}
	return best
}

func (m *Memory) startLocked(t *memTask, now time.Time) {
	ctx, cancel := context.WithCancelCause(context.Background())
	t.cancel, t.cancelReq = cancel, false
	r := &t.res
	r.State, r.Attempts, r.AttemptedAt = StateRunning, r.Attempts+1, ptr(now)
	task := Task{ID: r.ID, Kind: r.Kind, Args: r.Args, Attempt: r.Attempts, MaxAttempts: r.MaxAttempts, Metadata: maps.Clone(r.Metadata)}
	m.running++
	m.workers.Add(1)
	go func() {
		defer m.workers.Done()
		out, err := call(ctx, m.opts.Handlers[task.Kind], task)
		m.finish(t, ctx, out, err)
		cancel(nil)
	}()
}

func (m *Memory) finish(t *memTask, ctx context.Context, out json.RawMessage, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	defer m.poke()
	m.running--
	t.cancel = nil
	r := &t.res
	now := time.Now()
	if len(out) > 0 {
		r.Output = out
	}
	var snooze *SnoozeError
	var perm *PermanentError
	var cancelled *CancelledError
	switch {
	case err == nil:
		r.State, r.FinalizedAt = StateCompleted, ptr(now)
	case errors.Is(context.Cause(ctx), errStopping) && errors.Is(err, context.Canceled):
		// Given back, as River does: the attempt does not count.
		r.State, r.Attempts = StatePending, r.Attempts-1
	case errors.As(err, &snooze):
		r.State, r.Attempts, r.ScheduledAt = StateScheduled, r.Attempts-1, now.Add(snooze.For)
	case t.cancelReq || errors.As(err, &cancelled):
		m.recordLocked(r, err, now)
		r.State, r.FinalizedAt = StateCancelled, ptr(now)
	case errors.As(err, &perm) || r.Attempts >= r.MaxAttempts:
		m.recordLocked(r, err, now)
		r.State, r.FinalizedAt = StateFailed, ptr(now)
	default:
		m.recordLocked(r, err, now)
		r.State, r.ScheduledAt = StateRetrying, now.Add(m.opts.Backoff(r.Attempts))
	}
	m.opts.Logger.Debug("task attempt done", "task_id", int64(r.ID), "kind", r.Kind, "state", string(r.State), "error", errString(err))
}

func (m *Memory) recordLocked(r *Result, err error, now time.Time) {
	at := now
	if r.AttemptedAt != nil {
		at = *r.AttemptedAt
	}
	r.Errors = append(r.Errors, AttemptError{Attempt: r.Attempts, At: at, Error: err.Error()})
}

// Enqueue implements Service. A kind without a handler is a usage error:
// nothing else could ever run it.
func (m *Memory) Enqueue(ctx context.Context, kind string, args json.RawMessage, opts EnqueueOptions) (Enqueued, error) {
	args, err := normalize(kind, args, &opts)
	if err != nil {
		return Enqueued{}, err
	}
	if _, ok := m.opts.Handlers[kind]; !ok {
		return Enqueued{}, fmt.Errorf("enqueue %s: no handler for this kind in this process: %w", kind, ErrUnknownKind)
	}
	now := time.Now()
	at := now
	if !opts.ScheduledAt.IsZero() {
		at = opts.ScheduledAt
	}
	key := ""
	if opts.UniqueFor > 0 {
		if key, err = uniqueKey(kind, args, at, opts.UniqueFor); err != nil {
			return Enqueued{}, err
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if key != "" {
		for _, t := range m.tasks {
			if t.uniqueKey == key && t.res.State != StateFailed && t.res.State != StateCancelled {
				return Enqueued{ID: t.res.ID, Duplicate: true}, nil
			}
		}
	}
	m.nextID++
	state := StatePending
	if at.After(now) {
		state = StateScheduled
	}
	m.tasks[m.nextID] = &memTask{uniqueKey: key, res: Result{
		ID: m.nextID, Kind: kind, Queue: opts.Queue, Priority: opts.Priority, State: state,
		MaxAttempts: opts.MaxAttempts, Args: args, CreatedAt: now, ScheduledAt: at,
		Backend: "in-process", Errors: []AttemptError{}, Warnings: []string{InProcessWarning}, Metadata: maps.Clone(opts.Metadata),
	}}
	m.poke()
	return Enqueued{ID: m.nextID}, nil
}

// ErrUnknownKind means no handler is registered for the kind.
var ErrUnknownKind = errors.New("unknown task kind")

// Schedule implements Service.
func (m *Memory) Schedule(ctx context.Context, kind string, runAt time.Time, args json.RawMessage, opts EnqueueOptions) (Enqueued, error) {
	opts.ScheduledAt = runAt
	return m.Enqueue(ctx, kind, args, opts)
}

// withTask runs change on the task under the lock and returns its status
// afterwards.
func (m *Memory) withTask(what string, id ID, change func(t *memTask)) (Result, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.tasks[id]
	if !ok {
		return Result{}, fmt.Errorf("%s %d: %w", what, id, ErrNotFound)
	}
	change(t)
	return snapshot(t.res), nil
}

// Status implements Service.
func (m *Memory) Status(ctx context.Context, id ID) (Result, error) {
	return m.withTask("task", id, func(*memTask) {})
}

// Cancel implements Service.
func (m *Memory) Cancel(ctx context.Context, id ID) (Result, error) {
	return m.withTask("cancel task", id, func(t *memTask) {
		switch r := &t.res; {
		case r.State == StateRunning:
			t.cancelReq = true
			t.cancel(errCancelRequested)
		case waiting(r.State):
			r.State, r.FinalizedAt = StateCancelled, ptr(time.Now())
		}
	})
}

// Retry implements Service.
func (m *Memory) Retry(ctx context.Context, id ID) (Result, error) {
	return m.withTask("retry task", id, func(t *memTask) {
		r := &t.res
		now := time.Now()
		if r.State == StateRunning || (r.State == StatePending && r.ScheduledAt.Before(now)) {
			return
		}
		if r.Attempts >= r.MaxAttempts {
			r.MaxAttempts++
		}
		r.State, r.ScheduledAt, r.FinalizedAt = StatePending, now, nil
		m.poke()
	})
}

// List implements Service.
func (m *Memory) List(ctx context.Context, opts ListOptions) ([]Result, error) {
	limit, err := listLimit(opts)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	out := []Result{}
	for _, t := range m.tasks {
		if (len(opts.States) == 0 || slices.Contains(opts.States, t.res.State)) &&
			(len(opts.Kinds) == 0 || slices.Contains(opts.Kinds, t.res.Kind)) {
			out = append(out, snapshot(t.res))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID > out[j].ID })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// snapshot copies r so callers cannot see later changes.
func snapshot(r Result) Result {
	r.BackendState = string(r.State)
	r.Errors = slices.Clone(r.Errors)
	r.Warnings = slices.Clone(r.Warnings)
	r.Metadata = maps.Clone(r.Metadata)
	return r
}

// uniqueKey is River's unique key for ByArgs+ByPeriod: kind, args with
// their top-level keys sorted, and the start of the period holding at.
func uniqueKey(kind string, args json.RawMessage, at time.Time, period time.Duration) (string, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(args, &obj); err != nil {
		return "", fmt.Errorf("unique key: %w", err)
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("&kind=" + kind + "&args={")
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		kb, _ := json.Marshal(k)
		b.Write(kb)
		b.WriteByte(':')
		b.Write(obj[k])
	}
	b.WriteString("}&period=" + at.Truncate(period).UTC().Format(time.RFC3339))
	return b.String(), nil
}

func ptr[T any](v T) *T { return &v }

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
