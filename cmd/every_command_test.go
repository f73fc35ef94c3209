package cmd

import (
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/internal/fixturetest"
	"github.com/ip2a/ip2a-ops/internal/pgbouncertest"
	"github.com/ip2a/ip2a-ops/internal/pgtest"
	"github.com/ip2a/ip2a-ops/pkg/fixture"
)

// TestEveryCommandOnBothGenerations runs every command of README's command
// table once, in the order an operator would, against each generation of
// the app's real schema filled by the generator with today as its clock,
// directly and through PgBouncer in transaction mode (README's pooled URL
// form, with DATABASE_DIRECT_URL), and checks each command's documented
// exit code. No command may meet a
// table or column the database lacks (SQLSTATE 42P01, 42703 on stderr):
// that is what the dbschema probe is for. A failing command does not stop
// the run, so one run names every command that fails.
func TestEveryCommandOnBothGenerations(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		g     fixture.Generation
		route string
	}{{fixture.Newer, "direct"}, {fixture.Older, "direct"}, {fixture.Newer, "pgbouncer"}, {fixture.Older, "pgbouncer"}} {
		g := tc.g
		t.Run(string(g)+"/"+tc.route, func(t *testing.T) {
			t.Parallel()
			now := time.Now().UTC().Truncate(time.Second)
			// Five years of audit_logs: the two oldest are past the 3-year
			// online window, so audit-archive has months to archive.
			url := fixturetest.NewTestDB(t, g, fixture.Options{Seed: 7, Now: now, Members: 80, Users: 12,
				AuditYears: 5, AuditRowsPerMonth: 15})
			direct := url
			ping := httptest.NewServer(&hits{})
			t.Cleanup(ping.Close)
			dir := t.TempDir()
			backups, archives, reports := filepath.Join(dir, "backups"), filepath.Join(dir, "archives"), filepath.Join(dir, "reports")
			require.NoError(t, os.MkdirAll(reports, 0o700))
			if tc.route == "pgbouncer" {
				url = readmePooledURL(t, pgbouncertest.Shared(t), url)
			}
			c := cli{t: t, env: map[string]string{
				"DATABASE_URL":             url,
				"IP2A_OPS_LOG_FORMAT":      "json",
				"IP2A_OPS_TRIGGER":         "manual",
				"IP2A_OPS_BACKUP_STORAGE":  backups,
				"IP2A_OPS_AUDIT_STORAGE":   archives,
				"IP2A_OPS_PING_URL_BACKUP": ping.URL + "/ping/{job}",
				"IP2A_OPS_NOTIFY_TIMEOUT":  "5s",
				"IP2A_OPS_BACKUP_WORK_DIR": dir,
				"IP2A_OPS_AUDIT_TEMP_DIR":  dir,
			}}
			if tc.route == "pgbouncer" {
				c.env["DATABASE_DIRECT_URL"] = direct
			}
			expect := func(want int, args ...string) string {
				t.Helper()
				code, stdout, stderr := c.run(args...)
				assert.Equal(t, want, code, "ip2a-ops %s\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), stdout, stderr)
				for _, state := range []string{"42P01", "42703"} {
					assert.NotContains(t, stderr, "SQLSTATE "+state, "ip2a-ops %s read a table or column %s lacks", strings.Join(args, " "), g)
				}
				return stdout
			}
			// The month four years back is archived by the run below.
			month := now.AddDate(-4, 0, 0).Format("2006-01")

			expect(0, "version")
			expect(0, "help", "exit-codes")
			expect(0, "migrate", "--print")
			expect(0, "migrate")

			// No backup yet: the dead-man's switch says stale.
			expect(3, "backup", "status", "--max-age", "26h")
			expect(0, "backup", "--prune")
			expect(0, "backup", "list")
			expect(0, "backup", "verify", "latest", "--level", "restore", "--scratch-url", pgtest.AdminURL(t))
			expect(0, "backup", "restore", "latest", "--target-url", pgtest.NewDatabase(t))
			expect(0, "backup", "prune")
			expect(0, "backup", "status", "--max-age", "26h")

			expect(0, "audit-archive", "status")
			expect(0, "audit-archive", "install-guard")
			expect(0, "audit-archive", "--dry-run")
			expect(0, "audit-archive", "run")
			expect(0, "audit-archive", "verify")
			expect(0, "audit-archive", "hold", month, "--reason", "case 42")
			expect(0, "audit-archive", "purge")
			expect(0, "audit-archive", "release", month)
			expect(0, "audit-archive", "search", "--from", month, "--to", now.Format("2006-01-02"), "--table", "members",
				"--format", "csv", "--out", filepath.Join(dir, "search.csv"))
			expect(0, "audit-archive", "restore", month, "--into", "audit_logs_"+strings.ReplaceAll(month, "-", "_"))
			expect(0, "audit-archive", "status")

			// The generated data has warnings (open dues of deceased
			// members, tokens for cleanup) but nothing critical.
			expect(0, "integrity-check")
			expect(0, "integrity-check", "--repair")
			// The app's seed marks running grants is_active with status
			// 'pending': --all-active must find and write them.
			expect(0, "grant-report", "--all-active", "--last-month", "--out", reports)
			written, err := filepath.Glob(filepath.Join(reports, "*.xlsx"))
			require.NoError(t, err)
			assert.NotEmpty(t, written, "grant-report --all-active wrote no workbook")

			expect(0, "cleanup", "--dry-run")
			expect(0, "cleanup")

			expect(0, "metrics")
			expect(0, "metrics", "--format", "prometheus", "--output", filepath.Join(dir, "ip2a.prom"))
			expect(0, "doctor", "--crontab", "../crontab.example", "--storage-url", "file://"+backups)

			expect(0, "notify", "test", "--job", "backup")
			expect(0, "notify", "list")
			expect(0, "notify", "retry")

			expect(0, "jobs", "status")
			expect(0, "jobs", "status", "--check", "--max-age", "backup=26h", "--max-age", "audit-archive=32d", "--max-age", "integrity-check=26h")
			expect(0, "jobs", "history", "--job", "cleanup", "--limit", "5")
			var history struct {
				Runs []struct {
					ID    int64  `json:"id"`
					Job   string `json:"job"`
					Error string `json:"error"`
				} `json:"runs"`
			}
			out := expect(0, "jobs", "history", "--state", "failed", "--json")
			require.NoError(t, json.Unmarshal([]byte(out), &history), out)
			assert.Empty(t, history.Runs, "no run failed")
			out = expect(0, "jobs", "history", "--limit", "1", "--json")
			require.NoError(t, json.Unmarshal([]byte(out), &history), out)
			require.Len(t, history.Runs, 1)
			expect(0, "jobs", "show", strconv.FormatInt(history.Runs[0].ID, 10))
			expect(2, "jobs", "show", "999999")

			expect(0, "schedule", "explain", "../crontab.example", "--next", "5")
			expect(0, "daemon", "--check", "../crontab.example")
		})
	}
}
