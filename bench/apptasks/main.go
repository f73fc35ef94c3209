// Command apptasks benchmarks the app's http tasks with real worker
// processes against a local no-op endpoint (in this process, verifying
// every signature as the app does):
//
//   - throughput: N http tasks queued, then two workers start; tasks/s from
//     the first start to the last finish, beside N no-op tasks (no HTTP)
//     the same way in the same run;
//
//   - enqueue-to-delivery: N http tasks enqueued one by one at a steady
//     rate while two workers run; delivery is the endpoint receiving the
//     request, enqueue the task's created_at;
//
//   - an idle worker's memory and CPU with the http kind configured, beside
//     the same of a baseline binary (-baseline-bin, e.g. main's build) and of
//     this binary serving the web page (--listen).
//
//     go run ./bench/apptasks -database-url postgres://postgres@127.0.0.1:5432/postgres -baseline-bin /tmp/ip2a-ops-main
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ip2a/ip2a-ops/bench/internal/benchkit"
	"github.com/ip2a/ip2a-ops/pkg/apptask"
	"github.com/ip2a/ip2a-ops/pkg/tasks"
)

const secret = "bench-secret-0123456789abcdef"

func main() {
	dbURL := flag.String("database-url", os.Getenv("DATABASE_URL"), "server to create the bench database on (default: a throwaway cluster)")
	n := flag.Int("tasks", 10000, "tasks per run")
	conc := flag.Int("concurrency", 50, "tasks running at once per worker process")
	rate := flag.Int("rate", 250, "tasks enqueued per second in the latency run")
	idle := flag.Duration("idle", time.Minute, "idle measurement window per binary")
	baseline := flag.String("baseline-bin", "", "an ip2a-ops binary to measure idle beside this one (e.g. main's build)")
	flag.Parse()
	if err := run(*dbURL, *n, *conc, *rate, *idle, *baseline); err != nil {
		fmt.Fprintln(os.Stderr, "bench/apptasks:", err)
		os.Exit(1)
	}
}

// endpoint is the app: it verifies each delivery and records when each
// task id first arrived.
type endpoint struct {
	mu      sync.Mutex
	arrived map[string]time.Time
	dups    int
	refused int
}

func (e *endpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	at := time.Now()
	body, _ := io.ReadAll(r.Body)
	d, err := apptask.Verifier{Secrets: [][]byte{[]byte(secret)}}.Verify(r.Header, strings.TrimPrefix(r.URL.Path, "/tasks/"), body)
	e.mu.Lock()
	defer e.mu.Unlock()
	if err != nil {
		e.refused++
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	if _, ok := e.arrived[d.TaskID]; ok {
		e.dups++
	} else {
		e.arrived[d.TaskID] = at
	}
	io.WriteString(w, `{"ok": true}`)
}

func (e *endpoint) reset() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.arrived, e.dups, e.refused = map[string]time.Time{}, 0, 0
}

