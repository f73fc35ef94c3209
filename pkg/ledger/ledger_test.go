package ledger

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/internal/pgtest"
	"github.com/ip2a/ip2a-ops/pkg/exitcode"
	"github.com/ip2a/ip2a-ops/pkg/migrate"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func newLedger(t *testing.T) (*Ledger, *pgxpool.Pool) {
	t.Helper()
	pool, err := pgxpool.New(t.Context(), pgtest.NewDatabase(t))
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	_, err = migrate.Up(t.Context(), pool, migrate.DefaultSchema)
	require.NoError(t, err)
	return New(pool, migrate.DefaultSchema), pool
}

func TestConcurrentStartsClaimOnce(t *testing.T) {
	t.Parallel()
	l, _ := newLedger(t)
	ctx := t.Context()
	const n = 12
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_, errs[i] = l.Start(ctx, StartParams{Job: "backup", Trigger: "manual", Host: "h", PID: i})
		}(i)
	}
	wg.Wait()
	won, skipped := 0, 0
	for _, err := range errs {
		var busy *BusyError
		switch {
		case err == nil:
			won++
		case errors.As(err, &busy):
			require.ErrorIs(t, err, exitcode.ErrSkipped)
			require.Equal(t, Skipped, busy.Skipped.State)
			skipped++
		default:
			t.Fatalf("unexpected error: %v", err)
		}
	}
	require.Equal(t, 1, won)
	require.Equal(t, n-1, skipped)
}

func TestStaleRunIsAbandoned(t *testing.T) {
	t.Parallel()
	l, pool := newLedger(t)
	ctx := t.Context()
	first, err := l.Start(ctx, StartParams{Job: "audit-archive", Trigger: "cron", Host: "a", PID: 1})
	require.NoError(t, err)
	// The process dies: its heartbeat stops. Age it instead of waiting.
	_, err = pool.Exec(ctx, `UPDATE ip2a_ops.runs SET heartbeat_at = now() - interval '10 minutes' WHERE id = $1`, first.ID)
	require.NoError(t, err)

	second, err := l.Start(ctx, StartParams{Job: "audit-archive", Trigger: "cron", Host: "b", PID: 2, StaleAfter: 2 * time.Minute})
	require.NoError(t, err)
	old, err := l.Get(ctx, first.ID)
	require.NoError(t, err)
	require.Equal(t, Abandoned, old.State)
	require.Contains(t, old.Error, "no heartbeat since")

	// The dead process, if it came back, has lost its claim.
	require.ErrorIs(t, l.Heartbeat(ctx, first.ID, nil, nil), ErrLostClaim)
	require.NoError(t, l.Heartbeat(ctx, second.ID, map[string]int{"rows": 5}, nil))
	require.NoError(t, l.Finish(ctx, second.ID, Succeeded, 0, "", nil))
	got, err := l.Get(ctx, second.ID)
	require.NoError(t, err)
	require.JSONEq(t, `{"rows": 5}`, string(got.Summary), "the heartbeat's summary survives a Finish without one")

	st, err := l.Status(ctx)
	require.NoError(t, err)
	require.Len(t, st, 1)
	require.Equal(t, second.ID, st[0].LastRun.ID)
	require.NotNil(t, st[0].LastSuccess)
	require.Nil(t, st[0].Running)
	require.Equal(t, int64(1), st[0].Failures)
}

func TestHistoryFilters(t *testing.T) {
	t.Parallel()
	l, _ := newLedger(t)
	ctx := t.Context()
	for _, job := range []string{"a", "b", "a"} {
		r, err := l.Start(ctx, StartParams{Job: job, Trigger: "manual", Host: "h", PID: 1, Args: []string{job}})
		require.NoError(t, err)
		require.NoError(t, l.Finish(ctx, r.ID, Failed, 1, "boom", nil))
	}
	runs, err := l.History(ctx, HistoryFilter{Job: "a"})
	require.NoError(t, err)
	require.Len(t, runs, 2)
	require.Greater(t, runs[0].ID, runs[1].ID, "newest first")
	require.Equal(t, []string{"a"}, runs[0].Args)
	runs, err = l.History(ctx, HistoryFilter{Limit: 1, State: Failed})
	require.NoError(t, err)
	require.Len(t, runs, 1)
}

