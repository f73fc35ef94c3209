package metrics

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/internal/fixturetest"
	"github.com/ip2a/ip2a-ops/internal/pgtest"
	"github.com/ip2a/ip2a-ops/pkg/fixture"
	"github.com/ip2a/ip2a-ops/pkg/migrate"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func exec(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	_, err := pool.Exec(t.Context(), sql, args...)
	require.NoError(t, err, sql)
}

// TestAdminFiguresCountExactlyWhatTheyShould adds rows on each side of
// every boundary (today, Monday, 30 days, soft delete, status labels) to a
// generated database and checks each figure moves by exactly the rows that
// belong in it.
func TestAdminFiguresCountExactlyWhatTheyShould(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t, fixturetest.NewTestDB(t, fixture.Newer, fixture.Options{Members: 40, Users: 10, AuditRowsPerMonth: 20}))
	now := fixture.DefaultNow // Sunday 2025-06-15 12:00 UTC
	require.Equal(t, time.Sunday, now.Weekday())
	before, err := Collect(t.Context(), Options{Pool: pool, Now: now})
	require.NoError(t, err)
	require.Empty(t, before.Skipped)
	require.Len(t, before.Admin, len(AdminMetrics))
	require.Positive(t, before.Admin["members_total"])

	mix := "'2025-01-01', '2025-01-01'"
	exec(t, pool, `INSERT INTO members (member_number, first_name, last_name, status, classification, created_at, updated_at, is_deleted, deleted_at) VALUES
		('T-1', 'A', 'A', 'ACTIVE', 'JOURNEYMAN', `+mix+`, false, NULL),
		('T-2', 'B', 'B', 'ACTIVE', 'JOURNEYMAN', `+mix+`, true, '2025-02-01'),
		('T-3', 'C', 'C', 'INACTIVE', 'JOURNEYMAN', `+mix+`, false, NULL),
		('T-4', 'D', 'D', 'ACTIVE', 'JOURNEYMAN', `+mix+`, false, '2025-02-01')`) // deleted_at alone also hides it
	exec(t, pool, `INSERT INTO users (email, password_hash, first_name, last_name, is_active, is_verified, failed_login_attempts, must_change_password,
			last_login, created_at, updated_at, is_deleted) VALUES
		('t1@x', 'h', 'a', 'a', true, true, 0, false, '2025-06-15 00:00:01+00', `+mix+`, false),
		('t2@x', 'h', 'b', 'b', true, true, 0, false, '2025-06-14 23:59:59+00', `+mix+`, false),
		('t3@x', 'h', 'c', 'c', true, true, 0, false, '2025-06-15 09:00:00+00', `+mix+`, true)`)
	exec(t, pool, `INSERT INTO audit_logs (table_name, record_id, action, changed_at) VALUES
		('members', '1', 'READ', '2025-06-15 00:00:00'), ('members', '1', 'READ', '2025-06-15 11:59:00'),
		('members', '1', 'READ', '2025-06-09 00:00:00'), ('members', '1', 'READ', '2025-06-08 23:59:59')`)
	exec(t, pool, `INSERT INTO dues_payments (member_id, period_id, amount_due, amount_paid, payment_date, status, created_at, updated_at, is_deleted)
		SELECT (SELECT min(id) FROM members), (SELECT min(id) FROM dues_periods), 50, v.paid, v.day::date, v.status::duespaymentstatus, `+mix+`, v.deleted
		FROM (VALUES (100.50, '2025-06-14', 'PAID', false), (20, '2025-05-16', 'PARTIAL', false), (45, '2025-05-15', 'PAID', false),
			(1000, '2025-06-15', 'PENDING', false), (7, '2025-06-15', 'PAID', true), (9, '2025-06-16', 'PAID', false)) v(paid, day, status, deleted)`)
	exec(t, pool, `INSERT INTO students (member_id, student_number, status, application_date, created_at, updated_at, is_deleted)
		SELECT id, 'S-' || member_number, CASE member_number WHEN 'T-3' THEN 'APPLICANT' ELSE 'ENROLLED' END::student_status_enum, '2025-01-01', `+mix+`, member_number = 'T-2'
		FROM members WHERE member_number IN ('T-1', 'T-2', 'T-3')`)

	after, err := Collect(t.Context(), Options{Pool: pool, Now: now})
	require.NoError(t, err)
	delta := map[string]float64{}
	for k, v := range after.Admin {
		delta[k] = v - before.Admin[k]
	}
	require.Equal(t, map[string]float64{
		"members_total":        2, // T-1, T-3
		"members_active":       1, // T-1
		"users_total":          2,
		"users_active_today":   1,
		"audit_rows_today":     2,
		"audit_rows_this_week": 3,
		"dues_collected_30d":   120.5, // 100.50 PAID yesterday + 20 PARTIAL 30 days ago
		"students_enrolled":    1,
	}, delta)
}

