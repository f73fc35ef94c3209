package jobs

import (
	"context"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/internal/pgtest"
	"github.com/ip2a/ip2a-ops/pkg/exitcode"
	"github.com/ip2a/ip2a-ops/pkg/fixture"
	"github.com/ip2a/ip2a-ops/pkg/ledger"
	"github.com/ip2a/ip2a-ops/pkg/migrate"
	"github.com/ip2a/ip2a-ops/pkg/runner"
	"github.com/ip2a/ip2a-ops/pkg/tasks"
)

// queueEnv is a migrated database with the IP2A schema (no rows), a job
// Env over it, and a River service working every registry kind through
// TaskHandlers.
func queueEnv(t *testing.T) (*pgxpool.Pool, *ledger.Ledger, *tasks.River) {
	t.Helper()
	pool := pgtest.Pool(t, pgtest.NewDatabase(t))
	require.NoError(t, fixture.LoadSchema(t.Context(), pool, fixture.Newer))
	_, err := migrate.Up(t.Context(), pool, migrate.DefaultSchema)
	require.NoError(t, err)
	l := ledger.New(pool, migrate.DefaultSchema)
	env := Env{Now: time.Now, Schema: migrate.DefaultSchema,
		DB: func(context.Context) (*pgxpool.Pool, error) { return pool, nil },
		Runner: func(context.Context) (*runner.Runner, error) {
			return &runner.Runner{Ledger: l, Host: "test", PID: os.Getpid(), HeartbeatEvery: 100 * time.Millisecond}, nil
		},
	}
	svc, err := tasks.NewRiver(pool, tasks.RiverOptions{Handlers: TaskHandlers(env, TaskOptions{SkipSnooze: 300 * time.Millisecond}),
		Backoff: func(int) time.Duration { return 200 * time.Millisecond }, PollInterval: 100 * time.Millisecond})
	require.NoError(t, err)
	require.NoError(t, svc.Start(t.Context()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, svc.Stop(ctx, 5*time.Second))
	})
	return pool, l, svc
}

