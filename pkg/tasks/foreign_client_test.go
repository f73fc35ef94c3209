package tasks_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/pkg/tasks"
)

// insertLikePython is the statement riverqueue-python (SQLAlchemy driver)
// runs to insert a job: every name unqualified, so it finds River's tables,
// enum type and function only through the connection's search_path.
const insertLikePython = `INSERT INTO river_job (
	args, kind, max_attempts, metadata, priority, queue, scheduled_at, state, tags, unique_key, unique_states
) VALUES (
	$1::jsonb, $2::text, $3::smallint, '{}'::jsonb, $4::smallint, $5::text, coalesce($6::timestamptz, now()),
	$7::river_job_state, '{}'::varchar(255)[], nullif($8::bytea, ''), nullif($9::text, '')::bit(8)
)
ON CONFLICT (unique_key)
	WHERE unique_key IS NOT NULL AND unique_states IS NOT NULL AND river_job_state_in_bitmask(unique_states, state)
	DO UPDATE SET kind = EXCLUDED.kind
RETURNING id, (xmax != 0) AS unique_skipped_as_duplicate`

// uniqueStatesDefault is River's default unique states (available,
// completed, pending, retryable, running, scheduled) as the bit(8) string
// the Python client sends: bit 0 is scheduled ... bit 7 available.
const uniqueStatesDefault = "11110101"

// A client that is not River's Go client (riverqueue-python) inserts a task
// with plain SQL through unqualified names on its own connection; the one
// setting it needs is search_path naming ip2a-ops's schema. The Go worker
// then runs the task.
func TestForeignClientInsertRunsOnGoWorker(t *testing.T) {
	t.Parallel()
	pool := migratedPool(t)
	ctx := t.Context()
	svc, err := tasks.NewRiver(pool, tasks.RiverOptions{PollInterval: 200 * time.Millisecond, Handlers: tasks.Handlers{"echo": echo}})
	require.NoError(t, err)
	require.NoError(t, svc.Start(ctx))
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, svc.Stop(sctx, time.Second))
	})

	// The app's own connection: public only. The unqualified insert fails.
	plain, err := pgx.Connect(ctx, pool.Config().ConnString())
	require.NoError(t, err)
	defer plain.Close(ctx)
	_, err = plain.Exec(ctx, insertLikePython, `{}`, "echo", 5, 1, "default", nil, "available", nil, nil)
	require.ErrorContains(t, err, `relation "river_job" does not exist`)

	// The same statement on a connection whose search_path names ip2a_ops
	// (what SQLAlchemy's connect_args sets: options=-csearch_path=...).
	u, err := url.Parse(pool.Config().ConnString())
	require.NoError(t, err)
	q := u.Query()
	q.Set("options", "-csearch_path=ip2a_ops,public")
	u.RawQuery = q.Encode()
	conn, err := pgx.Connect(ctx, u.String())
	require.NoError(t, err)
	defer conn.Close(ctx)

	var id int64
	var dup bool
	require.NoError(t, conn.QueryRow(ctx, insertLikePython, `{"from":"python"}`, "echo", 5, 2, "default", nil, "available", nil, nil).Scan(&id, &dup))
	require.False(t, dup)
	r := waitState(t, svc, tasks.ID(id), tasks.StateCompleted)
	require.JSONEq(t, `{"got":{"from":"python"},"attempt":1}`, string(r.Output))
	require.Equal(t, 2, r.Priority)
	require.Equal(t, 5, r.MaxAttempts)

	// Unique inserts: the client computes River's key (sha256 of kind,
	// args with sorted keys, and the start of the period); the second
	// insert returns the first task, and so does the Go client's
	// Schedule with the same UniqueFor.
	later := time.Now().Add(time.Hour)
	period := later.Truncate(24 * time.Hour).UTC().Format(time.RFC3339)
	key := sha256.Sum256([]byte(`&kind=echo&args={"report":"grant"}&period=` + period))
	var id1, id2 int64
	var dup1, dup2 bool
	require.NoError(t, conn.QueryRow(ctx, insertLikePython, `{"report":"grant"}`, "echo", 5, 1, "default", later, "scheduled", key[:], uniqueStatesDefault).Scan(&id1, &dup1))
	require.NoError(t, conn.QueryRow(ctx, insertLikePython, `{"report":"grant"}`, "echo", 5, 1, "default", later, "scheduled", key[:], uniqueStatesDefault).Scan(&id2, &dup2))
	require.False(t, dup1)
	require.True(t, dup2)
	require.Equal(t, id1, id2)
	fromGo, err := svc.Schedule(ctx, "echo", later, json.RawMessage(`{"report": "grant"}`), tasks.EnqueueOptions{UniqueFor: 24 * time.Hour})
	require.NoError(t, err)
	require.Equal(t, tasks.Enqueued{ID: tasks.ID(id1), Duplicate: true}, fromGo)
	r, err = svc.Status(ctx, tasks.ID(id1))
	require.NoError(t, err)
	require.Equal(t, tasks.StateScheduled, r.State)

	// Reading a task's status from SQL, as the app would.
	var state string
	var output json.RawMessage
	require.NoError(t, conn.QueryRow(ctx, `SELECT state, metadata->'output' FROM river_job WHERE id = $1`, id).Scan(&state, &output))
	require.Equal(t, "completed", state)
	require.JSONEq(t, `{"got":{"from":"python"},"attempt":1}`, string(output))
}
