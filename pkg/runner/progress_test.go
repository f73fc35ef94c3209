package runner

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/internal/pgtest"
	"github.com/ip2a/ip2a-ops/pkg/ledger"
	"github.com/ip2a/ip2a-ops/pkg/migrate"
	"github.com/ip2a/ip2a-ops/pkg/progress"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestHeartbeatCarriesProgress runs a job that counts through two phases
// and watches it from a second ledger (another connection, as `jobs status`
// in another process would): the stored progress rises between heartbeats,
// and the finished run keeps where it stopped.
func TestHeartbeatCarriesProgress(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDatabase(t)
	pool, err := pgxpool.New(t.Context(), url)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	_, err = migrate.Up(t.Context(), pool, migrate.DefaultSchema)
	require.NoError(t, err)
	watcherPool, err := pgxpool.New(t.Context(), url)
	require.NoError(t, err)
	t.Cleanup(watcherPool.Close)
	watcher := ledger.New(watcherPool, migrate.DefaultSchema)

	rn := &Runner{Ledger: ledger.New(pool, migrate.DefaultSchema), Host: "h", PID: 1, HeartbeatEvery: 20 * time.Millisecond}
	step := make(chan int64)
	seen := make(chan struct{})
	done := make(chan Report)
	go func() {
		done <- rn.Execute(t.Context(), Spec{Job: "backup", Trigger: "manual"}, func(ctx context.Context, run *Run) (any, error) {
			run.Progress.Phase("dump", progress.Bytes, 1000)
			for n := range step {
				run.Progress.Add(n)
				<-seen
			}
			run.Progress.Phase("verify", progress.Tables, 3)
			run.Progress.Add(2)
			return map[string]int{"tables": 3}, nil
		})
	}()

	var last int64 = -1
	for _, n := range []int64{100, 300, 400} {
		step <- n
		// Poll until the stored progress shows this step's total.
		want := last + n
		if last < 0 {
			want = n
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			st, err := watcher.Status(t.Context())
			require.NoError(t, err)
			if len(st) == 1 && st[0].Running != nil && st[0].Running.Progress != nil && st[0].Running.Progress.Done == want {
				p := st[0].Running.Progress
				require.Equal(t, "dump", p.Phase)
				require.Equal(t, progress.Bytes, p.Unit)
				require.Equal(t, int64(1000), p.Total)
				require.Greater(t, p.Done, last)
				last = p.Done
				break
			}
			require.True(t, time.Now().Before(deadline), "progress %d never stored", want)
			time.Sleep(5 * time.Millisecond)
		}
		seen <- struct{}{}
	}
	close(step)
	rep := <-done
	require.NoError(t, rep.Err)
	r, err := watcher.Get(t.Context(), rep.RunID)
	require.NoError(t, err)
	require.Equal(t, ledger.Succeeded, r.State)
	require.NotNil(t, r.Progress)
	require.Equal(t, "verify", r.Progress.Phase)
	require.Equal(t, int64(2), r.Progress.Done, "the final progress, not the last heartbeat's")
}