// TestCopiedRunningRowIsAbandoned: a database copied while a run was going
// on (pg_dump and pg_restore, as a restore does) carries the running row.
// On the copy it was started on another database, so the first Start of
// any job there marks it abandoned at once; on the source it still holds.
func TestCopiedRunningRowIsAbandoned(t *testing.T) {
	t.Parallel()
	src, srcPool := newLedger(t)
	ctx := t.Context()
	live, err := src.Start(ctx, StartParams{Job: "backup", Trigger: "cron", Host: "a", PID: 1})
	require.NoError(t, err)
	_, err = srcPool.Exec(ctx, `INSERT INTO ip2a_ops.runs (job, trigger, host, pid, state) VALUES ('cleanup', 'cron', 'old', 2, 'running')`)
	require.NoError(t, err, "a running row from before database_id existed")

	copyURL := pgtest.NewDatabase(t)
	dump := exec.CommandContext(ctx, "sh", "-c", `pg_dump -Fc --schema=ip2a_ops "$1" | pg_restore --no-owner -d "$2"`, "sh", srcPool.Config().ConnString(), copyURL)
	out, err := dump.CombinedOutput()
	require.NoError(t, err, string(out))
	cp := New(pgtest.Pool(t, copyURL), migrate.DefaultSchema)

	_, err = src.Start(ctx, StartParams{Job: "backup", Trigger: "cron", Host: "b", PID: 3})
	var busy *BusyError
	require.ErrorAs(t, err, &busy, "on the source the run is live")
	require.Equal(t, live.ID, busy.Holder.ID)

	_, err = cp.Start(ctx, StartParams{Job: "integrity-check", Trigger: "cron", Host: "c", PID: 4})
	require.NoError(t, err)
	copied, err := cp.Get(ctx, live.ID)
	require.NoError(t, err)
	require.Equal(t, Abandoned, copied.State)
	require.Equal(t, "abandoned: started on another database (a copy or restore of this one); it does not run here", copied.Error)
	_, err = cp.Start(ctx, StartParams{Job: "backup", Trigger: "cron", Host: "c", PID: 5})
	require.NoError(t, err, "the copy's first backup runs at once")

	// A row without database_id (written before it existed) is left to the
	// heartbeat rule, on either side.
	var states []string
	require.NoError(t, cp.pool.QueryRow(ctx, `SELECT array_agg(state) FROM ip2a_ops.runs WHERE job = 'cleanup'`).Scan(&states))
	require.Equal(t, []string{Running}, states)

	n, err := cp.AbandonRunning(ctx, "restored")
	require.NoError(t, err)
	require.Equal(t, int64(3), n, "cleanup's old row and the two runs started on the copy")
	gone := New(pgtest.Pool(t, pgtest.NewDatabase(t)), migrate.DefaultSchema)
	n, err = gone.AbandonRunning(ctx, "restored")
	require.NoError(t, err, "a database without the ledger has nothing to mark")
	require.Zero(t, n)
}

// TestLazyCommit: a lazy ledger's writes commit with synchronous_commit off
// for their own transaction only (it never leaks into the connection's next
// statement), record the same rows, and report SQL errors.
func TestLazyCommit(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDatabase(t)
	cfg, err := pgxpool.ParseConfig(url)
	require.NoError(t, err)
	cfg.MaxConns = 1 // every statement on the same session
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	_, err = migrate.Up(t.Context(), pool, migrate.DefaultSchema)
	require.NoError(t, err)
	ctx := t.Context()
	lazy := New(pool, migrate.DefaultSchema).LazyCommit()

	var setting string
	require.NoError(t, lazy.w.QueryRow(ctx, `SELECT current_setting('synchronous_commit')`).Scan(&setting))
	require.Equal(t, "off", setting)
	require.NoError(t, pool.QueryRow(ctx, `SELECT current_setting('synchronous_commit')`).Scan(&setting))
	require.Equal(t, "on", setting, "the setting does not outlive the write's transaction")

	run, err := lazy.Start(ctx, StartParams{Job: "queued", Trigger: "queue", Host: "h", PID: 1, TaskID: 7})
	require.NoError(t, err)
	require.Equal(t, int64(7), *run.TaskID)
	_, err = lazy.Start(ctx, StartParams{Job: "queued", Trigger: "queue", Host: "h", PID: 2, TaskID: 8})
	var busy *BusyError
	require.ErrorAs(t, err, &busy)
	require.Equal(t, int64(8), *busy.Skipped.TaskID)
	require.NoError(t, lazy.Heartbeat(ctx, run.ID, map[string]int{"done": 1}, nil))
	require.Error(t, lazy.Finish(ctx, run.ID, "bogus", 0, "", nil), "a CHECK violation is reported")
	require.NoError(t, lazy.Finish(ctx, run.ID, Succeeded, 0, "", nil))
	got, err := lazy.Get(ctx, run.ID)
	require.NoError(t, err)
	require.Equal(t, Succeeded, got.State)
	require.JSONEq(t, `{"done": 1}`, string(got.Summary))
	require.ErrorIs(t, lazy.Heartbeat(ctx, run.ID, nil, nil), ErrLostClaim)

	// A stale holder is expired through the lazy writer too.
	old, err := lazy.Start(ctx, StartParams{Job: "stale", Trigger: "queue", Host: "h", PID: 1})
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `UPDATE ip2a_ops.runs SET heartbeat_at = now() - interval '1 hour' WHERE id = $1`, old.ID)
	require.NoError(t, err)
	_, err = lazy.Start(ctx, StartParams{Job: "stale", Trigger: "queue", Host: "h", PID: 2})
	require.NoError(t, err)
	got, err = lazy.Get(ctx, old.ID)
	require.NoError(t, err)
	require.Equal(t, Abandoned, got.State)
}

