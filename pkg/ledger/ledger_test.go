package ledger

import (
	"errors"
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