func TestMissingTablesAndColumnsAreSkipped(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		gen   fixture.Generation
		drop  []string
		want  map[string]string
		count int
	}{
		{name: "older generation has every figure", gen: fixture.Older, want: map[string]string{}},
		{name: "dropped table and column", gen: fixture.Newer,
			drop: []string{`DROP TABLE students CASCADE`, `ALTER TABLE users DROP COLUMN last_login`, `DROP TABLE dues_payments CASCADE`},
			want: map[string]string{
				"students_enrolled":  "table students does not exist",
				"users_active_today": "column users.last_login does not exist",
				"dues_collected_30d": "table dues_payments does not exist",
			}},
		{name: "enum without the label", gen: fixture.Newer,
			drop: []string{`ALTER TABLE members ALTER COLUMN status TYPE text`, `DROP TYPE memberstatus`, `CREATE TYPE memberstatus AS ENUM ('active')`,
				`ALTER TYPE memberstatus RENAME VALUE 'active' TO 'current'`},
			want: map[string]string{"members_active": "enum memberstatus has no label ACTIVE"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pool := pgtest.Pool(t, fixturetest.NewTestDB(t, tt.gen, fixture.Options{Members: 20, Users: 5, AuditRowsPerMonth: 5}))
			for _, q := range tt.drop {
				exec(t, pool, q)
			}
			res, err := Collect(t.Context(), Options{Pool: pool})
			require.NoError(t, err)
			require.Equal(t, tt.want, res.Skipped)
			require.Len(t, res.Admin, len(AdminMetrics)-len(tt.want))
			require.NotEmpty(t, res.JobsSkipped, "no ledger yet")
			require.Nil(t, res.Jobs)
			var buf bytes.Buffer
			require.NoError(t, WritePrometheus(&buf, res))
			for name, why := range tt.want {
				require.Contains(t, buf.String(), `ip2a_metric_skipped{metric="`+name+`",reason="`+why+`"} 1`)
			}
		})
	}
}

func TestDatabaseHealth(t *testing.T) {
	t.Parallel()
	url := fixturetest.NewTestDB(t, fixture.Newer, fixture.Options{Members: 30, AuditRowsPerMonth: 50})
	pool := pgtest.Pool(t, url)
	// Dead tuples: delete rows and flush this backend's statistics.
	// (audit_logs refuses deletes in the newer schema.)
	conn, err := pool.Acquire(t.Context())
	require.NoError(t, err)
	_, err = conn.Exec(t.Context(), `DELETE FROM member_employments WHERE id % 2 = 0`)
	if err == nil {
		_, err = conn.Exec(t.Context(), `SELECT pg_stat_force_next_flush()`)
	}
	conn.Release()
	require.NoError(t, err)
	// A transaction left open elsewhere.
	tx, err := pool.Begin(t.Context())
	require.NoError(t, err)
	defer tx.Rollback(t.Context())
	opened := time.Now()
	_, err = tx.Exec(t.Context(), `SELECT txid_current()`)
	require.NoError(t, err)

	var res Result
	require.Eventually(t, func() bool {
		res, err = Collect(t.Context(), Options{Pool: pool, LargestTables: 3})
		require.NoError(t, err)
		return res.Database.DeadTuples > 0
	}, 10*time.Second, 50*time.Millisecond)
	db := res.Database
	require.Positive(t, db.SizeBytes)
	require.Len(t, db.Tables, 3)
	require.GreaterOrEqual(t, db.Tables[0].SizeBytes, db.Tables[1].SizeBytes)
	require.GreaterOrEqual(t, db.Tables[1].SizeBytes, db.Tables[2].SizeBytes)
	require.Positive(t, db.Connections["active"]+db.Connections["idle in transaction"])
	require.Positive(t, db.MaxConnections)
	require.Positive(t, db.OldestTransactionSeconds)
	require.LessOrEqual(t, db.OldestTransactionSeconds, time.Since(opened).Seconds()+1)
	require.Positive(t, db.XIDAge)
	require.NoError(t, tx.Rollback(t.Context()))
	res, err = Collect(t.Context(), Options{Pool: pool})
	require.NoError(t, err)
	require.Less(t, res.Database.OldestTransactionSeconds, db.OldestTransactionSeconds+0.001)
}

