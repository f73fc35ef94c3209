package tasks_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/internal/pgtest"
	"github.com/ip2a/ip2a-ops/pkg/migrate"
	"github.com/ip2a/ip2a-ops/pkg/pgcluster"
	"github.com/ip2a/ip2a-ops/pkg/tasks"
)

// workerProc is a real worker process: this test binary in helper mode.
type workerProc struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

func startWorker(t *testing.T, url string, env ...string) *workerProc {
	t.Helper()
	w := &workerProc{log: filepath.Join(t.TempDir(), "worker.log"), done: make(chan struct{})}
	f, err := os.Create(w.log)
	require.NoError(t, err)
	w.cmd = exec.Command(os.Args[0], "-test.run=^$")
	w.cmd.Env = append(append(os.Environ(), "TASKS_TEST_WORKER_DB="+url), env...)
	w.cmd.Stdout, w.cmd.Stderr = f, f
	require.NoError(t, w.cmd.Start())
	go func() { w.err = w.cmd.Wait(); f.Close(); close(w.done) }()
	t.Cleanup(func() {
		_ = w.cmd.Process.Kill()
		<-w.done
		if t.Failed() {
			b, _ := os.ReadFile(w.log)
			t.Logf("worker %d log:\n%s", w.cmd.Process.Pid, b)
		}
	})
	return w
}

// wait waits for the process to exit and returns its exit code.
func (w *workerProc) wait(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-w.done:
	case <-time.After(within):
		t.Fatalf("worker %d still running after %s", w.cmd.Process.Pid, within)
	}
	var ee *exec.ExitError
	if errors.As(w.err, &ee) {
		return ee.ExitCode()
	}
	require.NoError(t, w.err)
	return 0
}

// queueDB is a migrated database with the test_runs table, an insert-only
// service on it, and its URL.
func queueDB(t *testing.T, url string) (*pgxpool.Pool, *tasks.River) {
	t.Helper()
	pool := pgtest.Pool(t, url)
	_, err := migrate.Up(t.Context(), pool, migrate.DefaultSchema)
	require.NoError(t, err)
	_, err = pool.Exec(t.Context(), runsTable)
	require.NoError(t, err)
	svc, err := tasks.NewRiver(pool, tasks.RiverOptions{})
	require.NoError(t, err)
	return pool, svc
}

type runRow struct {
	Attempt  int
	PID      int
	Started  time.Time
	Finished *time.Time
}

func runsOf(t *testing.T, pool *pgxpool.Pool, id tasks.ID) []runRow {
	t.Helper()
	rows, err := pool.Query(t.Context(), `SELECT attempt, pid, started_at, finished_at FROM test_runs WHERE task_id = $1 ORDER BY started_at`, int64(id))
	require.NoError(t, err)
	defer rows.Close()
	var out []runRow
	for rows.Next() {
		var r runRow
		require.NoError(t, rows.Scan(&r.Attempt, &r.PID, &r.Started, &r.Finished))
		out = append(out, r)
	}
	require.NoError(t, rows.Err())
	return out
}

