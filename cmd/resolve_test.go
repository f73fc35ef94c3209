package cmd

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/pkg/scheduler"
)

// TestResolveEntry: a crontab line is named by the real command tree, so
// global flags, subcommands, flags before them and sleep-job's --job-name
// need no second parser; the registry gives each job's catch-up.
func TestResolveEntry(t *testing.T) {
	t.Parallel()
	day := scheduler.CatchUp{Window: 24 * time.Hour}
	tests := []struct {
		name    string
		args    []string
		job     string
		catchUp scheduler.CatchUp
	}{
		{"plain", []string{"backup"}, "backup", day},
		{"global with value", []string{"--schema", "ops", "cleanup", "--dry-run"}, "cleanup", scheduler.CatchUp{}},
		{"global with =", []string{"--max-runtime=1h", "backup"}, "backup", day},
		{"bool global", []string{"--json", "integrity-check"}, "integrity-check", scheduler.CatchUp{}},
		{"sleep-job default", []string{"sleep-job", "--for", "1s"}, "sleep", scheduler.CatchUp{}},
		{"sleep-job named", []string{"sleep-job", "--job-name=nightly"}, "nightly", scheduler.CatchUp{}},
		{"backup create", []string{"backup", "create", "--prune"}, "backup", day},
		{"backup with flags", []string{"backup", "--prune", "--keep-daily", "3"}, "backup", day},
		{"backup verify", []string{"backup", "verify", "latest", "--level", "restore"}, "backup-verify", day},
		{"backup flag before sub", []string{"backup", "--storage", "s3://b", "prune", "--apply"}, "backup-prune", scheduler.CatchUp{}},
		{"backup status", []string{"backup", "status", "--max-age", "26h"}, "backup-status", scheduler.CatchUp{}},
		{"audit alone", []string{"--log-format", "json", "audit-archive"}, "audit-archive", scheduler.CatchUp{Once: true}},
		{"audit run", []string{"audit-archive", "run"}, "audit-archive", scheduler.CatchUp{Once: true}},
		{"audit purge", []string{"audit-archive", "purge", "--apply"}, "audit-archive-purge", scheduler.CatchUp{}},
		{"grant report", []string{"grant-report", "--all-active", "--last-month"}, "grant-report", scheduler.CatchUp{}},
		{"not a job", []string{"metrics", "--format", "prometheus"}, "metrics", scheduler.CatchUp{}},
		{"not a job, nested", []string{"jobs", "status", "--check", "--max-age", "backup=26h"}, "jobs-status", scheduler.CatchUp{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			job, cu, err := resolveEntry(tt.args)
			require.NoError(t, err)
			require.Equal(t, tt.job, job)
			require.Equal(t, tt.catchUp, cu)
		})
	}
	for _, bad := range [][]string{{"--json"}, {"nosuchcommand"}, {"backup", "--tier", "daily"}} {
		_, _, err := resolveEntry(bad)
		require.Error(t, err, "%q", bad)
	}
}
