package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"
)

// Task is what a handler gets: one attempt at one task.
type Task struct {
	ID          ID
	Kind        string
	Args        json.RawMessage
	Attempt     int // 1 for the first attempt
	MaxAttempts int
	// Metadata is EnqueueOptions.Metadata (nil when none was given).
	Metadata map[string]string
}

// Handler runs one attempt of a task. Its output (JSON, or nil for none)
// is kept with the task whatever the outcome. Its error decides what
// happens next: see Permanent, Snooze and Cancelled; any other error is
// retried with backoff. A handler must return soon after ctx is done: that
// is how Cancel and a stopping worker reach it.
type Handler func(ctx context.Context, t Task) (output json.RawMessage, err error)

// Handlers maps a kind to its handler.
type Handlers map[string]Handler

// Validate checks every kind's name and that every handler is set.
func (h Handlers) Validate() error {
	for k, fn := range h {
		if err := ValidateKind(k); err != nil {
			return err
		}
		if fn == nil {
			return fmt.Errorf("task kind %s: nil handler", k)
		}
	}
	return nil
}

// Kinds lists the registered kinds, sorted.
func (h Handlers) Kinds() []string {
	out := make([]string, 0, len(h))
	for k := range h {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// PermanentError fails a task at once, without retries.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return permanentPrefix + e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// permanentPrefix starts the recorded message of a permanent failure. On
// River a permanent failure is a cancellation carrying this message: that is
// how Status tells it (failed) from a cancellation (cancelled).
const permanentPrefix = "permanent: "

// Permanent marks err as one no retry can fix: the task fails now.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

// SnoozeError runs the task again after For without using an attempt.
type SnoozeError struct{ For time.Duration }

func (e *SnoozeError) Error() string { return fmt.Sprintf("snoozed for %s", e.For) }

// Snooze asks for the task to run again after d (not counted as an attempt).
func Snooze(d time.Duration) error { return &SnoozeError{For: d} }

// CancelledError cancels the task: it will not run again.
type CancelledError struct{ Err error }

func (e *CancelledError) Error() string { return "cancelled: " + e.Err.Error() }
func (e *CancelledError) Unwrap() error { return e.Err }

// Cancelled cancels the task from inside its handler, recording err.
func Cancelled(err error) error {
	if err == nil {
		err = errors.New("cancelled by its handler")
	}
	return &CancelledError{Err: err}
}

// Backoff returns how long to wait before the next attempt after the given
// failed attempt (1 for the first).
type Backoff func(attempt int) time.Duration

// DefaultBackoff is River's: attempt^4 seconds (1 s, 16 s, 81 s, 256 s, ...),
// capped at a day.
func DefaultBackoff(attempt int) time.Duration {
	if attempt > 37 { // 38^4 s is more than a day already
		return 24 * time.Hour
	}
	a := time.Duration(attempt)
	return min(a*a*a*a*time.Second, 24*time.Hour)
}

// call runs h, turning a panic into an ordinary (retried) error and
// checking the output is JSON.
func call(ctx context.Context, h Handler, t Task) (out json.RawMessage, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("handler panicked: %v", p)
		}
	}()
	out, err = h(ctx, t)
	if len(out) > 0 && !json.Valid(out) {
		return nil, Permanent(fmt.Errorf("handler returned output that is not JSON: %s", truncate(string(out), 80)))
	}
	return out, err
}