func waitTask(t *testing.T, svc tasks.Service, id tasks.ID, want tasks.State) tasks.Result {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		r, err := svc.Status(t.Context(), id)
		require.NoError(t, err)
		if r.State == want {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %d never %s: %+v", id, want, r)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runsOfTask is the ledger's rows for a task, oldest first.
func runsOfTask(t *testing.T, l *ledger.Ledger, id tasks.ID) []ledger.Run {
	t.Helper()
	all, err := l.History(t.Context(), ledger.HistoryFilter{Limit: 1000})
	require.NoError(t, err)
	var out []ledger.Run
	for i := len(all) - 1; i >= 0; i-- {
		if r := all[i]; r.TaskID != nil && *r.TaskID == int64(id) {
			out = append(out, r)
		}
	}
	return out
}

// agree checks that the task's output and the ledger tell the same story:
// the output names the task's latest run, which carries the task id, the
// trigger queue and the same job, state and exit code.
func agree(t *testing.T, l *ledger.Ledger, r tasks.Result) TaskOutput {
	t.Helper()
	var out TaskOutput
	require.NoError(t, json.Unmarshal(r.Output, &out), "output %s", r.Output)
	runs := runsOfTask(t, l, r.ID)
	require.NotEmpty(t, runs)
	last := runs[len(runs)-1]
	require.Equal(t, last.ID, out.RunID)
	require.Equal(t, int64(r.ID), *last.TaskID)
	require.Equal(t, "queue", last.Trigger)
	require.Equal(t, last.Job, out.Job)
	require.Equal(t, last.State, out.State)
	require.Equal(t, *last.ExitCode, out.ExitCode)
	return out
}

func enqueueJob[A, R any](t *testing.T, svc tasks.Service, def *Def[A, R], args A, opts tasks.EnqueueOptions) tasks.ID {
	t.Helper()
	raw, err := def.Encode(args)
	require.NoError(t, err)
	e, err := svc.Enqueue(t.Context(), def.Name, raw, opts)
	require.NoError(t, err)
	return e.ID
}

// TestTaskOutcomes: each outcome of a queued run leads the queue the way
// TaskHandlers documents, and the task and the ledger agree on every run.
func TestTaskOutcomes(t *testing.T) {
	t.Parallel()
	pool, l, svc := queueEnv(t)

	t.Run("succeeded", func(t *testing.T) {
		id := enqueueJob(t, svc, Sleep, SleepArgs{For: time.Millisecond, JobName: "queued-ok"}, tasks.EnqueueOptions{})
		r := waitTask(t, svc, id, tasks.StateCompleted)
		out := agree(t, l, r)
		require.Equal(t, "succeeded", out.State)
		require.Equal(t, exitcode.OutcomeSucceeded, out.Outcome)
		require.Equal(t, 1, r.Attempts)
		require.Len(t, runsOfTask(t, l, id), 1)
	})

	t.Run("args that do not decode fail at once", func(t *testing.T) {
		e, err := svc.Enqueue(t.Context(), "sleep", json.RawMessage(`{"v":1,"for":1,"seconds":3}`), tasks.EnqueueOptions{})
		require.NoError(t, err)
		r := waitTask(t, svc, e.ID, tasks.StateFailed)
		require.Equal(t, 1, r.Attempts, "no retry")
		require.Contains(t, r.LastError(), `unknown field "seconds"`)
		var out TaskOutput
		require.NoError(t, json.Unmarshal(r.Output, &out))
		require.Equal(t, TaskOutput{State: "not_run", ExitCode: exitcode.Usage, Outcome: exitcode.OutcomeUsage, Error: out.Error}, out)
		require.Empty(t, runsOfTask(t, l, e.ID), "nothing recorded")

		e, err = svc.Enqueue(t.Context(), "sleep", json.RawMessage(`{"v":2,"for":1}`), tasks.EnqueueOptions{})
		require.NoError(t, err)
		r = waitTask(t, svc, e.ID, tasks.StateFailed)
		require.Contains(t, r.LastError(), "version 2, this binary reads version 1")
	})

	t.Run("a failed run is retried with backoff, then fails", func(t *testing.T) {
		// Past its maximum runtime the run is failed: a real failure, each
		// attempt a ledger row of its own.
		id := enqueueJob(t, svc, Sleep, SleepArgs{For: time.Hour, JobName: "queued-slow"},
			tasks.EnqueueOptions{MaxAttempts: 2, Metadata: map[string]string{TaskMetaMaxRuntime: "100ms"}})
		r := waitTask(t, svc, id, tasks.StateFailed)
		require.Equal(t, 2, r.Attempts)
		require.Len(t, r.Errors, 2)
		out := agree(t, l, r)
		require.Equal(t, "failed", out.State)
		runs := runsOfTask(t, l, id)
		require.Len(t, runs, 2)
		for i, run := range runs {
			require.Equal(t, "failed", run.State)
			require.Contains(t, run.Error, "exceeded its maximum runtime")
			require.Contains(t, r.Errors[i].Error, "exceeded its maximum runtime")
		}
	})

	t.Run("a busy job waits and tries again", func(t *testing.T) {
		holder, err := l.Start(t.Context(), ledger.StartParams{Job: "queued-busy", Trigger: "manual", Host: "elsewhere", PID: 1})
		require.NoError(t, err)
		id := enqueueJob(t, svc, Sleep, SleepArgs{For: time.Millisecond, JobName: "queued-busy"}, tasks.EnqueueOptions{MaxAttempts: 1})
		deadline := time.Now().Add(time.Minute)
		for len(runsOfTask(t, l, id)) < 2 {
			require.True(t, time.Now().Before(deadline), "the task never tried twice")
			time.Sleep(20 * time.Millisecond)
		}
		r, err := svc.Status(t.Context(), id)
		require.NoError(t, err)
		require.NotEqual(t, tasks.StateFailed, r.State, "a skip uses no attempt")
		require.NoError(t, l.Finish(t.Context(), holder.ID, ledger.Succeeded, 0, "", nil))
		r = waitTask(t, svc, id, tasks.StateCompleted)
		out := agree(t, l, r)
		require.Equal(t, "succeeded", out.State)
		runs := runsOfTask(t, l, id)
		for _, run := range runs[:len(runs)-1] {
			require.Equal(t, "skipped", run.State)
			require.Equal(t, exitcode.Skipped, *run.ExitCode)
		}
	})

	t.Run("findings complete the task and say so", func(t *testing.T) {
		_, err := pool.Exec(t.Context(), `INSERT INTO grants (id, name, grant_number, total_amount, start_date, end_date, is_active, created_at, updated_at, is_deleted)
			VALUES (900001, 'Bad', 'B-1', 100, '2026-01-01', '2025-01-01', false, now(), now(), false)`)
		require.NoError(t, err)
		id := enqueueJob(t, svc, IntegrityCheck, IntegrityArgs{Only: []string{"grant_end_before_start"}}, tasks.EnqueueOptions{})
		r := waitTask(t, svc, id, tasks.StateCompleted)
		out := agree(t, l, r)
		require.Equal(t, exitcode.OutcomeFindings, out.Outcome)
		require.Equal(t, exitcode.Problems, out.ExitCode)
		require.Equal(t, "succeeded", out.State)
		require.Contains(t, string(r.Output), `"grant_end_before_start"`)
	})

	t.Run("the slot comes from the metadata", func(t *testing.T) {
		slot := time.Date(2026, 3, 8, 2, 0, 0, 0, time.UTC)
		id := enqueueJob(t, svc, Sleep, SleepArgs{JobName: "queued-slot"}, tasks.EnqueueOptions{Metadata: map[string]string{TaskMetaSlot: slot.Format(time.RFC3339)}})
		r := waitTask(t, svc, id, tasks.StateCompleted)
		agree(t, l, r)
		runs := runsOfTask(t, l, id)
		require.Len(t, runs, 1)
		require.True(t, slot.Equal(*runs[0].Slot))
	})
}

// TestTaskHandlersCoverTheRegistry: every registry job is a task kind.
func TestTaskHandlersCoverTheRegistry(t *testing.T) {
	t.Parallel()
	h := TaskHandlers(Env{}, TaskOptions{})
	require.NoError(t, h.Validate())
	var kinds []string
	for _, j := range All() {
		kinds = append(kinds, j.Kind())
	}
	require.Equal(t, kinds, h.Kinds())
}

// TestTasksDocListsEveryJob: docs/tasks.md names every job kind the
// worker runs, so the app's developers find each one's args there.
func TestTasksDocListsEveryJob(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../../docs/tasks.md")
	require.NoError(t, err)
	for _, j := range All() {
		require.Contains(t, string(doc), "`"+j.Kind()+"`", "docs/tasks.md lists kind %s", j.Kind())
	}
}
