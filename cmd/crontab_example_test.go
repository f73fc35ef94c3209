package cmd

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

// The shipped crontab.example must pass the daemon's own check, so what a
// user copies from it works under both system cron and the daemon.
func TestCrontabExampleIsValid(t *testing.T) {
	t.Parallel()
	var out, errb bytes.Buffer
	code := Run(context.Background(), []string{"daemon", "--check", "../crontab.example"}, Env{Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }})
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", out.String(), errb.String())
	require.Contains(t, out.String(), "valid")
	for _, job := range []string{"backup", "backup-verify", "cleanup", "integrity-check", "audit-archive", "grant-report"} {
		require.Contains(t, out.String(), " "+job+" ", "crontab.example schedules %s", job)
	}
}
