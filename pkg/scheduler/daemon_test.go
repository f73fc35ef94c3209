package scheduler

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/internal/pgtest"
	"github.com/ip2a/ip2a-ops/pkg/migrate"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func newClaims(t *testing.T) *Claims {
	t.Helper()
	pool, err := pgxpool.New(t.Context(), pgtest.NewDatabase(t))
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	_, err = migrate.Up(t.Context(), pool, migrate.DefaultSchema)
	require.NoError(t, err)
	return NewClaims(pool, migrate.DefaultSchema)
}

func crontab(t *testing.T, src string) *Crontab {
	t.Helper()
	ct, err := Parse(strings.NewReader(src), testResolve)
	require.NoError(t, err)
	return ct
}

// fakeClock moves only when told; After channels fire when it passes them.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []fakeWaiter
}

type fakeWaiter struct {
	at time.Time
	ch chan time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, fakeWaiter{c.now.Add(d), ch})
	return ch
}

// Set moves the clock (either way) and fires every waiter it passes.
func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
	keep := c.waiters[:0]
	for _, w := range c.waiters {
		if !w.at.After(t) {
			w.ch <- t
		} else {
			keep = append(keep, w)
		}
	}
	c.waiters = keep
}

// Jump wakes the daemon at t whatever it waits for, as a resume from sleep
// or a wall-clock step does (the real daemon notices within MaxWait).
func (c *fakeClock) Jump(t time.Time) {
	c.mu.Lock()
	c.now = t
	ws := c.waiters
	c.waiters = nil
	c.mu.Unlock()
	for _, w := range ws {
		w.ch <- t
	}
}

func (c *fakeClock) waiting() int { c.mu.Lock(); defer c.mu.Unlock(); return len(c.waiters) }

// recorder is a RunFunc that records what it was asked to run.
type recorder struct {
	mu    sync.Mutex
	calls []RunRequest
	fn    func(ctx context.Context, req RunRequest) int
}

func (r *recorder) run(ctx context.Context, req RunRequest) int {
	r.mu.Lock()
	r.calls = append(r.calls, req)
	fn := r.fn
	r.mu.Unlock()
	if fn != nil {
		return fn(ctx, req)
	}
	return 0
}

func (r *recorder) got() []RunRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]RunRequest(nil), r.calls...)
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// settled reports whether the daemon has finished its pass over the due
// slots (it waits on the clock again) and every run it started in it has
// returned. A test waits for this, not for a count, before asserting what
// the pass did: a run is started in a goroutine, so a count can be reached
// while a later entry of the same pass is still being fired.
func settled(clk *fakeClock, st *started) bool {
	if clk.waiting() == 0 {
		return false
	}
	for _, j := range st.stats.Snapshot().Jobs {
		if j.Running > 0 {
			return false
		}
	}
	return true
}

type started struct {
	cancel context.CancelFunc
	done   chan Result
	stats  *Stats
	once   sync.Once
	res    Result
}

// stop cancels the daemon and returns its result (any number of times).
func (s *started) stop() Result {
	s.cancel()
	s.once.Do(func() { s.res = <-s.done })
	return s.res
}

func startDaemon(t *testing.T, o Options) *started {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	if o.Stats == nil {
		o.Stats = &Stats{}
	}
	s := &started{cancel: cancel, done: make(chan Result, 1), stats: o.Stats}
	go func() {
		res, err := RunDaemon(ctx, o)
		if err != nil {
			t.Errorf("RunDaemon: %v", err)
		}
		s.done <- res
	}()
	t.Cleanup(func() { s.stop() })
	return s
}

func slotsOf(calls []RunRequest) []string {
	out := make([]string, len(calls))
	for i, c := range calls {
		out[i] = c.Entry.Job + " " + c.Slot.UTC().Format(time.RFC3339) + " " + c.Kind
	}
	return out
}

