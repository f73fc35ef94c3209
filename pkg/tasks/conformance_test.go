package tasks_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/internal/pgtest"
	"github.com/ip2a/ip2a-ops/pkg/migrate"
	"github.com/ip2a/ip2a-ops/pkg/tasks"
)

// testBackoff keeps retries quick but measurable: 300 ms after the first
// failed attempt, 600 ms after the second, ...
func testBackoff(attempt int) time.Duration { return time.Duration(attempt) * 300 * time.Millisecond }

// backend starts one implementation with the given handlers for a test.
type backend struct {
	name  string
	start func(t *testing.T, h tasks.Handlers) tasks.Service
}

var backends = []backend{
	{"memory", func(t *testing.T, h tasks.Handlers) tasks.Service {
		m, err := tasks.NewMemory(tasks.MemoryOptions{Handlers: h, Concurrency: 4, Backoff: testBackoff})
		require.NoError(t, err)
		require.NoError(t, m.Start(t.Context()))
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			require.NoError(t, m.Stop(ctx))
		})
		return m
	}},
	{"river", func(t *testing.T, h tasks.Handlers) tasks.Service {
		pool := migratedPool(t)
		r, err := tasks.NewRiver(pool, tasks.RiverOptions{Handlers: h, Backoff: testBackoff, PollInterval: 200 * time.Millisecond})
		require.NoError(t, err)
		require.NoError(t, r.Start(t.Context()))
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			require.NoError(t, r.Stop(ctx, 5*time.Second))
		})
		return r
	}},
}

// migratedPool is a pool on a new database holding ip2a-ops's schema and
// River's tables.
func migratedPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	pool := pgtest.Pool(t, pgtest.NewDatabase(t))
	_, err := migrate.Up(t.Context(), pool, migrate.DefaultSchema)
	require.NoError(t, err)
	return pool
}

// forEach runs the test against every backend, in parallel.
func forEach(t *testing.T, f func(t *testing.T, b backend)) {
	t.Helper()
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f(t, b)
		})
	}
}

// waitFor polls the task until cond holds or a minute passes.
func waitFor(t *testing.T, s tasks.Service, id tasks.ID, what string, cond func(tasks.Result) bool) tasks.Result {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		r, err := s.Status(t.Context(), id)
		require.NoError(t, err)
		if cond(r) {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %d never %s; last status %+v", id, what, r)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitState(t *testing.T, s tasks.Service, id tasks.ID, want tasks.State) tasks.Result {
	t.Helper()
	return waitFor(t, s, id, string(want), func(r tasks.Result) bool { return r.State == want })
}

// runs counts handler calls per task.
type runs struct {
	mu sync.Mutex
	n  map[tasks.ID]int
}

func (r *runs) add(id tasks.ID) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n == nil {
		r.n = map[tasks.ID]int{}
	}
	r.n[id]++
	return r.n[id]
}

func (r *runs) get(id tasks.ID) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n[id]
}

func echo(ctx context.Context, t tasks.Task) (json.RawMessage, error) {
	return json.RawMessage(fmt.Sprintf(`{"got":%s,"attempt":%d}`, t.Args, t.Attempt)), nil
}

func TestConformanceEnqueueCompletes(t *testing.T) {
	forEach(t, func(t *testing.T, b backend) {
		s := b.start(t, tasks.Handlers{"echo": echo})
		before := time.Now()
		e, err := s.Enqueue(t.Context(), "echo", json.RawMessage(`{"n": 7}`), tasks.EnqueueOptions{})
		require.NoError(t, err)
		require.False(t, e.Duplicate)
		r := waitState(t, s, e.ID, tasks.StateCompleted)
		require.JSONEq(t, `{"got":{"n":7},"attempt":1}`, string(r.Output))
		require.JSONEq(t, `{"n":7}`, string(r.Args))
		require.Equal(t, "echo", r.Kind)
		require.Equal(t, tasks.DefaultQueue, r.Queue)
		require.Equal(t, 1, r.Attempts)
		require.Equal(t, tasks.DefaultMaxAttempts, r.MaxAttempts)
		require.Empty(t, r.Errors)
		require.NotNil(t, r.AttemptedAt)
		require.NotNil(t, r.FinalizedAt)
		require.False(t, r.CreatedAt.Before(before.Add(-time.Second)))
		require.False(t, r.FinalizedAt.Before(*r.AttemptedAt))
		require.Equal(t, b.name == "river", r.Durable)
		if !r.Durable {
			require.Contains(t, r.Warnings, tasks.InProcessWarning)
		}

		_, err = s.Status(t.Context(), e.ID+1000)
		require.ErrorIs(t, err, tasks.ErrNotFound)
	})
}

