package audit_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/pkg/audit"
	"github.com/ip2a/ip2a-ops/pkg/fixture"
)

// The guard's range setting lets ip2a-ops delete verified months only:
// rows of a month in the range that is not verified make the statement
// fail whole, and a DELETE without the setting is refused before it
// starts, even when it would match no row.
func TestGuardRange(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fixture.Newer, 5, 20)
	ctx := t.Context()
	_, err := audit.Run(ctx, audit.RunOptions{Config: e.cfg, KeepOnline: true})
	require.NoError(t, err)
	_, err = audit.InstallGuard(ctx, e.cfg)
	require.NoError(t, err)
	total := e.count(t, `SELECT count(*) FROM audit_logs`)
	for _, tt := range []struct {
		name string
		sql  []string
		want string
	}{
		{"a range reaching an online month", []string{`BEGIN`, `SET LOCAL ip2a_ops.archive_delete = '2023-09..2023-11'`,
			`DELETE FROM audit_logs WHERE changed_at >= '2023-09-01' AND changed_at < '2023-12-01'`}, "lie outside the archived and verified months 2023-09..2023-11"},
		{"rows outside the range", []string{`BEGIN`, `SET LOCAL ip2a_ops.archive_delete = '2022-01..2022-02'`,
			`DELETE FROM audit_logs WHERE changed_at >= '2022-01-01' AND changed_at < '2022-04-01'`}, "lie outside"},
		{"a range of no verified month", []string{`BEGIN`, `SET LOCAL ip2a_ops.archive_delete = '2024-01..2024-03'`,
			`DELETE FROM audit_logs WHERE changed_at >= '2024-01-01' AND changed_at < '2024-02-01'`}, "not archived and verified"},
		{"a malformed range", []string{`BEGIN`, `SET LOCAL ip2a_ops.archive_delete = '2022-01..'`,
			`DELETE FROM audit_logs WHERE changed_at >= '2022-01-01' AND changed_at < '2022-02-01'`}, "immutable"},
		{"no setting, no row", []string{`DELETE FROM audit_logs WHERE false`}, "immutable"},
	} {
		err := onConn(ctx, e.pool, tt.sql)
		require.ErrorContains(t, err, tt.want, tt.name)
		require.Equal(t, total, e.count(t, `SELECT count(*) FROM audit_logs`), tt.name)
	}
	// Exactly verified months' rows go (rolled back here).
	err = onConn(ctx, e.pool, []string{`BEGIN`, `SET LOCAL ip2a_ops.archive_delete = '2022-01..2022-03'`,
		`DELETE FROM audit_logs WHERE changed_at >= '2022-01-01' AND changed_at < '2022-04-01'`})
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(audit.GuardSQL("ip2a_ops"), "-- ip2a-ops audit guard v2"))
}