// TestDaemonThreeReplicasRunEachSlotOnce runs three daemons on one database
// with two fast entries for a few seconds: every slot between the first and
// the last runs exactly once, whichever daemon won it.
func TestDaemonThreeReplicasRunEachSlotOnce(t *testing.T) {
	t.Parallel()
	claims := newClaims(t)
	ct := crontab(t, "@every 1s ip2a-ops sleep-job --job-name a\n@every 1s ip2a-ops sleep-job --job-name b\n")
	rec := &recorder{}
	var all []*Stats
	var daemons []*started
	for i := 0; i < 3; i++ {
		st := startDaemon(t, Options{Crontab: ct, Claims: claims, Run: rec.run, Host: "replica", PID: i})
		all = append(all, st.stats)
		daemons = append(daemons, st)
	}
	lost := func() int64 {
		var n int64
		for _, s := range all {
			for _, j := range s.Snapshot().Jobs {
				n += j.Slots[SlotLost]
			}
		}
		return n
	}
	eventually(t, "8 runs and a slot another replica won", func() bool { return len(rec.got()) >= 8 && lost() > 0 })
	// Stopped, each daemon has waited for its runs: every slot claimed so
	// far is in the recorder, whatever the machine's speed.
	for _, st := range daemons {
		st.stop()
	}
	calls := rec.got()
	seen := map[string]int{}
	first, last := map[string]time.Time{}, map[string]time.Time{}
	for _, c := range calls {
		k := c.Entry.Job + c.Slot.Format(time.RFC3339)
		seen[k]++
		require.Equal(t, 1, seen[k], "slot %s ran twice", k)
		if f, ok := first[c.Entry.Job]; !ok || c.Slot.Before(f) {
			first[c.Entry.Job] = c.Slot
		}
		if c.Slot.After(last[c.Entry.Job]) {
			last[c.Entry.Job] = c.Slot
		}
	}
	for _, job := range []string{"a", "b"} {
		for s := first[job]; !s.After(last[job]); s = s.Add(time.Second) {
			require.Equal(t, 1, seen[job+s.Format(time.RFC3339)], "slot %s of %s missing", s, job)
		}
	}
	require.Positive(t, lost(), "the other replicas saw the slots claimed")
}

// TestDaemonCatchUpAfterDowntime starts a daemon long after the last slots
// (fake clock): backup (24h window) and audit-archive (once) run their
// latest missed slot once, grant-report (none) does not; after a 3-day
// sleep only the latest backup slot runs, and a job that ran meanwhile by
// hand is not caught up.
func TestDaemonCatchUpAfterDowntime(t *testing.T) {
	t.Parallel()
	claims := newClaims(t)
	ct := crontab(t, `0 2 * * * ip2a-ops backup
0 3 * * * ip2a-ops grant-report
0 0 1 * * ip2a-ops audit-archive
0 4 * * * ip2a-ops cleanup # ip2a-ops: catchup=12h
`)
	clk := &fakeClock{now: utc("2026-03-10T12:00:00Z")}
	rec := &recorder{}
	st := startDaemon(t, Options{Crontab: ct, Claims: claims, Run: rec.run, Clock: clk})
	eventually(t, "start-up catch-up", func() bool { return settled(clk, st) })
	require.ElementsMatch(t, []string{
		"backup 2026-03-10T02:00:00Z catchup", "audit-archive 2026-03-01T00:00:00Z catchup", "cleanup 2026-03-10T04:00:00Z catchup",
	}, slotsOf(rec.got()))

	// A person runs grant-report... irrelevant; a manual backup on 12 March
	// covers that day's slot.
	_, err := claims.Pool().Exec(t.Context(), `INSERT INTO ip2a_ops.runs (job, trigger, host, pid, state, started_at, finished_at, exit_code)
		VALUES ('backup', 'manual', 'laptop', 1, 'succeeded', '2026-03-12T09:00:00Z', '2026-03-12T09:05:00Z', 0)`)
	require.NoError(t, err)
	clk.Jump(utc("2026-03-12T10:00:00Z")) // asleep for two days
	eventually(t, "resume", func() bool { return settled(clk, st) })
	require.Equal(t, int64(1), st.stats.Snapshot().Jobs["backup"].Slots[SlotAlready], "12 March's backup slot is covered by the manual run")
	require.Len(t, rec.got(), 4, "cleanup's 11 March 04:00 slot is 30h late: missed; 12 March's is 6h late: caught up")
	require.Equal(t, "cleanup 2026-03-12T04:00:00Z catchup", slotsOf(rec.got())[3])
	snap := st.stats.Snapshot()
	require.Equal(t, int64(1), snap.Jobs["backup"].Slots[SlotMissed], "11 March's backup slot is dropped, not flooded")
	require.Equal(t, int64(2), snap.Jobs["grant-report"].Slots[SlotMissed])

	// On time from here on: 13 March 02:00 runs as scheduled.
	clk.Set(utc("2026-03-13T02:00:00Z"))
	eventually(t, "on-time backup", func() bool { return settled(clk, st) })
	require.Len(t, rec.got(), 5)
	require.Equal(t, "backup 2026-03-13T02:00:00Z scheduled", slotsOf(rec.got())[4])

	// A restart does not repeat what ran.
	st.stop()
	rec2 := &recorder{}
	clk2 := &fakeClock{now: utc("2026-03-13T02:30:00Z")}
	st2 := startDaemon(t, Options{Crontab: ct, Claims: claims, Run: rec2.run, Clock: clk2})
	eventually(t, "restart settles", func() bool { return settled(clk2, st2) })
	require.Empty(t, rec2.got())
	require.Equal(t, int64(1), st2.stats.Snapshot().Jobs["backup"].Slots[SlotLost]+st2.stats.Snapshot().Jobs["backup"].Slots[SlotAlready])
}