func TestJobHealthFromTheLedger(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t, pgtest.NewDatabase(t))
	_, err := migrate.Up(t.Context(), pool, migrate.DefaultSchema)
	require.NoError(t, err)
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	exec(t, pool, `INSERT INTO ip2a_ops.runs (job, trigger, host, pid, started_at, heartbeat_at, finished_at, state, exit_code) VALUES
		('backup', 'cron', 'h', 1, $1::timestamptz - interval '30 hours', $1::timestamptz - interval '30 hours', $1::timestamptz - interval '30 hours', 'failed', 1),
		('backup', 'cron', 'h', 1, $1::timestamptz - interval '3 hours', $1::timestamptz - interval '3 hours', $1::timestamptz - interval '2 hours 59 minutes', 'succeeded', 0),
		('backup', 'cron', 'h', 1, $1::timestamptz - interval '2 hours', $1::timestamptz - interval '2 hours', $1::timestamptz - interval '2 hours', 'abandoned', NULL),
		('backup', 'cron', 'h', 1, $1::timestamptz - interval '1 hour', $1::timestamptz - interval '1 hour', $1::timestamptz - interval '59 minutes 30 seconds', 'failed', 1),
		('backup', 'cron', 'h', 1, $1::timestamptz - interval '30 minutes', $1::timestamptz - interval '30 minutes', $1::timestamptz - interval '30 minutes', 'skipped', 4),
		('cleanup', 'cron', 'h', 1, $1::timestamptz - interval '1 minute', $1::timestamptz, NULL, 'running', NULL)`, now)
	exec(t, pool, `UPDATE ip2a_ops.runs SET progress = '{"phase": "tokens", "unit": "rows", "done": 300, "total": 1200,
		"phase_started_at": "2026-11-29T11:59:30Z", "updated_at": "2026-11-29T12:00:00Z", "rate_per_second": 10}' WHERE state = 'running'`)
	exec(t, pool, `INSERT INTO ip2a_ops.notifications (job, run_id, channel, target, event, state) VALUES
		('backup', 4, 'webhook', 'x', '{}', 'pending'), ('backup', 4, 'email', 'x', '{}', 'pending'), ('backup', 1, 'ping', 'x', '{}', 'delivered')`)

	res, err := Collect(t.Context(), Options{Pool: pool, Now: now})
	require.NoError(t, err)
	require.Len(t, res.Admin, 0)
	require.Len(t, res.Skipped, len(AdminMetrics))
	require.Len(t, res.Jobs, 2)
	b, c := res.Jobs[0], res.Jobs[1]
	require.Equal(t, "backup", b.Job)
	require.Equal(t, now.Add(-2*time.Hour-59*time.Minute), b.LastSuccess.UTC())
	require.Equal(t, now.Add(-time.Hour), b.LastRun.UTC(), "the skip is not the last run")
	require.Equal(t, "failed", b.LastState)
	require.Equal(t, 1, *b.LastExitCode)
	require.InDelta(t, 30, b.LastDurationSec, 0.001)
	require.EqualValues(t, 2, b.Failures24h, "abandoned and failed within 24h; the one 30h ago is out")
	require.EqualValues(t, 1, b.Skipped24h)
	require.EqualValues(t, 5, b.Runs)
	require.False(t, b.Running)
	require.Equal(t, "cleanup", c.Job)
	require.Nil(t, c.LastSuccess)
	require.True(t, c.Running)
	require.Nil(t, c.LastExitCode)
	require.NotNil(t, c.Progress)
	require.Equal(t, "tokens: 300 rows of 1,200 rows, 25%, 1m30s left", c.Progress.String())
	require.Nil(t, b.Progress)
	require.EqualValues(t, 2, res.PendingNotifications)

	var buf bytes.Buffer
	require.NoError(t, WritePrometheus(&buf, res))
	out := buf.String()
	require.Contains(t, out, "ip2a_ops_job_last_success_timestamp_seconds{job=\"backup\"} 1.79594286e+09\n")
	require.NotContains(t, out, "ip2a_ops_job_last_success_timestamp_seconds{job=\"cleanup\"}")
	require.Contains(t, out, "ip2a_ops_job_failures_24h{job=\"backup\"} 2\n")
	require.Contains(t, out, "ip2a_ops_job_running{job=\"cleanup\"} 1\n")
	require.Contains(t, out, "ip2a_ops_job_progress_ratio{job=\"cleanup\"} 0.25\n")
	require.Contains(t, out, "ip2a_ops_job_progress_done{job=\"cleanup\",unit=\"rows\"} 300\n")
	require.Contains(t, out, "ip2a_ops_job_progress_updated_timestamp_seconds{job=\"cleanup\"} 1.7959536e+09\n")
	require.NotContains(t, out, "ip2a_ops_job_progress_ratio{job=\"backup\"}")
	require.Contains(t, out, "ip2a_ops_notifications_pending 2\n")
}

