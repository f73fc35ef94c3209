package tasks_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ip2a/ip2a-ops/internal/pgtest"
	"github.com/ip2a/ip2a-ops/pkg/tasks"
)

// TestMain doubles as a worker process for the fault tests: with
// TASKS_TEST_WORKER_DB set, the test binary runs a real worker (its own
// process, killed and signalled for real) instead of the tests.
func TestMain(m *testing.M) {
	if url := os.Getenv("TASKS_TEST_WORKER_DB"); url != "" {
		os.Exit(helperWorker(url))
	}
	pgtest.Main(m)
}

const runsTable = `CREATE TABLE test_runs (
	task_id bigint NOT NULL, attempt int NOT NULL, pid int NOT NULL,
	started_at timestamptz NOT NULL DEFAULT clock_timestamp(), finished_at timestamptz)`

// helperWorker runs tasks.RunWorker with two kinds that record every run
// in test_runs: "record" returns at once, "slow" sleeps args.ms (capped by
// TASKS_TEST_SLEEP_CAP) unless its context ends first.
func helperWorker(url string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer pool.Close()
	sleepCap := envDuration("TASKS_TEST_SLEEP_CAP", time.Hour)
	pid := os.Getpid()
	start := func(ctx context.Context, t tasks.Task) error {
		_, err := pool.Exec(ctx, `INSERT INTO test_runs (task_id, attempt, pid) VALUES ($1, $2, $3)`, int64(t.ID), t.Attempt, pid)
		return err
	}
	finish := func(ctx context.Context, t tasks.Task) (json.RawMessage, error) {
		_, err := pool.Exec(ctx, `UPDATE test_runs SET finished_at = clock_timestamp() WHERE task_id = $1 AND pid = $2 AND finished_at IS NULL`, int64(t.ID), pid)
		return json.RawMessage(fmt.Sprintf(`{"pid":%d}`, pid)), err
	}
	handlers := tasks.Handlers{
		"record": func(ctx context.Context, t tasks.Task) (json.RawMessage, error) {
			if err := start(ctx, t); err != nil {
				return nil, err
			}
			return finish(ctx, t)
		},
		"slow": func(ctx context.Context, t tasks.Task) (json.RawMessage, error) {
			var args struct {
				MS int `json:"ms"`
			}
			if err := json.Unmarshal(t.Args, &args); err != nil {
				return nil, tasks.Permanent(err)
			}
			if err := start(ctx, t); err != nil {
				return nil, err
			}
			select {
			case <-time.After(min(time.Duration(args.MS)*time.Millisecond, sleepCap)):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			return finish(ctx, t)
		},
	}
	err = tasks.RunWorker(ctx, pool, tasks.WorkerOptions{
		Handlers:     handlers,
		Concurrency:  envInt("TASKS_TEST_CONCURRENCY", 4),
		StopTimeout:  envDuration("TASKS_TEST_STOP_TIMEOUT", 30*time.Second),
		CancelGrace:  5 * time.Second,
		Timeout:      envDuration("TASKS_TEST_TIMEOUT", time.Hour),
		RescueAfter:  envDuration("TASKS_TEST_RESCUE_AFTER", 2*time.Hour),
		PollInterval: 200 * time.Millisecond,
		Backoff:      func(int) time.Duration { return 100 * time.Millisecond },
		Logger:       helperLogger(),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		return 1
	}
	return 0
}

func envDuration(name string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(name)); err == nil {
		return d
	}
	return def
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return n
	}
	return def
}

func helperLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
}
