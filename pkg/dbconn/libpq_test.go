package dbconn

import (
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/internal/pgbouncertest"
	"github.com/ip2a/ip2a-ops/internal/pgtest"
)

func TestForLibpq(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, in, want string }{
		{"README's proxy form", "postgres://ops:pw@pgbouncer:6432/ip2a?default_query_exec_mode=exec",
			"postgres://ops:pw@pgbouncer:6432/ip2a"},
		{"libpq params kept in order", "postgresql://h/db?sslmode=require&default_query_exec_mode=simple_protocol&connect_timeout=5&application_name=x",
			"postgresql://h/db?sslmode=require&connect_timeout=5&application_name=x"},
		{"every pgx and pgxpool param", "postgres://h/db?statement_cache_capacity=0&description_cache_capacity=0&pool_max_conns=3&pool_min_conns=1&pool_max_conn_lifetime=1h&pool_health_check_period=1m&Default_Query_Exec_Mode=exec",
			"postgres://h/db"},
		{"escaped values kept as written", "postgres://h/db?options=-c%20search_path%3Dip2a&pool_max_conns=2",
			"postgres://h/db?options=-c%20search_path%3Dip2a"},
		{"no query", "postgres://u@h:5432/db", "postgres://u@h:5432/db"},
		{"fragment kept", "postgres://h/db?pool_max_conns=2#x", "postgres://h/db#x"},
		{"keyword/value", "host=h dbname=ip2a default_query_exec_mode=exec sslmode=disable",
			"host=h dbname=ip2a sslmode=disable"},
		{"keyword/value quoted", "host=h password='a b\\' c' pool_max_conns = 4 options='-c x=1'",
			"host=h password='a b\\' c' options='-c x=1'"},
		{"empty (PG* variables)", "", ""},
		{"unparsable left to the tool", "host=h dbname", "host=h dbname"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, ForLibpq(tc.in))
		})
	}
}

// The real tools: pg_dump, pg_restore's connection and psql refuse a URL
// carrying pgx's parameters, and accept what ForLibpq leaves.
func TestForLibpqToolsAcceptIt(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDatabase(t)
	bin := newestPgBin(t)
	for _, tc := range []struct {
		name   string
		params string
	}{
		{"exec mode (README's proxy form)", "default_query_exec_mode=exec"},
		{"simple protocol and caches", "default_query_exec_mode=simple_protocol&statement_cache_capacity=0&description_cache_capacity=0"},
		{"pool settings", "pool_max_conns=2&pool_max_conn_idle_time=1m"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			u := db
			for _, kv := range strings.Split(tc.params, "&") {
				k, v, _ := strings.Cut(kv, "=")
				u = pgbouncertest.WithParam(u, k, v)
			}
			archive := filepath.Join(t.TempDir(), "schema.pgc")
			for _, tool := range [][]string{
				{"pg_dump", "--schema-only", "--format=custom", "--file=" + archive, "--dbname"},
				{"pg_restore", archive, "--dbname"},
				{"psql", "-X", "-c", "SELECT 1", "--dbname"},
			} {
				args := append(tool[1:len(tool):len(tool)], u)
				out, err := exec.Command(filepath.Join(bin, tool[0]), args...).CombinedOutput()
				require.Error(t, err, "%s must refuse pgx's parameters, or this test proves nothing", tool[0])
				require.Contains(t, string(out), "invalid URI query parameter")

				args = append(tool[1:len(tool):len(tool)], ForLibpq(u))
				out, err = exec.Command(filepath.Join(bin, tool[0]), args...).CombinedOutput()
				require.NoError(t, err, "%s: %s", tool[0], out)
			}
		})
	}
}

// newestPgBin is the newest /usr/lib/postgresql/N/bin, skipping without
// one (failing in CI, which installs them).
func newestPgBin(t *testing.T) string {
	t.Helper()
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		return len(dirs[i]) < len(dirs[j]) || (len(dirs[i]) == len(dirs[j]) && dirs[i] < dirs[j])
	})
	if len(dirs) == 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("no PostgreSQL client binaries under /usr/lib/postgresql")
		}
		t.Skip("no PostgreSQL client binaries under /usr/lib/postgresql")
	}
	return dirs[len(dirs)-1]
}

func TestMain(m *testing.M) { pgtest.Main(m) }