func TestWritePrometheusFormat(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	res := Result{CollectedAt: at, Admin: map[string]float64{"members_total": 4012, "dues_collected_30d": 123456.78},
		Skipped:              map[string]string{"students_enrolled": `table "students" does not exist`},
		Database:             Database{Name: "ip2a", SizeBytes: 1 << 30, Tables: []Table{{Schema: "public", Name: "audit_logs", SizeBytes: 1 << 29, DeadTuples: 7}}, Connections: map[string]int64{"active": 2, "idle": 3}, MaxConnections: 100, OldestTransactionSeconds: 1.5, XIDAge: 1000},
		PendingNotifications: -1,
	}
	var buf bytes.Buffer
	require.NoError(t, WritePrometheus(&buf, res))
	// client_golang sorts families by name.
	want := `# HELP ip2a_db_connections Client connections to the database by state.
# TYPE ip2a_db_connections gauge
ip2a_db_connections{state="active"} 2
ip2a_db_connections{state="idle"} 3
# HELP ip2a_db_dead_tuples Dead tuples over every user table.
# TYPE ip2a_db_dead_tuples gauge
ip2a_db_dead_tuples 0
# HELP ip2a_db_live_tuples Live tuples over every user table.
# TYPE ip2a_db_live_tuples gauge
ip2a_db_live_tuples 0
# HELP ip2a_db_max_connections The server's max_connections.
# TYPE ip2a_db_max_connections gauge
ip2a_db_max_connections 100
# HELP ip2a_db_oldest_transaction_seconds Age of the oldest open transaction on the database.
# TYPE ip2a_db_oldest_transaction_seconds gauge
ip2a_db_oldest_transaction_seconds 1.5
# HELP ip2a_db_size_bytes Size of the database.
# TYPE ip2a_db_size_bytes gauge
ip2a_db_size_bytes{database="ip2a"} 1.073741824e+09
# HELP ip2a_db_table_dead_tuples Dead tuples of the largest tables.
# TYPE ip2a_db_table_dead_tuples gauge
ip2a_db_table_dead_tuples{schema="public",table="audit_logs"} 7
# HELP ip2a_db_table_size_bytes Total size of the largest tables, indexes and TOAST included.
# TYPE ip2a_db_table_size_bytes gauge
ip2a_db_table_size_bytes{schema="public",table="audit_logs"} 5.36870912e+08
# HELP ip2a_db_xid_age age(datfrozenxid): transactions since the database was last fully frozen.
# TYPE ip2a_db_xid_age gauge
ip2a_db_xid_age 1000
# HELP ip2a_dues_collected_30d_dollars Sum of amount_paid of PAID and PARTIAL dues payments with a payment_date in the last 30 days, in dollars.
# TYPE ip2a_dues_collected_30d_dollars gauge
ip2a_dues_collected_30d_dollars 123456.78
# HELP ip2a_members Members, soft-deleted excluded.
# TYPE ip2a_members gauge
ip2a_members 4012
# HELP ip2a_metric_skipped 1 for each admin figure this database's schema cannot provide, with the reason.
# TYPE ip2a_metric_skipped gauge
ip2a_metric_skipped{metric="students_enrolled",reason="table \"students\" does not exist"} 1
# HELP ip2a_ops_metrics_collected_timestamp_seconds When these metrics were collected.
# TYPE ip2a_ops_metrics_collected_timestamp_seconds gauge
ip2a_ops_metrics_collected_timestamp_seconds 1.7959536e+09
`
	require.Equal(t, want, buf.String())

	dir := t.TempDir()
	path := filepath.Join(dir, "ip2a.prom")
	require.NoError(t, os.WriteFile(path, []byte("old"), 0o600))
	require.NoError(t, WritePrometheusFile(path, res))
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, want, string(got))
	st, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o644), st.Mode().Perm())
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1, "no temp file left")
	require.ErrorContains(t, WritePrometheusFile(filepath.Join(dir, "missing", "x.prom"), res), "write metrics file")
}

