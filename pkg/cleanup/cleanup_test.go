package cleanup

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/internal/pgtest"
	"github.com/ip2a/ip2a-ops/pkg/fixture"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func newDB(t *testing.T, g fixture.Generation) *pgxpool.Pool {
	t.Helper()
	ctx := t.Context()
	pool, err := pgxpool.New(ctx, pgtest.NewDatabase(t))
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	require.NoError(t, fixture.LoadSchema(ctx, pool, g))
	// Two users: 1 locked with an expired lock, 2 locked into the future.
	_, err = pool.Exec(ctx, `
		INSERT INTO users (id, email, password_hash, first_name, last_name, is_active, is_verified, must_change_password,
		                   failed_login_attempts, locked_until, created_at, updated_at, is_deleted)
		VALUES (1, 'a@x', 'h', 'A', 'A', true, true, false, 5, now() - interval '1 hour', now(), now(), false),
		       (2, 'b@x', 'h', 'B', 'B', true, true, false, 6, now() + interval '1 hour', now(), now(), false),
		       (3, 'c@x', 'h', 'C', 'C', true, true, false, 2, NULL, now(), now(), false);
		INSERT INTO email_tokens (user_id, token_hash, token_type, is_used, expires_at, created_at, updated_at) VALUES
		  (1, 'expired-verify', 'EMAIL_VERIFICATION', false, now() - interval '1 minute', now(), now()),
		  (1, 'live-verify', 'EMAIL_VERIFICATION', false, now() + interval '1 day', now(), now()),
		  (1, 'old-reset', 'PASSWORD_RESET', false, now() + interval '30 days', now() - interval '8 days', now()),
		  (1, 'new-reset', 'PASSWORD_RESET', false, now() + interval '30 days', now() - interval '6 days', now());
		INSERT INTO refresh_tokens (user_id, token_hash, expires_at, is_revoked, created_at, updated_at) VALUES
		  (1, 'expired-long-ago', now() - interval '8 days', false, now(), now()),
		  (1, 'expired-recently', now() - interval '1 day', false, now(), now()),
		  (1, 'revoked-long-ago', now() + interval '30 days', true, now(), now() - interval '8 days'),
		  (1, 'revoked-recently', now() + interval '30 days', true, now(), now()),
		  (1, 'live', now() + interval '30 days', false, now(), now());
	`)
	require.NoError(t, err)
	return pool
}

func strings(t *testing.T, pool *pgxpool.Pool, sql string) []string {
	t.Helper()
	rows, err := pool.Query(context.Background(), sql)
	require.NoError(t, err)
	var out []string
	for rows.Next() {
		var s string
		require.NoError(t, rows.Scan(&s))
		out = append(out, s)
	}
	require.NoError(t, rows.Err())
	return out
}

func TestRunBothGenerations(t *testing.T) {
	t.Parallel()
	for _, g := range []fixture.Generation{fixture.Newer, fixture.Older} {
		t.Run(string(g), func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			pool := newDB(t, g)

			dry, err := Run(ctx, Options{Pool: pool, DryRun: true})
			require.NoError(t, err)
			require.Equal(t, map[string]int64{"expired_email_tokens": 1, "old_password_reset_tokens": 1, "expired_or_revoked_refresh_tokens": 2, "unlock_users": 1}, rowsByStep(dry))
			require.Len(t, strings(t, pool, `SELECT token_hash FROM email_tokens`), 4, "dry run changes nothing")

			res, err := Run(ctx, Options{Pool: pool})
			require.NoError(t, err)
			require.Equal(t, rowsByStep(dry), rowsByStep(res))
			require.ElementsMatch(t, []string{"live-verify", "new-reset"}, strings(t, pool, `SELECT token_hash FROM email_tokens`))
			require.ElementsMatch(t, []string{"expired-recently", "revoked-recently", "live"}, strings(t, pool, `SELECT token_hash FROM refresh_tokens`))
			require.Equal(t, []string{"1:0:true", "2:6:false", "3:2:true"}, strings(t, pool, `SELECT id || ':' || failed_login_attempts || ':' || (locked_until IS NULL) FROM users ORDER BY id`))

			audit := strings(t, pool, `SELECT table_name || '|' || record_id || '|' || action || '|' || changed_by || '|' || (old_values->>'failed_login_attempts') || '|' || (new_values->>'failed_login_attempts') FROM audit_logs`)
			require.Equal(t, []string{"users|1|UPDATE|ip2a-ops|5|0"}, audit)
			require.Equal(t, int64(1), res.Steps[3].AuditEntries)

			again, err := Run(ctx, Options{Pool: pool})
			require.NoError(t, err)
			require.Zero(t, again.Total(), "a second run finds nothing")
		})
	}
}

func rowsByStep(r Result) map[string]int64 {
	m := map[string]int64{}
	for _, s := range r.Steps {
		m[s.Name] = s.Rows
	}
	return m
}

func TestMissingTablesAreSkipped(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool, err := pgxpool.New(ctx, pgtest.NewDatabase(t))
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	_, err = pool.Exec(ctx, `CREATE TABLE users (id serial primary key, locked_until timestamptz, failed_login_attempts int NOT NULL DEFAULT 0, updated_at timestamp NOT NULL)`)
	require.NoError(t, err)
	res, err := Run(ctx, Options{Pool: pool})
	require.NoError(t, err)
	require.Len(t, res.Steps, 4)
	require.Equal(t, "table email_tokens does not exist", res.Steps[0].Skipped)
	require.Equal(t, "table refresh_tokens does not exist", res.Steps[2].Skipped)
	require.Equal(t, "table audit_logs does not exist", res.Steps[3].Skipped)
}

// Every audit_logs column the unlock step writes is probed first: without
// one the step is skipped with the reason instead of failing the run.
func TestUnlockNeedsEveryAuditColumnItWrites(t *testing.T) {
	t.Parallel()
	pool := newDB(t, fixture.Older)
	_, err := pool.Exec(t.Context(), `ALTER TABLE audit_logs DROP COLUMN notes`)
	require.NoError(t, err)
	res, err := Run(t.Context(), Options{Pool: pool})
	require.NoError(t, err)
	require.Equal(t, "unlock_users", res.Steps[3].Name)
	require.Equal(t, "column audit_logs.notes does not exist", res.Steps[3].Skipped)
	require.Equal(t, int64(1), res.Steps[0].Rows, "the other steps ran")
}

func TestValidate(t *testing.T) {
	t.Parallel()
	_, err := Run(t.Context(), Options{})
	require.ErrorContains(t, err, "Pool is nil")
}
