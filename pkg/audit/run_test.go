package audit_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/pkg/audit"
	"github.com/ip2a/ip2a-ops/pkg/fixture"
	"github.com/ip2a/ip2a-ops/pkg/progress"
)

func TestRunArchivesVerifiesAndDeletesBehindGuard(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fixture.Newer, 5, 40)
	ctx := t.Context()
	total := e.count(t, `SELECT count(*) FROM audit_logs`)
	eligible := e.count(t, `SELECT count(*) FROM audit_logs WHERE changed_at < '2023-11-01'`)
	require.Positive(t, eligible)

	// Without the guard: archives and verifies, deletes nothing, says why.
	tr := progress.NewTracker(nil)
	res, err := audit.Run(ctx, audit.RunOptions{Config: e.cfg, Tracker: tr})
	require.NoError(t, err)
	st0, ok := tr.Snapshot()
	require.True(t, ok)
	require.Equal(t, "archive", st0.Phase)
	require.Equal(t, int64(len(res.Months)), st0.Done, "every planned month counted once")
	require.Equal(t, st0.Total, st0.Done)
	require.False(t, res.GuardInstalled)
	require.Contains(t, res.DeleteSkipped, "install-guard")
	require.Equal(t, audit.Month{Year: 2023, Month: 10}, res.LastEligible)
	require.Equal(t, eligible, res.RowsArchived)
	require.Zero(t, res.RowsDeleted)
	require.Equal(t, total, e.count(t, `SELECT count(*) FROM audit_logs`))
	require.Equal(t, len(res.Months), res.MonthsUploaded)

	st, err := audit.InstallGuard(ctx, e.cfg)
	require.NoError(t, err)
	require.True(t, st.Installed, "missing: %v", st.Missing)

	// With it: nothing uploaded again, every month deleted.
	res, err = audit.Run(ctx, audit.RunOptions{Config: e.cfg})
	require.NoError(t, err)
	require.Zero(t, res.MonthsUploaded)
	require.Equal(t, eligible, res.RowsDeleted)
	require.Equal(t, total-eligible, e.count(t, `SELECT count(*) FROM audit_logs`))
	require.Zero(t, e.count(t, `SELECT count(*) FROM audit_logs WHERE changed_at < '2023-11-01'`))

	// A third run has nothing to do.
	res, err = audit.Run(ctx, audit.RunOptions{Config: e.cfg})
	require.NoError(t, err)
	require.Empty(t, res.Months)
}
