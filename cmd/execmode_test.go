package cmd

import (
	"encoding/json"
	"net"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/internal/fixturetest"
	"github.com/ip2a/ip2a-ops/internal/pgbouncertest"
	"github.com/ip2a/ip2a-ops/internal/pgtest"
	"github.com/ip2a/ip2a-ops/pkg/fixture"
)

// A job (cleanup) runs through the ledger and queues its undelivered ping
// in the notification outbox in every exec mode, and the ledger's summary
// and the outbox's event read back whole: every JSON value the binary binds
// is sent as text with an explicit type. A task's args go through River's
// queries in every mode too.
func TestJobInEveryExecMode(t *testing.T) {
	t.Parallel()
	db := fixturetest.NewTestDB(t, fixture.Newer, fixture.Options{Members: 20, Users: 10, AuditRowsPerMonth: 2})
	admin := pgtest.Pool(t, db)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	down := ln.Addr().String()
	require.NoError(t, ln.Close())
	for _, mode := range pgbouncertest.ExecModes {
		t.Run(mode, func(t *testing.T) {
			c := cli{t: t, env: map[string]string{
				"DATABASE_URL":          pgbouncertest.WithParam(db, "default_query_exec_mode", mode),
				"IP2A_OPS_LOG_FORMAT":   "json",
				"IP2A_OPS_AUTO_MIGRATE": "1",
				"IP2A_OPS_TRIGGER":      "manual",
				"IP2A_OPS_PING_URL":     "http://" + down + "/ping/" + mode,
			}}
			code, out, stderr := c.run("cleanup", "--json")
			require.Equal(t, 0, code, stderr)
			var run struct {
				RunID   int64           `json:"run_id"`
				State   string          `json:"state"`
				Summary json.RawMessage `json:"summary"`
			}
			require.NoError(t, json.Unmarshal([]byte(out), &run), out)
			require.Equal(t, "succeeded", run.State)
			require.Contains(t, stderr, "notification failed; queued for the next run")

			code, out, stderr = c.run("jobs", "show", strconv.FormatInt(run.RunID, 10), "--json")
			require.Equal(t, 0, code, stderr)
			var shown struct {
				Args    []string        `json:"args"`
				Summary json.RawMessage `json:"summary"`
			}
			require.NoError(t, json.Unmarshal([]byte(out), &shown), out)
			require.Equal(t, []string{"cleanup", "--json"}, shown.Args)
			require.JSONEq(t, string(run.Summary), string(shown.Summary))

			code, out, stderr = c.run("notify", "list", "--json")
			require.Equal(t, 0, code, stderr)
			var list struct {
				Notifications []struct {
					RunID   int64  `json:"run_id"`
					Channel string `json:"channel"`
					State   string `json:"state"`
				} `json:"notifications"`
			}
			require.NoError(t, json.Unmarshal([]byte(out), &list), out)
			found := false
			for _, q := range list.Notifications {
				found = found || (q.RunID == run.RunID && q.Channel == "ping" && q.State == "pending")
			}
			require.True(t, found, "the finish ping of run %d is queued: %s", run.RunID, out)
			var job, state string
			require.NoError(t, admin.QueryRow(t.Context(), `SELECT event->>'job', event->>'state' FROM ip2a_ops.notifications
				WHERE run_id = $1`, run.RunID).Scan(&job, &state))
			require.Equal(t, []string{"cleanup", "succeeded"}, []string{job, state})

			// The task queue's JSON (River's own queries) too.
			code, out, stderr = c.run("tasks", "enqueue", "test.sleep", "--in", "1h", "--args", `{"seconds": 1, "note": "é \" q"}`, "--json")
			require.Equal(t, 0, code, stderr)
			var queued struct {
				ID int64 `json:"id"`
			}
			require.NoError(t, json.Unmarshal([]byte(out), &queued), out)
			code, out, stderr = c.run("tasks", "status", strconv.FormatInt(queued.ID, 10), "--json")
			require.Equal(t, 4, code, stderr) // scheduled: not finished
			require.Contains(t, out, `"note": "é \" q"`)
		})
	}
}