func run(admin string, n, conc, rate int, idle time.Duration, baseline string) error {
	ctx := context.Background()
	env, err := benchkit.Setup(ctx, admin)
	if err != nil {
		return err
	}
	defer env.Close()
	bin := env.Bin
	db, drop, err := env.Database(ctx, "bench_apptasks")
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

	app := &endpoint{arrived: map[string]time.Time{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: app}
	go srv.Serve(ln) //nolint:errcheck // ends with Close
	defer srv.Close()
	appURL := "http://" + ln.Addr().String() + "/tasks"

	worker := func(b string, args ...string) *exec.Cmd {
		c := exec.Command(b, append([]string{"--database-url", db, "--log-level", "warn", "worker"}, args...)...)
		c.Env = append(os.Environ(), "IP2A_OPS_APP_TASK_URL="+appURL, "IP2A_OPS_APP_TASK_SECRET="+secret)
		c.Stderr = os.Stderr
		return c
	}
	start, stop := benchkit.Start, benchkit.Stop
	waitDone := func(label string) error {
		deadline := time.Now().Add(10 * time.Minute)
		for {
			var done int
			if err := pool.QueryRow(ctx, `SELECT count(*) FROM ip2a_ops.river_job WHERE state = 'completed'`).Scan(&done); err != nil {
				return err
			}
			if done == n {
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s: only %d of %d tasks completed", label, done, n)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	// 1. Throughput: n tasks queued, then two workers.
	fmt.Printf("throughput, %d tasks queued before 2 worker processes start, %d slots each:\n", n, conc)
	for _, kind := range []string{"noop", apptask.Kind} {
		app.reset()
		if _, err := pool.Exec(ctx, `TRUNCATE ip2a_ops.river_job`); err != nil {
			return err
		}
		if _, err := pool.Exec(ctx, `INSERT INTO ip2a_ops.river_job (args, kind, max_attempts, priority, queue, state)
			SELECT CASE WHEN $1 = 'noop' THEN '{}'::jsonb ELSE jsonb_build_object('v', 1, 'task', 'send_welcome_email', 'payload', jsonb_build_object('member_id', i)) END,
			$1, 5, 1, 'default', 'available' FROM generate_series(1, $2) i`, kind, n); err != nil {
			return err
		}
		ws := []*exec.Cmd{worker(bin, "--concurrency", strconv.Itoa(conc)), worker(bin, "--concurrency", strconv.Itoa(conc))}
		if err := start(ws...); err != nil {
			return err
		}
		err := waitDone(kind)
		stop(ws...)
		if err != nil {
			return err
		}
		var secs float64
		var perProc []int
		if err := pool.QueryRow(ctx, `SELECT extract(epoch FROM max(finalized_at) - min(attempted_at)),
			array_agg(c ORDER BY c DESC) FROM (SELECT count(*) AS c, max(finalized_at) AS finalized_at, min(attempted_at) AS attempted_at
			FROM ip2a_ops.river_job GROUP BY attempted_by[1]) x`).Scan(&secs, &perProc); err != nil {
			return err
		}
		extra := ""
		if kind == apptask.Kind {
			app.mu.Lock()
			extra = fmt.Sprintf(", delivered %d, twice %d, refused %d", len(app.arrived), app.dups, app.refused)
			app.mu.Unlock()
		}
		fmt.Printf("  %-6s %6d tasks in %6.2f s: %6.0f tasks/s   (per process: %v%s)\n", kind, n, secs, float64(n)/secs, perProc, extra)
	}

	// 2. Enqueue-to-delivery at a steady rate, two workers running.
	app.reset()
	if _, err := pool.Exec(ctx, `TRUNCATE ip2a_ops.river_job`); err != nil {
		return err
	}
	ws := []*exec.Cmd{worker(bin, "--concurrency", strconv.Itoa(conc)), worker(bin, "--concurrency", strconv.Itoa(conc))}
	if err := start(ws...); err != nil {
		return err
	}
	time.Sleep(3 * time.Second) // start-up: connect, elect a leader, first fetch
	tick := time.NewTicker(time.Second / time.Duration(rate))
	began := time.Now()
	for i := range n {
		<-tick.C
		args := fmt.Sprintf(`{"v": 1, "task": "send_welcome_email", "payload": {"member_id": %d}}`, i)
		if _, err := svc.Enqueue(ctx, apptask.Kind, []byte(args), tasks.EnqueueOptions{}); err != nil {
			stop(ws...)
			return err
		}
	}
	tick.Stop()
	enqueued := time.Since(began)
	err = waitDone("latency")
	stop(ws...)
	if err != nil {
		return err
	}
	created := make(map[string]time.Time, n)
	rows, err := pool.Query(ctx, `SELECT id::text, created_at FROM ip2a_ops.river_job`)
	if err != nil {
		return err
	}
	for rows.Next() {
		var id string
		var at time.Time
		if err := rows.Scan(&id, &at); err != nil {
			rows.Close()
			return err
		}
		created[id] = at
	}
	rows.Close()
	var lat []time.Duration
	app.mu.Lock()
	for id, at := range app.arrived {
		lat = append(lat, at.Sub(created[id]))
	}
	dups := app.dups
	app.mu.Unlock()
	slices.Sort(lat)
	fmt.Printf("enqueue-to-delivery, %d tasks enqueued one by one at %.0f/s, 2 workers: p50 %s, p99 %s, max %s (delivered %d, twice %d)\n",
		n, float64(n)/enqueued.Seconds(), benchkit.Pct(lat, 50), benchkit.Pct(lat, 99), lat[len(lat)-1].Round(time.Millisecond), len(lat), dups)

	// 3. Idle workers: RSS and CPU.
	measure := func(label string, c *exec.Cmd) error {
		if err := start(c); err != nil {
			return err
		}
		defer stop(c)
		time.Sleep(3 * time.Second)
		t0, c0 := time.Now(), benchkit.CPUTicks(c.Process.Pid)
		maxRSS := 0
		for time.Since(t0) < idle {
			maxRSS = max(maxRSS, benchkit.RSSKB(c.Process.Pid))
			time.Sleep(time.Second)
		}
		cpu := float64(benchkit.CPUTicks(c.Process.Pid)-c0) / 100 / time.Since(t0).Seconds() * 100 // USER_HZ=100
		fmt.Printf("  %-46s max RSS %5.1f MB, CPU %.3f%% of one core\n", label, float64(maxRSS)/1024, cpu)
		return nil
	}
	fmt.Printf("idle worker (4 slots), %s each   (goal: <= 40 MB):\n", idle)
	if baseline != "" {
		if err := measure("baseline ("+filepath.Base(baseline)+")", worker(baseline)); err != nil {
			return err
		}
	}
	if err := measure("this build, http kind configured", worker(bin)); err != nil {
		return err
	}
	if err := measure("this build, web page on --listen", worker(bin, "--listen", "127.0.0.1:0")); err != nil {
		return err
	}
	return nil
}