// TestLazyCommitConcurrentRuns: many runs starting and ending at once
// through lazy ledgers (a worker's tasks) each get their own row, each job
// is claimed once, and one bad end fails only itself.
func TestLazyCommitConcurrentRuns(t *testing.T) {
	t.Parallel()
	base, pool := newLedger(t)
	ctx := t.Context()
	const jobs, perJob = 40, 3
	type result struct {
		run Run
		err error
	}
	results := make([]result, jobs*perJob)
	var wg sync.WaitGroup
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A LazyCommit ledger per run, as the runner makes them.
			r, err := base.LazyCommit().Start(ctx, StartParams{Job: fmt.Sprintf("job-%d", i%jobs), Trigger: "queue", Host: "h", PID: i, TaskID: int64(i + 1)})
			results[i] = result{r, err}
		}()
	}
	wg.Wait()
	claimed := map[string]int{}
	for i, r := range results {
		var busy *BusyError
		switch {
		case r.err == nil:
			claimed[r.run.Job]++
			require.Equal(t, int64(i+1), *r.run.TaskID)
			require.Equal(t, i, r.run.PID)
		case errors.As(r.err, &busy):
			require.Equal(t, int64(i+1), *busy.Skipped.TaskID)
		default:
			t.Fatalf("start %d: %v", i, r.err)
		}
	}
	require.Len(t, claimed, jobs)
	for job, n := range claimed {
		require.Equal(t, 1, n, job)
	}

	bad := -1 // the first claimed run ends with a state the table refuses
	for i, r := range results {
		if r.err == nil && bad < 0 {
			bad = i
		}
	}
	errs := make([]error, len(results))
	for i, r := range results {
		if r.err != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			state := Succeeded
			if i == bad {
				state = "bogus" // violates the state CHECK
			}
			errs[i] = base.LazyCommit().Finish(ctx, r.run.ID, state, 0, "", map[string]int{"i": i})
		}()
	}
	wg.Wait()
	var failed int
	for i, r := range results {
		if r.err != nil {
			continue
		}
		if i == bad {
			require.Error(t, errs[i])
			failed++
			continue
		}
		require.NoError(t, errs[i])
	}
	require.Equal(t, 1, failed)
	var running, succeeded, skipped int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE state = 'running'), count(*) FILTER (WHERE state = 'succeeded'),
		count(*) FILTER (WHERE state = 'skipped') FROM ip2a_ops.runs`).Scan(&running, &succeeded, &skipped))
	require.Equal(t, []int{1, jobs - 1, jobs*perJob - jobs}, []int{running, succeeded, skipped})
	var mismatched int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM ip2a_ops.runs WHERE state = 'succeeded' AND (summary->>'i')::int <> pid`).Scan(&mismatched))
	require.Zero(t, mismatched, "each end landed on its own run")
}