func TestParseAgesAndFreshness(t *testing.T) {
	t.Parallel()
	ages := []struct {
		in   string
		want time.Duration
		err  bool
	}{
		{in: "26h", want: 26 * time.Hour},
		{in: "32d", want: 32 * 24 * time.Hour},
		{in: "1w", want: 7 * 24 * time.Hour},
		{in: "1d12h", want: 36 * time.Hour},
		{in: "90m", want: 90 * time.Minute},
		{in: "0h", err: true},
		{in: "soon", err: true},
		{in: "", err: true},
		{in: "-1h", err: true},
	}
	for _, tt := range ages {
		t.Run("age "+tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := ParseAge(tt.in)
			if tt.err {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
	m, err := ParseMaxAges([]string{"backup=26h", "integrity-check=26h, audit-archive=32d", "backup=25h"})
	require.NoError(t, err)
	require.Equal(t, map[string]time.Duration{"backup": 25 * time.Hour, "integrity-check": 26 * time.Hour, "audit-archive": 32 * 24 * time.Hour}, m)
	_, err = ParseMaxAges([]string{"backup"})
	require.ErrorContains(t, err, "want job=age")
	_, err = ParseMaxAges([]string{"backup=often"})
	require.ErrorContains(t, err, "max age for backup")

	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	got := CheckFreshness(map[string]time.Time{
		"backup":          now.Add(-25 * time.Hour),
		"integrity-check": now.Add(-27 * time.Hour),
		"cleanup":         now.Add(-time.Hour),
	}, m, now)
	require.Len(t, got, 3)
	require.Equal(t, "audit-archive", got[0].Job)
	require.True(t, got[0].Stale)
	require.Equal(t, "never succeeded", got[0].Reason)
	require.Nil(t, got[0].AgeSeconds)
	require.Equal(t, "backup", got[1].Job)
	require.False(t, got[1].Stale, "exactly at the limit is fresh")
	require.Equal(t, "integrity-check", got[2].Job)
	require.True(t, got[2].Stale)
	require.Equal(t, "last success 1d3h ago, more than 1d2h", got[2].Reason)
	require.Equal(t, "32d", got[0].MaxAge)
}
