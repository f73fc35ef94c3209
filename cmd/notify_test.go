package cmd

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/internal/pgtest"
	"github.com/ip2a/ip2a-ops/pkg/notify"
)

type hit struct{ Path, Query, Body string }

type hits struct {
	mu   sync.Mutex
	list []hit
}

func (h *hits) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	h.list = append(h.list, hit{r.URL.Path, r.URL.RawQuery, string(b)})
	h.mu.Unlock()
}

func (h *hits) take() []hit {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := h.list
	h.list = nil
	return out
}

// cli runs ip2a-ops in-process with env on top of DATABASE_URL.
type cli struct {
	t   *testing.T
	env map[string]string
}

func (c cli) run(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = Run(context.WithoutCancel(c.t.Context()), args, Env{Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return c.env[k] }})
	return code, out.String(), errb.String()
}

// TestJobsNotifyThroughTheRunner runs real jobs through the CLI against
// loopback endpoints: pings at start and end with the run's id, a webhook on
// failure, an endpoint that is down (the job's exit code is unchanged, the
// notification is queued) and then back (the next run of another job
// delivers it), and no token in the ledger, the logs or the outbox.
func TestJobsNotifyThroughTheRunner(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDatabase(t)
	rec := &hits{}
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)
	c := cli{t: t, env: map[string]string{
		"DATABASE_URL":            url,
		"IP2A_OPS_LOG_FORMAT":     "json",
		"IP2A_OPS_AUTO_MIGRATE":   "1",
		"IP2A_OPS_PING_URL":       srv.URL + "/ping/key-abc/{job}",
		"IP2A_OPS_WEBHOOK_URL":    srv.URL + "/hook/tok-def",
		"IP2A_OPS_TRIGGER":        "cron",
		"IP2A_OPS_NOTIFY_TIMEOUT": "2s",
	}}

	code, out, stderr := c.run("sleep-job", "--for", "1ms", "--json")
	require.Equal(t, 0, code, stderr)
	var doc struct {
		RunID int64 `json:"run_id"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &doc))
	rid := "rid=" + notify.RunUUID("sleep", doc.RunID)
	got := rec.take()
	require.Len(t, got, 2)
	require.Equal(t, hit{"/ping/key-abc/sleep/start", rid, got[0].Body}, got[0])
	require.Equal(t, hit{"/ping/key-abc/sleep", rid, got[1].Body}, got[1])
	require.Contains(t, got[1].Body, "state=succeeded exit_code=0")

	// A run past --max-runtime fails: ping /1 and the webhook.
	code, out, stderr = c.run("--max-runtime", "50ms", "sleep-job", "--for", "1m", "--json")
	require.Equal(t, 1, code, stderr)
	require.NoError(t, json.Unmarshal([]byte(out), &doc))
	got = rec.take()
	require.Len(t, got, 3)
	require.Equal(t, "/ping/key-abc/sleep/start", got[0].Path)
	require.Equal(t, "/ping/key-abc/sleep/1", got[1].Path)
	require.Equal(t, "/hook/tok-def", got[2].Path)
	var p notify.WebhookPayload
	require.NoError(t, json.Unmarshal([]byte(got[2].Body), &p))
	require.Equal(t, "sleep", p.Job)
	require.Equal(t, doc.RunID, p.RunID)
	require.Equal(t, "failed", p.State)
	require.Equal(t, 1, p.ExitCode)
	require.Contains(t, p.Error, "maximum runtime")
	require.Equal(t, "cron", p.Trigger)
	require.NotNil(t, p.FinishedAt)

	// The webhook goes down: the job's outcome does not change, the alert is kept.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	down := ln.Addr().String()
	require.NoError(t, ln.Close())
	c.env["IP2A_OPS_WEBHOOK_URL_SLEEP"] = "http://" + down + "/hook/tok-ghi"
	code, _, stderr = c.run("--max-runtime", "50ms", "sleep-job", "--for", "1m", "--ping-url", srv.URL+"/flag-ping/key-jkl")
	require.Equal(t, 1, code, stderr)
	require.Contains(t, stderr, "notification failed; queued for the next run")
	got = rec.take()
	require.Equal(t, "/flag-ping/key-jkl/start", got[0].Path, "the flag wins over the env")
	code, out, _ = c.run("notify", "list", "--state", "pending", "--json")
	require.Equal(t, 0, code)
	require.Contains(t, out, `"channel": "webhook"`)
	require.Contains(t, out, `"target": "http://`+down+`/..."`)

	// Back up: the next run of any job (after the backoff) delivers it.
	back := &hits{}
	ln, err = net.Listen("tcp", down)
	require.NoError(t, err)
	srv2 := httptest.NewUnstartedServer(back)
	srv2.Listener.Close()
	srv2.Listener = ln
	srv2.Start()
	t.Cleanup(srv2.Close)
	pool, err := pgxpool.New(t.Context(), url)
	require.NoError(t, err)
	defer pool.Close()
	_, err = pool.Exec(t.Context(), `UPDATE ip2a_ops.notifications SET next_attempt_at = now()`)
	require.NoError(t, err)
	code, _, stderr = c.run("sleep-job", "--job-name", "other", "--for", "1ms")
	require.Equal(t, 0, code, stderr)
	delivered := back.take()
	require.Len(t, delivered, 1)
	require.Equal(t, "/hook/tok-ghi", delivered[0].Path)
	require.Contains(t, delivered[0].Body, `"state":"failed"`)
	code, out, _ = c.run("notify", "list")
	require.Equal(t, 0, code)
	require.Regexp(t, `sleep +\d+ +webhook +http://127\.0\.0\.1:\d+/... +delivered +2`, out)

	// No token anywhere: the ledger, the logs, the outbox. (Ledger args are
	// os.Args, redacted by runner.RedactArgs, which knows --ping-url.)
	code, out, _ = c.run("jobs", "history", "--json", "--limit", "100")
	require.Equal(t, 0, code)
	var dump string
	require.NoError(t, pool.QueryRow(t.Context(), `SELECT string_agg(n::text, ' ') FROM ip2a_ops.notifications n`).Scan(&dump))
	for _, secret := range []string{"key-abc", "tok-def", "tok-ghi", "key-jkl"} {
		require.NotContains(t, out, secret)
		require.NotContains(t, stderr, secret)
		require.NotContains(t, dump, secret)
	}
}