// TestDaemonClockBackwardsDoesNotRepeat: after the wall clock steps back an
// hour, slots come round again but are already claimed.
func TestDaemonClockBackwardsDoesNotRepeat(t *testing.T) {
	t.Parallel()
	claims := newClaims(t)
	ct := crontab(t, "*/10 * * * * ip2a-ops cleanup\n")
	clk := &fakeClock{now: utc("2026-05-01T10:00:30Z")}
	rec := &recorder{}
	st := startDaemon(t, Options{Crontab: ct, Claims: claims, Run: rec.run, Clock: clk})
	for _, at := range []string{"2026-05-01T10:10:00Z", "2026-05-01T10:20:00Z"} {
		eventually(t, "waiting", func() bool { return settled(clk, st) })
		clk.Set(utc(at))
	}
	eventually(t, "10:20 ran", func() bool { return settled(clk, st) })
	require.Len(t, rec.got(), 3)
	clk.Jump(utc("2026-05-01T10:05:00Z"))
	for _, at := range []string{"2026-05-01T10:10:00Z", "2026-05-01T10:20:00Z", "2026-05-01T10:30:00Z"} {
		eventually(t, "waiting", func() bool { return settled(clk, st) })
		clk.Set(utc(at))
	}
	eventually(t, "10:30 ran", func() bool { return settled(clk, st) })
	require.Equal(t, []string{
		"cleanup 2026-05-01T10:00:00Z scheduled", "cleanup 2026-05-01T10:10:00Z scheduled",
		"cleanup 2026-05-01T10:20:00Z scheduled", "cleanup 2026-05-01T10:30:00Z scheduled",
	}, slotsOf(rec.got()))
}

// TestDaemonOverlap: with the job still running, a skip entry starts the
// slot anyway (the runner records it skipped) and counts it; a queue entry
// holds one slot until the run ends and skips the next.
func TestDaemonOverlap(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		opt     string
		calls   int
		counter string // what the slot at 10:05 counts as
	}{
		{"skip", "", 3, SlotSkipped},
		{"queue", " # ip2a-ops: overlap=queue", 3, SlotQueued},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			claims := newClaims(t)
			ct := crontab(t, "*/5 * * * * ip2a-ops backup"+tt.opt+"\n")
			clk := &fakeClock{now: utc("2026-05-01T10:00:01Z")}
			release := make(chan struct{})
			rec := &recorder{}
			first := true
			rec.fn = func(ctx context.Context, req RunRequest) int {
				rec.mu.Lock()
				block := first
				first = false
				rec.mu.Unlock()
				if block {
					select {
					case <-release:
						return 0
					case <-ctx.Done():
						return 130
					}
				}
				return 4 // what the runner returns while the job is busy
			}
			st := startDaemon(t, Options{Crontab: ct, Claims: claims, Run: rec.run, Clock: clk})
			eventually(t, "first run", func() bool { return len(rec.got()) == 1 && clk.waiting() > 0 })
			clk.Set(utc("2026-05-01T10:05:00Z"))
			eventually(t, "waiting", func() bool { return clk.waiting() > 0 && st.stats.Snapshot().Jobs["backup"].Slots[tt.counter] >= 1 })
			clk.Set(utc("2026-05-01T10:10:00Z"))
			eventually(t, "waiting", func() bool { return clk.waiting() > 0 && len(rec.got()) >= tt.calls-1 })
			close(release)
			// A queued slot starts as the first run ends, so settled alone
			// can hold for a moment before it: wait for its call as well.
			eventually(t, "all calls", func() bool { return settled(clk, st) && len(rec.got()) >= tt.calls })
			require.Len(t, rec.got(), tt.calls)
			snap := st.stats.Snapshot().Jobs["backup"]
			if tt.name == "skip" {
				require.Equal(t, int64(2), snap.Slots[SlotSkipped], "both slots during the run are started and skipped")
				require.Equal(t, int64(2), snap.Outcomes[OutcomeSkipped])
				return
			}
			require.Equal(t, int64(1), snap.Slots[SlotQueued])
			require.Equal(t, int64(1), snap.Slots[SlotSkipped], "a second slot while one waits is skipped, not queued")
			require.Equal(t, []string{"backup 2026-05-01T10:00:00Z scheduled", "backup 2026-05-01T10:10:00Z scheduled", "backup 2026-05-01T10:05:00Z scheduled"},
				slotsOf(rec.got()), "the queued slot runs when the first run ends")
		})
	}
}

