package cmd

import (
	"bytes"
	"context"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/pkg/scheduler"
)

// The shipped crontab.example must pass the daemon's own check, so what a
// user copies from it works under both system cron and the daemon.
func TestCrontabExampleIsValid(t *testing.T) {
	t.Parallel()
	var out, errb bytes.Buffer
	code := Run(context.Background(), []string{"daemon", "--check", "../crontab.example"}, Env{Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }})
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", out.String(), errb.String())
	require.Contains(t, out.String(), "valid")
	for _, job := range []string{"backup", "backup-verify", "cleanup", "integrity-check", "audit-archive", "grant-report", "membership-report", "dues-report"} {
		require.Contains(t, out.String(), " "+job+" ", "crontab.example schedules %s", job)
	}

	// Every line's command and flags must be what the binary accepts:
	// parse each with --help appended, which checks flags and runs nothing.
	f, err := os.Open("../crontab.example")
	require.NoError(t, err)
	defer f.Close()
	tab, err := scheduler.Parse(f, resolveEntry)
	require.NoError(t, err)
	for _, e := range tab.Entries {
		var o, eb bytes.Buffer
		code := Run(context.Background(), append(append([]string{}, e.Args...), "--help"), Env{Stdout: &o, Stderr: &eb, Getenv: func(string) string { return "" }})
		require.Equal(t, 0, code, "line %d: %s\n%s", e.Line, e.Text, eb.String())
	}
}
