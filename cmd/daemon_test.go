package cmd

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/internal/pgtest"
)

// TestDaemonHTTP runs the daemon in-process with HTTP on: /healthz and
// /readyz answer, /metrics shows the job's runs from the ledger and the
// daemon's slot counters; cancelling the context (SIGTERM) exits 0.
func TestDaemonHTTP(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDatabase(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "crontab")
	require.NoError(t, os.WriteFile(file, []byte("@every 1s ip2a-ops sleep-job --job-name tick --for 10ms\n"), 0o600))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan int, 1)
	var stderr bytes.Buffer
	go func() {
		done <- Run(ctx, []string{"--database-url", url, "--auto-migrate", "--log-level", "error", "daemon", "--crontab", file, "--listen", addr},
			Env{Stdout: io.Discard, Stderr: &stderr, Getenv: func(string) string { return "" }})
	}()
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	secondTick := regexp.MustCompile(`ip2a_ops_job_runs_total\{job="tick",state="succeeded"\} ([2-9]|[1-9]\d+)\n`)
	deadline := time.Now().Add(20 * time.Second)
	var body string
	for {
		var code int
		code, body = get("/metrics")
		// At least two: on a slow machine a poll can miss the moment it is
		// exactly two.
		if code == 200 && secondTick.MatchString(body) {
			break
		}
		require.True(t, time.Now().Before(deadline), "no second tick run in /metrics:\n%s", body)
		time.Sleep(50 * time.Millisecond)
	}
	require.Contains(t, body, "# TYPE ip2a_ops_daemon_slots_total counter\n")
	require.Regexp(t, `ip2a_ops_daemon_slots_total\{job="tick",outcome="ran"\} ([2-9]|[1-9]\d+)\n`, body)
	require.Regexp(t, `ip2a_ops_job_last_success_timestamp_seconds\{job="tick"\} \d+`, body)
	require.Contains(t, body, "ip2a_ops_ledger_up 1\n")
	require.Contains(t, body, "ip2a_ops_daemon_entries 1\n")
	code, b := get("/healthz")
	require.Equal(t, 200, code, b)
	code, b = get("/readyz")
	require.Equal(t, 200, code, b)

	cancel()
	select {
	case code := <-done:
		require.Equal(t, 0, code, stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatal("daemon did not stop")
	}
}
