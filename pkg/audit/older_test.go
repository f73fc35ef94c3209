package audit_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/pkg/audit"
	"github.com/ip2a/ip2a-ops/pkg/fixture"
)

// The older schema has no immutability trigger: run archives and verifies
// but deletes nothing until install-guard has created the function and the
// triggers; then the verified months go and nobody else may change a row.
func TestOlderSchemaGuard(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fixture.Older, 5, 20)
	ctx := t.Context()
	original := e.ids(t)
	eligible := e.count(t, `SELECT count(*) FROM audit_logs WHERE changed_at < '2023-11-01'`)
	require.Positive(t, eligible)
	require.Zero(t, e.count(t, `SELECT count(*) FROM pg_proc WHERE proname = 'prevent_audit_modification'`))

	st, err := audit.Guard(ctx, e.cfg)
	require.NoError(t, err)
	require.False(t, st.Installed)
	require.False(t, st.AppTrigger)
	require.Len(t, st.Missing, 4)

	res, err := audit.Run(ctx, audit.RunOptions{Config: e.cfg})
	require.NoError(t, err)
	require.False(t, res.GuardInstalled)
	require.Contains(t, res.DeleteSkipped, "install-guard")
	require.Equal(t, eligible, res.RowsArchived)
	require.Equal(t, len(res.Months), res.MonthsVerified)
	require.Zero(t, res.RowsDeleted)
	require.Equal(t, original, e.ids(t))
	vr, err := audit.Verify(ctx, audit.VerifyOptions{Config: e.cfg})
	require.NoError(t, err)
	require.Equal(t, len(res.Months), vr.OK)

	// Twice: install-guard is idempotent.
	for range 2 {
		st, err = audit.InstallGuard(ctx, e.cfg)
		require.NoError(t, err)
		require.True(t, st.Installed, "missing: %v", st.Missing)
		require.True(t, st.AppTrigger)
	}
	require.Equal(t, int64(1), e.count(t, `SELECT count(*) FROM pg_proc WHERE proname = 'prevent_audit_modification'`))
	require.Equal(t, int64(4), e.count(t, `SELECT count(*) FROM pg_trigger WHERE tgrelid = 'audit_logs'::regclass AND NOT tgisinternal
  AND tgname IN ('audit_logs_prevent_update', 'audit_logs_prevent_delete', 'audit_logs_guard_delete', 'audit_logs_prevent_truncate')`))

	res, err = audit.Run(ctx, audit.RunOptions{Config: e.cfg})
	require.NoError(t, err)
	require.True(t, res.GuardInstalled)
	require.Zero(t, res.MonthsUploaded)
	require.Equal(t, eligible, res.RowsDeleted)
	require.Zero(t, e.count(t, `SELECT count(*) FROM audit_logs WHERE changed_at < '2023-11-01'`))
	requireConserved(t, e, e.store, original)

	// The app's statements (no ip2a-ops setting) are refused, and so is an
	// archive delete naming a month that is not verified.
	total := e.count(t, `SELECT count(*) FROM audit_logs`)
	for _, tt := range []struct {
		name string
		sql  []string
		want string
	}{
		{"delete", []string{`DELETE FROM audit_logs WHERE id = (SELECT max(id) FROM audit_logs)`}, "immutable"},
		{"update", []string{`UPDATE audit_logs SET notes = 'changed' WHERE id = (SELECT max(id) FROM audit_logs)`}, "immutable"},
		{"truncate", []string{`TRUNCATE audit_logs`}, "immutable"},
		{"delete naming an online month", []string{`BEGIN`, `SET LOCAL ip2a_ops.archive_delete = '2025-05'`,
			`DELETE FROM audit_logs WHERE changed_at >= '2025-05-01' AND changed_at < '2025-06-01'`}, "not archived and verified"},
		{"delete naming a deleted month, rows of another", []string{`BEGIN`, `SET LOCAL ip2a_ops.archive_delete = '2022-03'`,
			`DELETE FROM audit_logs WHERE id = (SELECT max(id) FROM audit_logs)`}, "not archived and verified"},
	} {
		err := onConn(ctx, e.pool, tt.sql)
		require.ErrorContains(t, err, tt.want, tt.name)
		require.Equal(t, total, e.count(t, `SELECT count(*) FROM audit_logs`), tt.name)
	}
	require.Zero(t, e.count(t, `SELECT count(*) FROM audit_logs WHERE notes = 'changed'`))
	vr, err = audit.Verify(ctx, audit.VerifyOptions{Config: e.cfg})
	require.NoError(t, err)
	require.Equal(t, len(res.Months), vr.OK)
}
