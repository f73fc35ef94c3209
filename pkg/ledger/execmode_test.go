package ledger

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/internal/pgbouncertest"
	"github.com/ip2a/ip2a-ops/internal/pgtest"
	"github.com/ip2a/ip2a-ops/pkg/migrate"
	"github.com/ip2a/ip2a-ops/pkg/progress"
)

// Every ledger call works in every exec mode: a claim, a skipped run that
// met it, heartbeats with and without a summary, the end, and reading back
// arguments and summaries byte for byte.
func TestLedgerInEveryExecMode(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDatabase(t)
	admin := pgtest.Pool(t, db)
	_, err := migrate.Up(t.Context(), admin, migrate.DefaultSchema)
	require.NoError(t, err)
	for _, mode := range pgbouncertest.ExecModes {
		for _, lazy := range []bool{false, true} {
			name := mode
			if lazy {
				name += "/lazy" // a worker's ledger: LazyCommit sends each write in a batch
			}
			t.Run(name, func(t *testing.T) { ledgerInMode(t, db, mode, name, lazy) })
		}
	}
}

func ledgerInMode(t *testing.T, db, mode, name string, lazy bool) {
	pool, err := pgxpool.New(t.Context(), pgbouncertest.WithParam(db, "default_query_exec_mode", mode))
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	l := New(pool, migrate.DefaultSchema)
	if lazy {
		l = l.LazyCommit()
	}
	ctx := t.Context()
	job := "job-" + name
	args := []string{"backup", "--note", `quote " backslash \ é`, "{}"}
	r, err := l.Start(ctx, StartParams{Job: job, Trigger: "manual", Host: "h", PID: 1, Args: args})
	require.NoError(t, err)
	require.Equal(t, args, r.Args)

	_, err = l.Start(ctx, StartParams{Job: job, Trigger: "cron", Host: "h2", PID: 2, Args: []string{}})
	var busy *BusyError
	require.True(t, errors.As(err, &busy), "%v", err)
	require.Equal(t, r.ID, busy.Holder.ID)
	require.Equal(t, Skipped, busy.Skipped.State)

	require.NoError(t, l.Heartbeat(ctx, r.ID, nil, nil))
	prog := &progress.State{Phase: "dump", Done: 3, Total: 10, PhaseStarted: time.Now().UTC().Truncate(time.Second)}
	require.NoError(t, l.Heartbeat(ctx, r.ID, map[string]any{"rows": 1, "stage": "dump"}, prog))
	got, err := l.Get(ctx, r.ID)
	require.NoError(t, err)
	require.JSONEq(t, `{"rows": 1, "stage": "dump"}`, string(got.Summary))
	require.NotNil(t, got.Progress)
	require.Equal(t, int64(3), got.Progress.Done)
	require.Equal(t, "dump", got.Progress.Phase)

	// No summary at the end keeps the heartbeat's.
	require.NoError(t, l.Finish(ctx, r.ID, Failed, 1, "boom", nil))
	got, err = l.Get(ctx, r.ID)
	require.NoError(t, err)
	require.JSONEq(t, `{"rows": 1, "stage": "dump"}`, string(got.Summary))

	r2, err := l.Start(ctx, StartParams{Job: job, Trigger: "manual", Host: "h", PID: 3, StaleAfter: time.Minute})
	require.NoError(t, err)
	sum := struct {
		Text  string          `json:"text"`
		Raw   json.RawMessage `json:"raw"`
		Items []int           `json:"items"`
	}{"ünïcödé \u2028 'q'", json.RawMessage(`{"nested":[true,null]}`), []int{1, 2}}
	require.NoError(t, l.Finish(ctx, r2.ID, Succeeded, 0, "", sum))
	hist, err := l.History(ctx, HistoryFilter{Job: job})
	require.NoError(t, err)
	require.Len(t, hist, 3)
	require.Equal(t, Succeeded, hist[0].State)
	want, _ := json.Marshal(sum)
	require.JSONEq(t, string(want), string(hist[0].Summary))
	require.Equal(t, args, hist[2].Args)

	st, err := l.Status(ctx)
	require.NoError(t, err)
	found := false
	for _, s := range st {
		if s.Job == job {
			found = true
			require.EqualValues(t, 3, s.Runs) // the skipped row counts too
			require.Nil(t, s.Running)
		}
	}
	require.True(t, found)
}

// TestLazyCommitBehindPgBouncer: through a transaction pool of one server
// connection, every exec mode: the lazy writes work, and the next client
// of that connection commits synchronously (nothing leaked to it).
func TestLazyCommitBehindPgBouncer(t *testing.T) {
	t.Parallel()
	b := pgbouncertest.Start(t, pgbouncertest.Options{PoolSize: 1})
	db := pgtest.NewDatabase(t)
	_, err := migrate.Up(t.Context(), pgtest.Pool(t, db), migrate.DefaultSchema)
	require.NoError(t, err)
	for _, mode := range pgbouncertest.ExecModes {
		pool, err := pgxpool.New(t.Context(), pgbouncertest.WithParam(b.URL(db), "default_query_exec_mode", mode))
		require.NoError(t, err)
		l := New(pool, migrate.DefaultSchema).LazyCommit()
		r, err := l.Start(t.Context(), StartParams{Job: "pooled-" + mode, Trigger: "queue", Host: "h", PID: 1, TaskID: 1})
		require.NoError(t, err, mode)
		require.NoError(t, l.Finish(t.Context(), r.ID, Succeeded, 0, "", map[string]string{"mode": mode}), mode)
		var setting string
		require.NoError(t, pool.QueryRow(t.Context(), `SELECT current_setting('synchronous_commit')`).Scan(&setting))
		require.Equal(t, "on", setting, mode)
		got, err := l.Get(t.Context(), r.ID)
		require.NoError(t, err)
		require.Equal(t, Succeeded, got.State, mode)
		pool.Close()
	}
}