// TestConformanceMetadata: metadata reaches the handler and the status,
// survives the handler's output, and is not part of the unique key.
func TestConformanceMetadata(t *testing.T) {
	forEach(t, func(t *testing.T, b backend) {
		got := make(chan map[string]string, 1)
		s := b.start(t, tasks.Handlers{"meta": func(ctx context.Context, tk tasks.Task) (json.RawMessage, error) {
			got <- tk.Metadata
			return json.RawMessage(`{"ok":true}`), nil
		}})
		meta := map[string]string{"slot": "2026-03-08T02:00:00Z"}
		e, err := s.Enqueue(t.Context(), "meta", nil, tasks.EnqueueOptions{Metadata: meta, UniqueFor: time.Hour})
		require.NoError(t, err)
		r := waitState(t, s, e.ID, tasks.StateCompleted)
		require.Equal(t, meta, <-got)
		require.Equal(t, meta, r.Metadata)
		require.JSONEq(t, `{"ok":true}`, string(r.Output))
		again, err := s.Enqueue(t.Context(), "meta", nil, tasks.EnqueueOptions{Metadata: map[string]string{"slot": "other"}, UniqueFor: time.Hour})
		require.NoError(t, err)
		require.True(t, again.Duplicate)
		require.Equal(t, e.ID, again.ID)

		plain, err := s.Enqueue(t.Context(), "meta", json.RawMessage(`{"n":1}`), tasks.EnqueueOptions{})
		require.NoError(t, err)
		r = waitState(t, s, plain.ID, tasks.StateCompleted)
		require.Nil(t, <-got)
		require.Nil(t, r.Metadata)
	})
}

func TestConformanceBadInput(t *testing.T) {
	forEach(t, func(t *testing.T, b backend) {
		s := b.start(t, tasks.Handlers{"echo": echo})
		for _, tc := range []struct {
			name string
			kind string
			args string
			opts tasks.EnqueueOptions
		}{
			{"args not an object", "echo", `[1,2]`, tasks.EnqueueOptions{}},
			{"args not JSON", "echo", `{`, tasks.EnqueueOptions{}},
			{"bad kind", "Echo!", `{}`, tasks.EnqueueOptions{}},
			{"priority", "echo", `{}`, tasks.EnqueueOptions{Priority: 5}},
			{"max attempts", "echo", `{}`, tasks.EnqueueOptions{MaxAttempts: -1}},
			{"unique-for too short", "echo", `{}`, tasks.EnqueueOptions{UniqueFor: time.Millisecond}},
		} {
			_, err := s.Enqueue(t.Context(), tc.kind, json.RawMessage(tc.args), tc.opts)
			require.Error(t, err, tc.name)
		}
	})
}

func TestConformanceScheduleRunsLater(t *testing.T) {
	forEach(t, func(t *testing.T, b backend) {
		s := b.start(t, tasks.Handlers{"echo": echo})
		runAt := time.Now().Add(2 * time.Second).Truncate(time.Millisecond)
		e, err := s.Schedule(t.Context(), "echo", runAt, nil, tasks.EnqueueOptions{})
		require.NoError(t, err)
		r, err := s.Status(t.Context(), e.ID)
		require.NoError(t, err)
		require.Equal(t, tasks.StateScheduled, r.State)
		require.WithinDuration(t, runAt, r.ScheduledAt, time.Millisecond)
		r = waitState(t, s, e.ID, tasks.StateCompleted)
		require.False(t, r.AttemptedAt.Before(runAt), "ran at %s, before %s", r.AttemptedAt, runAt)
	})
}

func TestConformanceRetriesThenFails(t *testing.T) {
	forEach(t, func(t *testing.T, b backend) {
		var n runs
		s := b.start(t, tasks.Handlers{"flaky": func(ctx context.Context, tk tasks.Task) (json.RawMessage, error) {
			n.add(tk.ID)
			return nil, fmt.Errorf("boom on attempt %d of %d", tk.Attempt, tk.MaxAttempts)
		}})
		e, err := s.Enqueue(t.Context(), "flaky", nil, tasks.EnqueueOptions{MaxAttempts: 3})
		require.NoError(t, err)
		r := waitState(t, s, e.ID, tasks.StateFailed)
		require.Equal(t, 3, r.Attempts)
		require.Equal(t, 3, n.get(e.ID))
		require.Len(t, r.Errors, 3)
		for i, ae := range r.Errors {
			require.Equal(t, i+1, ae.Attempt)
			require.Equal(t, fmt.Sprintf("boom on attempt %d of 3", i+1), ae.Error)
			if i > 0 {
				gap := ae.At.Sub(r.Errors[i-1].At)
				require.GreaterOrEqual(t, gap, testBackoff(i), "attempt %d started %s after attempt %d: no backoff", i+1, gap, i)
			}
		}
		require.NotNil(t, r.FinalizedAt)

		// Retry gives a failed task one more attempt.
		r, err = s.Retry(t.Context(), e.ID)
		require.NoError(t, err)
		require.Equal(t, 4, r.MaxAttempts)
		r = waitFor(t, s, e.ID, "failed after a 4th attempt", func(r tasks.Result) bool { return r.State == tasks.StateFailed && r.Attempts == 4 })
		require.Len(t, r.Errors, 4)
		require.Equal(t, 4, n.get(e.ID))
	})
}

