package cmd

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/pkg/audit"
	"github.com/ip2a/ip2a-ops/pkg/migrate"
)

// README.md shows the audit guard's SQL; it must be what install-guard runs.
func TestReadmeShowsTheGuardSQL(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	require.Contains(t, string(b), strings.TrimSpace(audit.GuardSQL(migrate.DefaultSchema)),
		"README.md's guard SQL is stale: paste the output of 'ip2a-ops audit-archive install-guard --print'")
}

// README.md opens with the two set-up commands, and .ci/run runs the same
// test command.
func TestReadmeSetupCommands(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	head := string(b)
	if len(head) > 1500 {
		head = head[:1500]
	}
	require.Contains(t, head, "go run . demo")
	require.Contains(t, head, "go test ./...")
	ci, err := os.ReadFile("../.ci/run")
	require.NoError(t, err)
	require.Contains(t, string(ci), "\ngo test ./...\n")
}
