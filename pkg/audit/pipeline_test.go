package audit_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/pkg/audit"
	"github.com/ip2a/ip2a-ops/pkg/fixture"
)

// Run overlaps months (export N+2, verify N+1, delete N). Cancelled after
// the first month, it must return only once every stage has stopped, with
// no more than one month in flight between two stages: one month deleted,
// at most two more archived, none beyond. A rerun then finishes with every
// row accounted for once.
func TestRunCancelledStopsEveryStageWithinTwoMonths(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fixture.Newer, 5, 30)
	_, err := audit.InstallGuard(t.Context(), e.cfg)
	require.NoError(t, err)
	original := e.ids(t)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	progress := 0
	res, err := audit.Run(ctx, audit.RunOptions{Config: e.cfg, ProgressFunc: func(audit.RunResult) {
		progress++
		cancel()
	}})
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, 1, progress)
	require.Equal(t, 1, res.MonthsDeleted)

	// Run has returned: the stages are done, so these counts are final.
	recorded := e.count(t, `SELECT count(*) FROM ip2a_ops.audit_archive_months`)
	deleted := e.count(t, `SELECT count(*) FROM ip2a_ops.audit_archive_months WHERE state = 'deleted'`)
	require.Equal(t, int64(1), deleted)
	require.LessOrEqual(t, recorded, int64(3), "at most one month in flight between two stages")
	objs, err := e.store.List(t.Context(), audit.DefaultPrefix+"/")
	require.NoError(t, err)
	require.LessOrEqual(t, len(objs), 2*3, "data and manifest of at most three months")
	requireConserved(t, e, e.store, original)

	res, err = audit.Run(t.Context(), audit.RunOptions{Config: e.cfg})
	require.NoError(t, err)
	require.Positive(t, res.MonthsDeleted)
	require.Zero(t, e.count(t, `SELECT count(*) FROM audit_logs WHERE changed_at < '2023-11-01'`))
	requireConserved(t, e, e.store, original)
}