// waitRuns polls until the task has n recorded runs.
func waitRuns(t *testing.T, pool *pgxpool.Pool, id tasks.ID, n int) []runRow {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		if r := runsOf(t, pool, id); len(r) >= n {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %d never ran %d times", id, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A worker killed with SIGKILL in the middle of a task: the task stays
// running until River's rescuer takes it for dead, then another worker
// runs it again (attempt 2). The two runs never overlap.
func TestFaultKilledWorkerTaskIsRescued(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDatabase(t)
	pool, svc := queueDB(t, url)
	a := startWorker(t, url)
	e, err := svc.Enqueue(t.Context(), "slow", json.RawMessage(`{"ms": 600000}`), tasks.EnqueueOptions{MaxAttempts: 3})
	require.NoError(t, err)
	first := waitRuns(t, pool, e.ID, 1)[0]
	require.Equal(t, a.cmd.Process.Pid, first.PID)

	require.NoError(t, a.cmd.Process.Signal(syscall.SIGKILL))
	a.wait(t, 10*time.Second)
	killedAt := time.Now()
	r, err := svc.Status(t.Context(), e.ID)
	require.NoError(t, err)
	require.Equal(t, tasks.StateRunning, r.State, "nobody has noticed yet")

	b := startWorker(t, url, "TASKS_TEST_TIMEOUT=2s", "TASKS_TEST_RESCUE_AFTER=3s", "TASKS_TEST_SLEEP_CAP=100ms")
	r = waitWithin(t, svc, e.ID, 3*time.Minute, tasks.StateCompleted)
	require.Equal(t, 2, r.Attempts)
	require.Len(t, r.Errors, 1, "the rescue is recorded as the first attempt's error")
	require.Equal(t, 1, r.Errors[0].Attempt)
	require.JSONEq(t, `{"pid":`+strconv.Itoa(b.cmd.Process.Pid)+`}`, string(r.Output))

	runs := runsOf(t, pool, e.ID)
	require.Len(t, runs, 2)
	require.Nil(t, runs[0].Finished, "the killed run never finished")
	require.Equal(t, b.cmd.Process.Pid, runs[1].PID)
	require.Equal(t, 2, runs[1].Attempt)
	require.True(t, runs[1].Started.After(killedAt.Add(-time.Second)), "the second run started after the kill")
	require.NotNil(t, runs[1].Finished)
}

// SIGTERM: a running task that ends within the stop timeout completes; one
// that does not is cancelled and handed back, and another worker runs it.
func TestFaultStopGivesRunningTaskBack(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDatabase(t)
	pool, svc := queueDB(t, url)
	a := startWorker(t, url, "TASKS_TEST_STOP_TIMEOUT=4s")
	short, err := svc.Enqueue(t.Context(), "slow", json.RawMessage(`{"ms": 1500}`), tasks.EnqueueOptions{})
	require.NoError(t, err)
	long, err := svc.Enqueue(t.Context(), "slow", json.RawMessage(`{"ms": 600000}`), tasks.EnqueueOptions{})
	require.NoError(t, err)
	waitRuns(t, pool, short.ID, 1)
	waitRuns(t, pool, long.ID, 1)

	require.NoError(t, a.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, a.wait(t, 30*time.Second))
	r, err := svc.Status(t.Context(), short.ID)
	require.NoError(t, err)
	require.Equal(t, tasks.StateCompleted, r.State, "finished within the stop timeout")
	r, err = svc.Status(t.Context(), long.ID)
	require.NoError(t, err)
	require.Equal(t, tasks.StatePending, r.State, "given back for another worker")
	require.Equal(t, 0, r.Attempts, "the interrupted attempt does not count")

	b := startWorker(t, url, "TASKS_TEST_SLEEP_CAP=100ms")
	r = waitState(t, svc, long.ID, tasks.StateCompleted)
	require.Equal(t, 1, r.Attempts)
	runs := runsOf(t, pool, long.ID)
	require.Len(t, runs, 2)
	require.Equal(t, a.cmd.Process.Pid, runs[0].PID)
	require.Nil(t, runs[0].Finished)
	require.Equal(t, b.cmd.Process.Pid, runs[1].PID)
}

// Two workers, 200 tasks enqueued at once: each runs exactly once, and
// both workers take part.
func TestFaultTwoWorkersRunEachTaskOnce(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDatabase(t)
	pool, svc := queueDB(t, url)
	a := startWorker(t, url)
	b := startWorker(t, url)

	const n = 200
	ids := make([]tasks.ID, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e, err := svc.Enqueue(context.Background(), "slow", json.RawMessage(`{"ms": 20}`), tasks.EnqueueOptions{})
			ids[i] = e.ID
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		done, err := svc.List(t.Context(), tasks.ListOptions{States: []tasks.State{tasks.StateCompleted}, Limit: 1000})
		require.NoError(t, err)
		if len(done) == n {
			break
		}
		require.False(t, time.Now().After(deadline), "only %d of %d tasks completed", len(done), n)
		time.Sleep(50 * time.Millisecond)
	}
	var rows, distinct, maxAttempt, byA, byB int
	require.NoError(t, pool.QueryRow(t.Context(), `SELECT count(*), count(DISTINCT task_id), max(attempt),
		count(*) FILTER (WHERE pid = $1), count(*) FILTER (WHERE pid = $2) FROM test_runs`,
		a.cmd.Process.Pid, b.cmd.Process.Pid).Scan(&rows, &distinct, &maxAttempt, &byA, &byB))
	require.Equal(t, n, rows, "runs")
	require.Equal(t, n, distinct, "tasks run")
	require.Equal(t, 1, maxAttempt)
	require.Equal(t, n, byA+byB)
	require.Positive(t, byA)
	require.Positive(t, byB)
	t.Logf("worker A ran %d tasks, worker B %d", byA, byB)
}

// The database stops (immediate shutdown, as a crash) and starts again
// while a worker runs: the worker reconnects and every task completes,
// those enqueued before the stop and those enqueued after.
func TestFaultDatabaseRestartLosesNoTask(t *testing.T) {
	t.Parallel()
	// The throwaway cluster turns durability off for speed; a queue's
	// promise needs it on, as on any real server.
	cluster, err := pgcluster.Start(t.Context(), pgcluster.Options{Settings: map[string]string{
		"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}})
	if errors.Is(err, pgcluster.ErrNoBinaries) && os.Getenv("CI") == "" {
		t.Skip(err)
	}
	require.NoError(t, err)
	t.Cleanup(func() { _ = cluster.Stop() })
	url, _, err := pgcluster.CreateDatabase(t.Context(), cluster.URL("postgres"), "tasks")
	require.NoError(t, err)
	pool, svc := queueDB(t, url)
	startWorker(t, url, "TASKS_TEST_TIMEOUT=10s", "TASKS_TEST_RESCUE_AFTER=15s")

	var before []tasks.ID
	for range 30 {
		e, err := svc.Enqueue(t.Context(), "slow", json.RawMessage(`{"ms": 300}`), tasks.EnqueueOptions{MaxAttempts: 10})
		require.NoError(t, err)
		before = append(before, e.ID)
	}
	waitRuns(t, pool, before[0], 1)
	require.NoError(t, cluster.Halt())
	// Wait until the server is really gone, then bring it back.
	require.Eventually(t, func() bool { return pool.Ping(t.Context()) != nil }, 30*time.Second, 50*time.Millisecond)
	time.Sleep(2 * time.Second) // the database stays down a while: the worker must ride it out
	require.NoError(t, cluster.Resume(t.Context()))

	var after []tasks.ID
	for range 10 {
		e, err := svc.Enqueue(t.Context(), "slow", json.RawMessage(`{"ms": 10}`), tasks.EnqueueOptions{MaxAttempts: 10})
		require.NoError(t, err)
		after = append(after, e.ID)
	}
	for _, id := range append(before, after...) {
		waitWithin(t, svc, id, 3*time.Minute, tasks.StateCompleted)
	}
	var twice int
	require.NoError(t, pool.QueryRow(t.Context(), `SELECT count(*) FROM (SELECT task_id FROM test_runs GROUP BY task_id HAVING count(*) > 1) x`).Scan(&twice))
	t.Logf("%d tasks ran more than once around the restart (at-least-once delivery)", twice)
}

func waitWithin(t *testing.T, s tasks.Service, id tasks.ID, within time.Duration, want tasks.State) tasks.Result {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		r, err := s.Status(t.Context(), id)
		if err == nil && r.State == want {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %d never %s within %s; last %+v, %v", id, want, within, r, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
