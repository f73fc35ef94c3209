// Package tasks is the TaskService: enqueue a task of some kind with JSON
// args, schedule it for later, read its status (state, attempts, errors,
// output, times), cancel it, retry it and list tasks. Callers see one
// interface, Service, with two implementations:
//
//   - Memory runs tasks in this process on a bounded pool. Nothing is
//     stored: every task, queued, scheduled or running, is lost when the
//     process exits. Every Result it returns says so (Durable false and a
//     warning).
//   - River keeps tasks as rows of River's tables (github.com/riverqueue/river)
//     in ip2a-ops's own schema. They survive restarts, several workers on
//     several hosts share them, a task whose worker died is rescued and run
//     again, and other languages (riverqueue-python) can insert them.
//
// Handlers run tasks: a Handler is a function of a Task returning JSON
// output. What it returns decides what happens next: nil completes the
// task; an ordinary error is retried with backoff until the task's max
// attempts, then the task is failed; Permanent(err) fails it at once with no
// retry (args that do not parse, a usage error); Snooze(d) runs it again
// after d without counting an attempt; Cancelled(err) cancels it.
//
// The package knows no particular job: kinds and handlers come from its
// caller.
package tasks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/ip2a/ip2a-ops/pkg/exitcode"
)

// ID identifies a task. River's IDs are its job IDs (river_job.id).
type ID int64

func (id ID) String() string { return strconv.FormatInt(int64(id), 10) }

// ParseID reads a task ID as printed by `tasks enqueue`.
func ParseID(s string) (ID, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, exitcode.Usagef("ip2a-ops tasks list   (IDs are positive integers)", "invalid task id %q", s)
	}
	return ID(n), nil
}

// State is a task's state, the same names for every implementation.
type State string

// The states. River's own state (Result.BackendState) maps onto them:
// available and pending -> pending, scheduled -> scheduled, running ->
// running, retryable -> retrying, completed -> completed, discarded ->
// failed, cancelled -> cancelled, or failed when a handler's Permanent error
// cancelled it.
const (
	StatePending   State = "pending"   // waiting for a free worker
	StateScheduled State = "scheduled" // waiting for its time
	StateRunning   State = "running"   // a worker runs it now
	StateRetrying  State = "retrying"  // an attempt failed; it runs again after its backoff
	StateCompleted State = "completed" // the handler succeeded
	StateFailed    State = "failed"    // out of attempts, or a permanent error
	StateCancelled State = "cancelled" // cancelled by a person or its handler
)

// States lists every state in lifecycle order.
var States = []State{StatePending, StateScheduled, StateRunning, StateRetrying, StateCompleted, StateFailed, StateCancelled}

// Final reports whether a task in state s will not run again unless retried.
func (s State) Final() bool {
	return s == StateCompleted || s == StateFailed || s == StateCancelled
}

// ParseState accepts a state name.
func ParseState(s string) (State, error) {
	for _, st := range States {
		if string(st) == s {
			return st, nil
		}
	}
	return "", exitcode.Usagef("--state pending|scheduled|running|retrying|completed|failed|cancelled", "unknown task state %q", s)
}

// Defaults for EnqueueOptions.
const (
	DefaultQueue       = "default"
	DefaultPriority    = 1
	DefaultMaxAttempts = 5
)

// EnqueueOptions say where and how a task runs. Zero values mean defaults.
type EnqueueOptions struct {
	// Queue names the queue (default "default"); a worker works the queues
	// it is started with.
	Queue string
	// Priority 1 (first, the default) to 4 (last).
	Priority int
	// MaxAttempts is how many times the task runs before it is failed
	// (default 5).
	MaxAttempts int
	// UniqueFor, when set (at least one second), makes the task unique by
	// kind and args within a period of this length: time is cut into
	// periods of UniqueFor (River's UniqueOpts.ByPeriod), and while a task
	// of the same kind and args from the same period is pending, scheduled,
	// running, retrying or completed, Enqueue returns that task instead
	// (Enqueued.Duplicate). The period is taken from the scheduled time.
	UniqueFor time.Duration
	// ScheduledAt delays the task until then (Schedule sets it).
	ScheduledAt time.Time
	// Metadata is a JSON object kept with the task beside its args and
	// handed to its handler (Task.Metadata): facts about this enqueueing
	// that are not the job's arguments, such as the daemon slot it fills.
	// It is not part of the unique key. Nil means none.
	Metadata map[string]string
}

// Enqueued is what Enqueue returns.
type Enqueued struct {
	ID ID `json:"id"`
	// Duplicate is true when UniqueFor found an existing task, whose ID
	// this is; nothing was enqueued.
	Duplicate bool `json:"duplicate"`
}

// AttemptError is one failed attempt.
type AttemptError struct {
	Attempt int       `json:"attempt"`
	At      time.Time `json:"at"`
	Error   string    `json:"error"`
}