func TestConformancePermanentFailsAtOnce(t *testing.T) {
	forEach(t, func(t *testing.T, b backend) {
		var n runs
		s := b.start(t, tasks.Handlers{"strict": func(ctx context.Context, tk tasks.Task) (json.RawMessage, error) {
			n.add(tk.ID)
			var args struct {
				Days int `json:"days"`
			}
			if err := json.Unmarshal(tk.Args, &args); err != nil {
				return nil, tasks.Permanent(fmt.Errorf("args do not parse: %w", err))
			}
			return nil, nil
		}})
		e, err := s.Enqueue(t.Context(), "strict", json.RawMessage(`{"days": "many"}`), tasks.EnqueueOptions{MaxAttempts: 5})
		require.NoError(t, err)
		r := waitState(t, s, e.ID, tasks.StateFailed)
		require.Equal(t, 1, r.Attempts)
		require.Len(t, r.Errors, 1)
		require.Contains(t, r.Errors[0].Error, "permanent: args do not parse: json: cannot unmarshal")
		require.NotNil(t, r.FinalizedAt)
		require.Equal(t, 1, n.get(e.ID))

		failed, err := s.List(t.Context(), tasks.ListOptions{States: []tasks.State{tasks.StateFailed}})
		require.NoError(t, err)
		require.Equal(t, []tasks.ID{e.ID}, ids(failed))
		cancelled, err := s.List(t.Context(), tasks.ListOptions{States: []tasks.State{tasks.StateCancelled}})
		require.NoError(t, err)
		require.Empty(t, cancelled)
	})
}

func TestConformanceCancel(t *testing.T) {
	forEach(t, func(t *testing.T, b backend) {
		var n runs
		started := make(chan tasks.ID, 1)
		s := b.start(t, tasks.Handlers{
			"echo": func(ctx context.Context, tk tasks.Task) (json.RawMessage, error) { n.add(tk.ID); return nil, nil },
			"block": func(ctx context.Context, tk tasks.Task) (json.RawMessage, error) {
				started <- tk.ID
				<-ctx.Done()
				return nil, ctx.Err()
			},
		})
		// A scheduled task, cancelled before its time, never runs.
		e, err := s.Schedule(t.Context(), "echo", time.Now().Add(time.Hour), nil, tasks.EnqueueOptions{})
		require.NoError(t, err)
		r, err := s.Cancel(t.Context(), e.ID)
		require.NoError(t, err)
		require.Equal(t, tasks.StateCancelled, r.State)
		require.NotNil(t, r.FinalizedAt)
		require.Equal(t, 0, r.Attempts)
		require.Equal(t, 0, n.get(e.ID))

		// Cancelling it again changes nothing.
		r, err = s.Cancel(t.Context(), e.ID)
		require.NoError(t, err)
		require.Equal(t, tasks.StateCancelled, r.State)

		// A running task has its context cancelled and ends cancelled.
		e2, err := s.Enqueue(t.Context(), "block", nil, tasks.EnqueueOptions{})
		require.NoError(t, err)
		require.Equal(t, e2.ID, <-started)
		_, err = s.Cancel(t.Context(), e2.ID)
		require.NoError(t, err)
		r = waitState(t, s, e2.ID, tasks.StateCancelled)
		require.Equal(t, 1, r.Attempts)

		_, err = s.Cancel(t.Context(), e2.ID+1000)
		require.ErrorIs(t, err, tasks.ErrNotFound)
	})
}