func TestNotifyTestCommand(t *testing.T) {
	t.Parallel()
	rec := &hits{}
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)
	tests := []struct {
		name     string
		env      map[string]string
		args     []string
		code     int
		stdout   string
		requests int
	}{
		{name: "nothing configured", args: []string{"notify", "test", "--job", "backup"}, code: 2},
		{name: "job required", args: []string{"notify", "test"}, code: 2},
		{name: "bad url", env: map[string]string{"IP2A_OPS_WEBHOOK_URL": "not a url"}, args: []string{"notify", "test", "--job", "backup", "--fail"}, code: 2},
		{name: "success ping", env: map[string]string{"IP2A_OPS_PING_URL_BACKUP": srv.URL + "/p/secret-1"}, args: []string{"notify", "test", "--job", "backup"},
			stdout: "ping     " + srv.URL + "/...: delivered\n", requests: 1},
		{name: "failure: ping and webhook", env: map[string]string{"IP2A_OPS_PING_URL_BACKUP": srv.URL + "/p/secret-1", "IP2A_OPS_WEBHOOK_URL": srv.URL + "/h/secret-2"},
			args: []string{"notify", "test", "--job", "backup", "--fail"}, stdout: "ping     " + srv.URL + "/...: delivered\nwebhook  " + srv.URL + "/...: delivered\n", requests: 2},
		{name: "unreachable", env: map[string]string{"IP2A_OPS_WEBHOOK_URL": "http://127.0.0.1:1/h/secret-3"}, args: []string{"notify", "test", "--job", "backup", "--fail"}, code: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := Run(t.Context(), tt.args, Env{Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return tt.env[k] }})
			require.Equal(t, tt.code, code, errb.String())
			if tt.stdout != "" {
				require.Equal(t, tt.stdout, out.String())
			}
			require.Len(t, rec.take(), tt.requests)
			require.NotContains(t, out.String()+errb.String(), "secret-")
		})
	}
}
