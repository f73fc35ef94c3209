// Package tasktest runs task handlers on a real River queue for tests: a
// database of the test's own with ip2a-ops's schema, workers started and
// stopped with the test, and polling helpers.
package tasktest

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ip2a/ip2a-ops/internal/pgtest"
	"github.com/ip2a/ip2a-ops/pkg/migrate"
	"github.com/ip2a/ip2a-ops/pkg/tasks"
)

// Database creates a database for the test with ip2a-ops's schema and
// River's tables, and returns its URL.
func Database(t testing.TB) string {
	t.Helper()
	url := pgtest.NewDatabase(t)
	pool := pgtest.Pool(t, url)
	if _, err := migrate.Up(t.Context(), pool, migrate.DefaultSchema); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return url
}

// QuickBackoff retries after 50 ms, 100 ms, 150 ms, ...: quick enough for
// tests, long enough that a retry is a separate attempt.
func QuickBackoff(attempt int) time.Duration { return time.Duration(attempt) * 50 * time.Millisecond }

// Worker starts a worker with its own pool on the database at url, working
// handlers with opts (Handlers, Backoff and PollInterval default to quick
// test values); it stops when the test ends. The returned service also
// enqueues and reads.
func Worker(t testing.TB, url string, handlers tasks.Handlers, opts tasks.RiverOptions) *tasks.River {
	t.Helper()
	pool := pgtest.Pool(t, url)
	opts.Handlers = handlers
	if opts.Backoff == nil {
		opts.Backoff = QuickBackoff
	}
	if opts.PollInterval == 0 {
		opts.PollInterval = 100 * time.Millisecond
	}
	r, err := tasks.NewRiver(pool, opts)
	if err != nil {
		t.Fatalf("river: %v", err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatalf("start worker: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := r.Stop(ctx, 5*time.Second); err != nil {
			t.Errorf("stop worker: %v", err)
		}
	})
	return r
}

// Client is a service that only enqueues and reads, on its own pool.
func Client(t testing.TB, url string) (*tasks.River, *pgxpool.Pool) {
	t.Helper()
	pool := pgtest.Pool(t, url)
	r, err := tasks.NewRiver(pool, tasks.RiverOptions{})
	if err != nil {
		t.Fatalf("river: %v", err)
	}
	return r, pool
}

// WaitFinal polls the task until it is completed, failed or cancelled, or
// fails the test after timeout.
func WaitFinal(t testing.TB, s tasks.Service, id tasks.ID, timeout time.Duration) tasks.Result {
	t.Helper()
	return WaitFor(t, s, id, timeout, "finished", func(r tasks.Result) bool { return r.State.Final() })
}

// WaitFor polls the task until cond holds, or fails the test after timeout.
func WaitFor(t testing.TB, s tasks.Service, id tasks.ID, timeout time.Duration, what string, cond func(tasks.Result) bool) tasks.Result {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		r, err := s.Status(context.Background(), id)
		if err != nil {
			t.Fatalf("status of task %d: %v", id, err)
		}
		if cond(r) {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %d not %s within %s; last status: state %s, attempts %d, errors %v", id, what, timeout, r.State, r.Attempts, r.Errors)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Enqueue queues a task of kind with args (JSON-encoded unless already
// json.RawMessage) and maxAttempts, and returns its id.
func Enqueue(t testing.TB, s tasks.Service, kind string, args any, maxAttempts int) tasks.ID {
	t.Helper()
	raw, ok := args.(json.RawMessage)
	if !ok {
		var err error
		if raw, err = json.Marshal(args); err != nil {
			t.Fatalf("encode args: %v", err)
		}
	}
	e, err := s.Enqueue(context.Background(), kind, raw, tasks.EnqueueOptions{MaxAttempts: maxAttempts})
	if err != nil {
		t.Fatalf("enqueue %s: %v", kind, err)
	}
	return e.ID
}

// Output decodes a task's recorded output.
func Output[T any](t testing.TB, r tasks.Result) T {
	t.Helper()
	var out T
	if err := json.Unmarshal(r.Output, &out); err != nil {
		t.Fatalf("task %d output %s: %v", r.ID, r.Output, err)
	}
	return out
}

// FailsAtOnce enqueues a task of kind with args and fails the test unless
// it fails on its first attempt (a permanent error) with an error
// containing want.
func FailsAtOnce(t testing.TB, s tasks.Service, kind, args, want string) {
	t.Helper()
	id := Enqueue(t, s, kind, json.RawMessage(args), tasks.DefaultMaxAttempts)
	r := WaitFinal(t, s, id, time.Minute)
	if r.State != tasks.StateFailed || r.Attempts != 1 || !strings.Contains(r.LastError(), want) {
		t.Fatalf("task %d with args %s: state %s after %d attempts, last error %q; want failed after 1 attempt with %q",
			id, args, r.State, r.Attempts, r.LastError(), want)
	}
}