// TestLazyCommitGroupsWrites: writes that arrive while a group is on its
// way go together in the next one, in one transaction; a bad write among
// them fails alone, and a write whose caller gave up before it was sent is
// never sent.
func TestLazyCommitGroupsWrites(t *testing.T) {
	t.Parallel()
	base, pool := newLedger(t)
	ctx := t.Context()
	lazy := base.LazyCommit()
	start := func(job string) Run {
		r, err := lazy.Start(ctx, StartParams{Job: job, Trigger: "queue", Host: "h", PID: 1})
		require.NoError(t, err)
		return r
	}
	blocker := start("blocker")
	const n = 30
	g := base.st.group

	// stalled runs each of writes while the group is held up behind the
	// blocker's heartbeat (sent alone, as nothing else waits then, and
	// stalled on a row lock the test holds), then lets it go.
	stalled := func(during func(), writes ...func()) {
		tx, err := pool.Begin(ctx)
		require.NoError(t, err)
		defer tx.Rollback(ctx) //nolint:errcheck
		_, err = tx.Exec(ctx, `SELECT 1 FROM ip2a_ops.runs WHERE id = $1 FOR UPDATE`, blocker.ID)
		require.NoError(t, err)
		hbErr := make(chan error, 1)
		go func() { hbErr <- lazy.Heartbeat(ctx, blocker.ID, nil, nil) }()
		require.Eventually(t, func() bool {
			var waiting int
			_ = pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting)
			return waiting == 1
		}, 10*time.Second, 10*time.Millisecond)
		var wg sync.WaitGroup
		for _, w := range writes {
			wg.Add(1)
			go func() { defer wg.Done(); w() }()
		}
		require.Eventually(t, func() bool {
			g.mu.Lock()
			defer g.mu.Unlock()
			return len(g.pending) == len(writes)
		}, 10*time.Second, 5*time.Millisecond, "every write waits behind the stalled one")
		during()
		require.NoError(t, tx.Rollback(ctx))
		require.NoError(t, <-hbErr)
		wg.Wait()
	}

	// 1. n ends in one transaction.
	runs := make([]Run, n)
	for i := range runs {
		runs[i] = start(fmt.Sprintf("job-%d", i))
	}
	errs := make([]error, n)
	var writes []func()
	for i, r := range runs {
		writes = append(writes, func() { errs[i] = base.LazyCommit().Finish(ctx, r.ID, Succeeded, 0, "", map[string]int{"i": i}) })
	}
	stalled(func() {}, writes...)
	for i, err := range errs {
		require.NoError(t, err, "run %d", i)
	}
	var txns, done int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(DISTINCT xmin::text), count(*) FROM ip2a_ops.runs WHERE job LIKE 'job-%' AND state = 'succeeded'`).Scan(&txns, &done))
	require.Equal(t, []int{n, 1}, []int{done, txns}, "the ends went in one transaction")

	// 2. A bad write in a group fails alone; a write taken back before it
	// was sent is never sent.
	good, bad, gaveUp := start("good"), start("bad"), start("gave-up")
	giveUp, cancel := context.WithCancel(ctx)
	var goodErr, badErr error
	gaveUpErr := make(chan error, 1)
	stalled(func() {
		cancel()
		require.ErrorIs(t, <-gaveUpErr, context.Canceled, "the caller has its write back at once")
	},
		func() { goodErr = lazy.Finish(ctx, good.ID, Succeeded, 0, "", nil) },
		func() { badErr = lazy.Finish(ctx, bad.ID, "bogus", 0, "", nil) }, // violates the state CHECK
		func() { gaveUpErr <- lazy.Finish(giveUp, gaveUp.ID, Succeeded, 0, "", nil) },
	)
	require.NoError(t, goodErr)
	require.Error(t, badErr)
	for _, c := range []struct {
		run   Run
		state string
	}{{good, Succeeded}, {bad, Running}, {gaveUp, Running}} {
		got, err := base.Get(ctx, c.run.ID)
		require.NoError(t, err)
		require.Equal(t, c.state, got.State, c.run.Job)
	}
}

// TestStartIsNotCutShort: a caller cancelled while its claim is on the
// server still gets the run the claim recorded (and can end it), instead
// of an error that leaves a running row no one finishes.
func TestStartIsNotCutShort(t *testing.T) {
	t.Parallel()
	l, pool := newLedger(t)
	ctx := t.Context()
	// Another session's uncommitted claim of the job makes this claim
	// wait for it on the unique index.
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx) //nolint:errcheck
	_, err = tx.Exec(ctx, `INSERT INTO ip2a_ops.runs (job, trigger, host, pid, state) VALUES ('nightly', 'cron', 'h', 1, 'running')`)
	require.NoError(t, err)
	cctx, cancel := context.WithCancel(ctx)
	type started struct {
		run Run
		err error
	}
	done := make(chan started, 1)
	go func() {
		r, err := l.Start(cctx, StartParams{Job: "nightly", Trigger: "manual", Host: "h", PID: 2})
		done <- started{r, err}
	}()
	require.Eventually(t, func() bool {
		var waiting int
		_ = pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting)
		return waiting == 1
	}, 10*time.Second, 10*time.Millisecond)
	cancel()
	select {
	case s := <-done:
		t.Fatalf("Start returned while its claim waited on the server: %+v", s)
	case <-time.After(200 * time.Millisecond):
	}
	require.NoError(t, tx.Rollback(ctx))
	s := <-done
	require.NoError(t, s.err)
	require.NoError(t, l.Finish(ctx, s.run.ID, Interrupted, exitcode.Interrupted, "interrupted", nil))
	got, err := l.Get(ctx, s.run.ID)
	require.NoError(t, err)
	require.Equal(t, Interrupted, got.State)
	_, err = l.Start(cctx, StartParams{Job: "nightly", Trigger: "manual", Host: "h", PID: 3})
	require.ErrorIs(t, err, context.Canceled, "a caller already cancelled claims nothing")
}