// Result is a task's status.
type Result struct {
	ID          ID              `json:"id"`
	Kind        string          `json:"kind"`
	Queue       string          `json:"queue"`
	Priority    int             `json:"priority"`
	State       State           `json:"state"`
	Attempts    int             `json:"attempts"`
	MaxAttempts int             `json:"max_attempts"`
	Args        json.RawMessage `json:"args"`
	// Output is what the handler returned (null before it has).
	Output      json.RawMessage `json:"output"`
	Errors      []AttemptError  `json:"errors"`
	CreatedAt   time.Time       `json:"created_at"`
	ScheduledAt time.Time       `json:"scheduled_at"`
	AttemptedAt *time.Time      `json:"attempted_at"`
	FinalizedAt *time.Time      `json:"finalized_at"`
	// Backend is "river" or "in-process"; BackendState is its own name for
	// the state (River's river_job.state).
	Backend      string `json:"backend"`
	BackendState string `json:"backend_state"`
	// Durable is false for in-process tasks, which a restart loses.
	Durable  bool     `json:"durable"`
	Warnings []string `json:"warnings"`
	// Metadata is EnqueueOptions.Metadata (omitted when none).
	Metadata map[string]string `json:"metadata,omitempty"`
}

// LastError is the message of the latest failed attempt ("" when none).
func (r Result) LastError() string {
	if len(r.Errors) == 0 {
		return ""
	}
	return r.Errors[len(r.Errors)-1].Error
}

// ListOptions filter List. Zero values mean all.
type ListOptions struct {
	States []State
	Kinds  []string
	// Limit caps the number of tasks (default 100, at most 10000), newest
	// first.
	Limit int
}

// DefaultListLimit is ListOptions.Limit's default.
const DefaultListLimit = 100

// Service is the TaskService. Implementations: Memory and River.
type Service interface {
	// Enqueue adds a task to run as soon as a worker is free (or at
	// opts.ScheduledAt). args must be a JSON object; empty means {}.
	Enqueue(ctx context.Context, kind string, args json.RawMessage, opts EnqueueOptions) (Enqueued, error)
	// Schedule is Enqueue with opts.ScheduledAt = runAt.
	Schedule(ctx context.Context, kind string, runAt time.Time, args json.RawMessage, opts EnqueueOptions) (Enqueued, error)
	// Status returns ErrNotFound for an unknown ID.
	Status(ctx context.Context, id ID) (Result, error)
	// Cancel stops a task from running again. A pending, scheduled or
	// retrying task is cancelled at once; a running one has its context
	// cancelled and is cancelled when its handler returns an error (one
	// that returns nil completes). A finished task is left as it is. It
	// returns the task's status after the change.
	Cancel(ctx context.Context, id ID) (Result, error)
	// Retry makes a task that is not running run again now (a failed one
	// gets one more attempt if it had used them all). It returns the
	// task's status after the change.
	Retry(ctx context.Context, id ID) (Result, error)
	// List returns tasks newest first.
	List(ctx context.Context, opts ListOptions) ([]Result, error)
}

// ErrNotFound means no task has that ID (or it was cleaned up: River
// deletes finished tasks after its retention periods).
var ErrNotFound = errors.New("no such task")

var kindRE = regexp.MustCompile(`^[a-z][a-z0-9_.:\-]{0,126}$`)

// ValidateKind rejects kinds that are not lower-case names such as
// "noop" or "audit-archive.run".
func ValidateKind(kind string) error {
	if !kindRE.MatchString(kind) {
		return exitcode.Usagef("a kind is a lower-case name such as noop or audit-archive.run", "invalid task kind %q", kind)
	}
	return nil
}

// normalize checks and fills in an enqueue request; it returns the compact
// args.
func normalize(kind string, args json.RawMessage, opts *EnqueueOptions) (json.RawMessage, error) {
	if err := ValidateKind(kind); err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(args)) == 0 {
		args = json.RawMessage("{}")
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(args, &obj); err != nil || obj == nil {
		return nil, exitcode.Usagef(`--args '{"key": "value"}'`, "task args must be a JSON object: %s", truncate(string(args), 80))
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, args); err != nil {
		return nil, fmt.Errorf("compact args: %w", err)
	}
	if opts.Queue == "" {
		opts.Queue = DefaultQueue
	}
	if !kindRE.MatchString(opts.Queue) {
		return nil, exitcode.Usagef("a queue is a lower-case name such as default", "invalid queue name %q", opts.Queue)
	}
	if opts.Priority == 0 {
		opts.Priority = DefaultPriority
	}
	if opts.Priority < 1 || opts.Priority > 4 {
		return nil, exitcode.Usagef("--priority 1 (first) to 4 (last)", "priority %d out of range", opts.Priority)
	}
	if opts.MaxAttempts == 0 {
		opts.MaxAttempts = DefaultMaxAttempts
	}
	if opts.MaxAttempts < 1 || opts.MaxAttempts > 1000 {
		return nil, exitcode.Usagef("--max-attempts 1..1000", "max attempts %d out of range", opts.MaxAttempts)
	}
	if opts.UniqueFor != 0 && opts.UniqueFor < time.Second {
		return nil, exitcode.Usagef("--unique-for 1s or more", "unique-for %s is shorter than a second", opts.UniqueFor)
	}
	return buf.Bytes(), nil
}

func listLimit(opts ListOptions) (int, error) {
	switch {
	case opts.Limit == 0:
		return DefaultListLimit, nil
	case opts.Limit < 0 || opts.Limit > 10000:
		return 0, exitcode.Usagef("--limit 1..10000", "list limit %d out of range", opts.Limit)
	}
	return opts.Limit, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
