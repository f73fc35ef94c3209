// Command tasks benchmarks the task queue with real worker processes:
// an idle `ip2a-ops worker`'s memory and CPU, enqueue-to-start latency with
// an idle worker (River's LISTEN/NOTIFY wakes it), and the throughput of
// no-op tasks and of a registry job run through the runner and the ledger
// (the sleep job for 0 s) with one and two worker processes, beside bare
// River's no-op throughput measured the same way in the same run (a
// minimal River program: this binary re-run with -bare-worker, with the
// same slots and fetch cooldown).
//
//	go run ./bench/tasks                       # throwaway cluster
//	go run ./bench/tasks -database-url postgres://postgres@127.0.0.1:5432/postgres -idle 60s
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/ip2a/ip2a-ops/bench/internal/benchkit"
	"github.com/ip2a/ip2a-ops/pkg/migrate"
	"github.com/ip2a/ip2a-ops/pkg/tasks"
)

func main() {
	dbURL := flag.String("database-url", os.Getenv("DATABASE_URL"), "server to create the bench database on (default: a throwaway cluster)")
	idle := flag.Duration("idle", time.Minute, "idle measurement window")
	samples := flag.Int("latency-samples", 100, "tasks enqueued one by one for the latency figure")
	n := flag.Int("tasks", 20000, "tasks per throughput run")
	conc := flag.Int("concurrency", 100, "tasks running at once per worker process (both sides)")
	bare := flag.String("bare-worker", "", "internal: run a bare River no-op worker on this database URL")
	baseline := flag.String("baseline-bin", "", "an ip2a-ops binary whose registry-job throughput is measured beside this one's (e.g. an older build)")
	flag.Parse()
	if *bare != "" {
		if err := bareWorker(*bare, *conc); err != nil {
			fmt.Fprintln(os.Stderr, "bare worker:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(*dbURL, *idle, *samples, *n, *conc, *baseline); err != nil {
		fmt.Fprintln(os.Stderr, "bench/tasks:", err)
		os.Exit(1)
	}
}

func run(admin string, idle time.Duration, samples, n, conc int, baseline string) error {
	ctx := context.Background()
	env, err := benchkit.Setup(ctx, admin)
	if err != nil {
		return err
	}
	defer env.Close()
	bin := env.Bin
	self, err := os.Executable()
	if err != nil {
		return err
	}
	db, drop, err := env.Database(ctx, "bench_tasks")
	if err != nil {
		return err
	}
	defer drop()
	pool, err := pgxpool.New(ctx, db)
	if err != nil {
		return err
	}
	defer pool.Close()
	svc, err := tasks.NewRiver(pool, tasks.RiverOptions{})
	if err != nil {
		return err
	}

	workerOf := func(bin string, c int) *exec.Cmd {
		cmd := exec.Command(bin, "--database-url", db, "--log-level", "warn", "worker", "--concurrency", strconv.Itoa(c))
		cmd.Stderr = os.Stderr
		return cmd
	}
	worker := func(c int) *exec.Cmd { return workerOf(bin, c) }
	start, stop := benchkit.Start, benchkit.Stop

	// 1. An idle worker: memory and CPU, beside bare River's (its batch
	// completer alone wakes 20 times a second); then enqueue-to-start
	// latency.
	idleOf := func(p *exec.Cmd) (rssMB, cpuPct float64) {
		time.Sleep(3 * time.Second) // start-up: connect, elect a leader, first fetch
		t0, c0 := time.Now(), benchkit.CPUTicks(p.Process.Pid)
		maxRSS := 0
		for time.Since(t0) < idle {
			maxRSS = max(maxRSS, benchkit.RSSKB(p.Process.Pid))
			time.Sleep(time.Second)
		}
		return float64(maxRSS) / 1024, float64(benchkit.CPUTicks(p.Process.Pid)-c0) / 100 / time.Since(t0).Seconds() * 100 // USER_HZ=100
	}
	bareIdle := exec.Command(self, "-bare-worker", db, "-concurrency", "4")
	bareIdle.Stderr = os.Stderr
	if err := start(bareIdle); err != nil {
		return err
	}
	bareRSS, bareCPU := idleOf(bareIdle)
	stop(bareIdle)
	w := worker(4)
	if err := start(w); err != nil {
		return err
	}
	rss, cpu := idleOf(w)
	fmt.Printf("idle worker (4 slots), %s: max RSS %.1f MB, CPU %.3f%% of one core   (bare River, 4 slots, before it: %.1f MB, %.3f%%; goal: <= 40 MB, < 0.5%%)\n",
		idle, rss, cpu, bareRSS, bareCPU)

	var lat []time.Duration
	for range samples {
		e, err := svc.Enqueue(ctx, "noop", nil, tasks.EnqueueOptions{})
		if err != nil {
			return err
		}
		r, err := waitStarted(ctx, svc, e.ID)
		if err != nil {
			return err
		}
		lat = append(lat, r.AttemptedAt.Sub(r.CreatedAt))
		time.Sleep(100 * time.Millisecond) // the worker is idle again before the next one
	}
	slices.Sort(lat)
	fmt.Printf("enqueue-to-start, idle worker, %d tasks one at a time: p50 %s, p99 %s, max %s   (goal: p99 <= 100 ms)\n",
		len(lat), benchkit.Pct(lat, 50), benchkit.Pct(lat, 99), lat[len(lat)-1].Round(time.Millisecond))
	stop(w)

	// 2. Throughput: n no-op tasks already queued, then the workers start;
	// the rate is n over first start to last finish, from River's rows.
	// args is the SQL of each task's args, of i (1..n).
	through := func(label, kind, args string, procs ...*exec.Cmd) error {
		if _, err := pool.Exec(ctx, `TRUNCATE ip2a_ops.river_job, ip2a_ops.runs`); err != nil {
			return err
		}
		if _, err := pool.Exec(ctx, `INSERT INTO ip2a_ops.river_job (args, kind, max_attempts, priority, queue, state)
			SELECT `+args+`, $1, 5, 1, 'default', 'available' FROM generate_series(1, $2) AS i`, kind, n); err != nil {
			return err
		}
		if err := start(procs...); err != nil {
			return err
		}
		defer stop(procs...)
		deadline := time.Now().Add(10 * time.Minute)
		for {
			var done int
			if err := pool.QueryRow(ctx, `SELECT count(*) FROM ip2a_ops.river_job WHERE state = 'completed'`).Scan(&done); err != nil {
				return err
			}
			if done == n {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s: only %d of %d tasks completed", label, done, n)
			}
			time.Sleep(100 * time.Millisecond)
		}
		var secs float64
		var perProc []int
		if err := pool.QueryRow(ctx, `SELECT extract(epoch FROM max(finalized_at) - min(attempted_at)),
			array_agg(c ORDER BY c DESC) FROM (SELECT count(*) AS c, max(finalized_at) AS finalized_at, min(attempted_at) AS attempted_at
			FROM ip2a_ops.river_job GROUP BY attempted_by[1]) x`).Scan(&secs, &perProc); err != nil {
			return err
		}
		var runs int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM ip2a_ops.runs WHERE trigger = 'queue' AND state = 'succeeded' AND task_id IS NOT NULL`).Scan(&runs); err != nil {
			return err
		}
		fmt.Printf("%-44s %6d tasks in %6.2f s: %7.0f tasks/s   (per process: %v; ledger runs: %d)\n", label, n, secs, float64(n)/secs, perProc, runs)
		return nil
	}
	fmt.Printf("throughput, %d tasks queued before the workers start, %d slots per process:\n", n, conc)
	bareCmd := func() *exec.Cmd {
		cmd := exec.Command(self, "-bare-worker", db, "-concurrency", strconv.Itoa(conc))
		cmd.Stderr = os.Stderr
		return cmd
	}
	// The registry job: sleep for 0 s through jobs.Execute, the runner and
	// the ledger (a ledger row per task); each task names its own ledger
	// job, since one job's runs never overlap.
	const job = `json_build_object('v', 1, 'for', 0, 'job_name', 'bench-' || i)`
	for _, procs := range []int{1, 2} {
		var bares, noops, jobs []*exec.Cmd
		for range procs {
			bares, noops, jobs = append(bares, bareCmd()), append(noops, worker(conc)), append(jobs, worker(conc))
		}
		sfx := fmt.Sprintf(", %d process", procs)
		if procs > 1 {
			sfx += "es"
		}
		if err := through("  bare River no-op"+sfx, "bare_noop", `'{}'`, bares...); err != nil {
			return err
		}
		if err := through("  ip2a-ops worker, noop kind"+sfx, "noop", `'{}'`, noops...); err != nil {
			return err
		}
		if err := through("  ip2a-ops worker, sleep job + ledger"+sfx, "sleep", job, jobs...); err != nil {
			return err
		}
		// River's own cost of that job's payload: the same args, and an
		// output of the same shape and size, with no runner or ledger.
		var bareJobs []*exec.Cmd
		for range procs {
			bareJobs = append(bareJobs, bareCmd())
		}
		if err := through("  bare River, the sleep job's args and output"+sfx, "bare_sleep", job, bareJobs...); err != nil {
			return err
		}
		if baseline != "" {
			var base []*exec.Cmd
			for range procs {
				base = append(base, workerOf(baseline, conc))
			}
			if err := through("  -baseline-bin, sleep job + ledger"+sfx, "sleep", job, base...); err != nil {
				return err
			}
		}
	}
	return nil
}

func waitStarted(ctx context.Context, svc tasks.Service, id tasks.ID) (tasks.Result, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		r, err := svc.Status(ctx, id)
		if err != nil || r.AttemptedAt != nil {
			return r, err
		}
		if time.Now().After(deadline) {
			return r, fmt.Errorf("task %d never started", id)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// bareNoop is the minimal River job the comparison runs.
type bareNoop struct{}

func (bareNoop) Kind() string { return "bare_noop" }

// bareSleep has the sleep job's args; its worker records an output of the
// shape a queued job leaves (jobs.TaskOutput), so River's side of such a
// task costs what it costs through ip2a-ops.
type bareSleep struct {
	V       int    `json:"v"`
	For     int64  `json:"for"`
	JobName string `json:"job_name"`
}

func (bareSleep) Kind() string { return "bare_sleep" }

// bareWorker is River with nothing of ip2a-ops: a typed no-op worker, the
// same schema and the same slots, until SIGTERM.
func bareWorker(db string, conc int) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	pool, err := pgxpool.New(ctx, db)
	if err != nil {
		return err
	}
	defer pool.Close()
	workers := river.NewWorkers()
	river.AddWorker(workers, river.WorkFunc(func(ctx context.Context, j *river.Job[bareNoop]) error {
		return river.RecordOutput(ctx, json.RawMessage(`{}`))
	}))
	river.AddWorker(workers, river.WorkFunc(func(ctx context.Context, j *river.Job[bareSleep]) error {
		start := time.Now()
		time.Sleep(time.Duration(j.Args.For))
		return river.RecordOutput(ctx, map[string]any{"run_id": j.ID, "job": j.Args.JobName, "state": "succeeded", "exit_code": 0,
			"outcome": "succeeded", "summary": map[string]float64{"slept_seconds": time.Since(start).Seconds()}})
	}))
	client, err := river.NewClient[pgx.Tx](riverpgxv5.New(pool), &river.Config{
		Schema: migrate.DefaultSchema, Workers: workers,
		Queues: map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: conc}},
		// The same fetch cooldown as ip2a-ops's workers (River's default is
		// 100 ms), so both sides fetch alike.
		FetchCooldown: tasks.DefaultFetchCooldown,
	})
	if err != nil {
		return err
	}
	if err := client.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return client.Stop(sctx)
}