func TestConformanceUniqueFor(t *testing.T) {
	forEach(t, func(t *testing.T, b backend) {
		s := b.start(t, tasks.Handlers{"echo": echo})
		at := time.Now().Add(time.Hour)
		opts := tasks.EnqueueOptions{UniqueFor: 24 * time.Hour}
		first, err := s.Schedule(t.Context(), "echo", at, json.RawMessage(`{"a":1,"b":2}`), opts)
		require.NoError(t, err)
		require.False(t, first.Duplicate)
		// Same kind and args (keys in another order), same period: the same task.
		again, err := s.Schedule(t.Context(), "echo", at, json.RawMessage(`{"b":2, "a":1}`), opts)
		require.NoError(t, err)
		require.Equal(t, tasks.Enqueued{ID: first.ID, Duplicate: true}, again)
		// Other args: another task.
		other, err := s.Schedule(t.Context(), "echo", at, json.RawMessage(`{"a":2,"b":2}`), opts)
		require.NoError(t, err)
		require.False(t, other.Duplicate)
		require.NotEqual(t, first.ID, other.ID)
		// Without UniqueFor nothing is deduplicated.
		plain, err := s.Schedule(t.Context(), "echo", at, json.RawMessage(`{"a":1,"b":2}`), tasks.EnqueueOptions{})
		require.NoError(t, err)
		require.False(t, plain.Duplicate)
		// A cancelled task no longer holds its key.
		_, err = s.Cancel(t.Context(), first.ID)
		require.NoError(t, err)
		fresh, err := s.Schedule(t.Context(), "echo", at, json.RawMessage(`{"a":1,"b":2}`), opts)
		require.NoError(t, err)
		require.False(t, fresh.Duplicate)
		require.NotEqual(t, first.ID, fresh.ID)
	})
}

func TestConformanceListAndSnooze(t *testing.T) {
	forEach(t, func(t *testing.T, b backend) {
		var n runs
		s := b.start(t, tasks.Handlers{
			"echo": echo,
			"snoozy": func(ctx context.Context, tk tasks.Task) (json.RawMessage, error) {
				if n.add(tk.ID) == 1 {
					return nil, tasks.Snooze(200 * time.Millisecond)
				}
				return json.RawMessage(`{"ok":true}`), nil
			},
		})
		later, err := s.Schedule(t.Context(), "echo", time.Now().Add(time.Hour), nil, tasks.EnqueueOptions{})
		require.NoError(t, err)
		done, err := s.Enqueue(t.Context(), "echo", nil, tasks.EnqueueOptions{Priority: 2, Queue: "default"})
		require.NoError(t, err)
		snoozed, err := s.Enqueue(t.Context(), "snoozy", nil, tasks.EnqueueOptions{})
		require.NoError(t, err)
		waitState(t, s, done.ID, tasks.StateCompleted)
		r := waitState(t, s, snoozed.ID, tasks.StateCompleted)
		require.Equal(t, 2, n.get(snoozed.ID))
		require.Equal(t, 1, r.Attempts, "a snooze does not use an attempt")
		require.Empty(t, r.Errors)

		all, err := s.List(t.Context(), tasks.ListOptions{})
		require.NoError(t, err)
		require.Equal(t, []tasks.ID{snoozed.ID, done.ID, later.ID}, ids(all), "newest first")
		for _, tc := range []struct {
			name string
			opts tasks.ListOptions
			want []tasks.ID
		}{
			{"scheduled", tasks.ListOptions{States: []tasks.State{tasks.StateScheduled}}, []tasks.ID{later.ID}},
			{"completed", tasks.ListOptions{States: []tasks.State{tasks.StateCompleted}}, []tasks.ID{snoozed.ID, done.ID}},
			{"two states", tasks.ListOptions{States: []tasks.State{tasks.StateCompleted, tasks.StateScheduled}}, []tasks.ID{snoozed.ID, done.ID, later.ID}},
			{"kind", tasks.ListOptions{Kinds: []string{"echo"}}, []tasks.ID{done.ID, later.ID}},
			{"kind and state", tasks.ListOptions{Kinds: []string{"echo"}, States: []tasks.State{tasks.StateCompleted}}, []tasks.ID{done.ID}},
			{"limit", tasks.ListOptions{Limit: 1}, []tasks.ID{snoozed.ID}},
			{"none", tasks.ListOptions{States: []tasks.State{tasks.StateRunning}}, []tasks.ID{}},
		} {
			got, err := s.List(t.Context(), tc.opts)
			require.NoError(t, err, tc.name)
			require.Equal(t, tc.want, ids(got), tc.name)
		}
		_, err = s.List(t.Context(), tasks.ListOptions{Limit: -1})
		require.Error(t, err)
	})
}

func ids(rs []tasks.Result) []tasks.ID {
	out := []tasks.ID{}
	for _, r := range rs {
		out = append(out, r.ID)
	}
	return out
}