// TestDaemonPanicIsAFailedRun: a panicking job is counted failed and later
// slots still run.
func TestDaemonPanicIsAFailedRun(t *testing.T) {
	t.Parallel()
	claims := newClaims(t)
	clk := &fakeClock{now: utc("2026-05-01T10:00:01Z")}
	rec := &recorder{fn: func(ctx context.Context, req RunRequest) int {
		if req.Slot.Minute() == 0 {
			panic("boom")
		}
		return 0
	}}
	st := startDaemon(t, Options{Crontab: crontab(t, "* * * * * ip2a-ops cleanup\n"), Claims: claims, Run: rec.run, Clock: clk})
	eventually(t, "first", func() bool { return settled(clk, st) })
	clk.Set(utc("2026-05-01T10:01:00Z"))
	eventually(t, "second", func() bool { return settled(clk, st) })
	require.Len(t, rec.got(), 2)
	snap := st.stats.Snapshot()
	require.Equal(t, int64(1), snap.Jobs["cleanup"].Outcomes[OutcomeSucceeded])
	require.Equal(t, int64(1), snap.Panics)
	require.Equal(t, int64(1), snap.Jobs["cleanup"].Outcomes[OutcomeFailed])
}

// TestDaemonShutdown: on cancel the daemon waits for running jobs up to
// ShutdownTimeout, then cancels them; a job that finishes in time is not.
func TestDaemonShutdown(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		jobTakes  time.Duration
		cancelled int
	}{
		{"finishes in time", 50 * time.Millisecond, 0},
		{"cancelled at the timeout", time.Hour, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			claims := newClaims(t)
			clk := &fakeClock{now: utc("2026-05-01T10:00:01Z")}
			running := make(chan struct{})
			var got int
			rec := &recorder{fn: func(ctx context.Context, req RunRequest) int {
				close(running)
				select {
				case <-time.After(tt.jobTakes):
					got = 0
				case <-ctx.Done():
					got = 130
				}
				return got
			}}
			st := startDaemon(t, Options{Crontab: crontab(t, "@hourly ip2a-ops cleanup\n"), Claims: claims, Run: rec.run, Clock: clk, ShutdownTimeout: time.Minute})
			<-running
			eventually(t, "the loop waits", func() bool { return clk.waiting() == 1 })
			stopped := make(chan Result, 1)
			go func() { stopped <- st.stop() }()
			if tt.cancelled > 0 {
				// The drain waits on the daemon's clock: a minute passes
				// for it at once, not for the test.
				eventually(t, "the drain waits", func() bool { return clk.waiting() == 2 })
				clk.Set(clk.Now().Add(time.Minute))
			}
			res := <-stopped
			require.Equal(t, tt.cancelled, res.Cancelled)
			require.Equal(t, int64(1), res.Started)
			want := OutcomeSucceeded
			if tt.cancelled > 0 {
				want = OutcomeInterrupted
			}
			require.Equal(t, int64(1), st.stats.Snapshot().Jobs["cleanup"].Outcomes[want])
		})
	}
}

// TestDaemonReload: a reload swaps the entries; a bad file keeps the old.
func TestDaemonReload(t *testing.T) {
	t.Parallel()
	claims := newClaims(t)
	clk := &fakeClock{now: utc("2026-05-01T10:00:30Z")}
	rec := &recorder{}
	reload := make(chan struct{})
	next := "*/5 * * * * ip2a-ops integrity-check\n"
	load := func() (*Crontab, error) { return Parse(strings.NewReader(next), testResolve) }
	st := startDaemon(t, Options{Crontab: crontab(t, "*/5 * * * * ip2a-ops cleanup\n"), Claims: claims, Run: rec.run, Clock: clk, Load: load, Reload: reload})
	eventually(t, "start", func() bool { return len(rec.got()) == 1 && clk.waiting() > 0 })
	reload <- struct{}{}
	eventually(t, "reloaded", func() bool { return st.stats.Snapshot().Reloads == 1 && clk.waiting() > 0 })
	next = "not a crontab\n"
	reload <- struct{}{}
	eventually(t, "waiting", func() bool { return clk.waiting() > 1 })
	clk.Set(utc("2026-05-01T10:05:00Z"))
	eventually(t, "integrity-check runs", func() bool { return len(rec.got()) == 2 })
	require.Equal(t, []string{"cleanup 2026-05-01T10:00:00Z scheduled", "integrity-check 2026-05-01T10:05:00Z scheduled"}, slotsOf(rec.got()))
	require.Equal(t, int64(1), st.stats.Snapshot().Reloads)
}
