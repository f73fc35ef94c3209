package reports

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/internal/fixturetest"
	"github.com/ip2a/ip2a-ops/internal/pgtest"
	"github.com/ip2a/ip2a-ops/pkg/fixture"
)

// TestAllActiveSelectsWhatTheAppCallsActive pins --all-active on data as the
// app's seed writes it: every grant 'pending', is_active while it runs. The
// app's own summary of all active grants filters is_active and not
// is_deleted; so does the report, and it says which grants it left out.
func TestAllActiveSelectsWhatTheAppCallsActive(t *testing.T) {
	t.Parallel()
	url := fixturetest.NewTestDB(t, fixture.Newer, fixture.Options{Seed: 5, Now: frozenNow, Grants: 5})
	pool := pgtest.Pool(t, url)
	var active, all int
	require.NoError(t, pool.QueryRow(t.Context(), `SELECT count(*) FILTER (WHERE is_active AND NOT is_deleted), count(*)
		FROM grants WHERE status = 'pending'`).Scan(&active, &all))
	require.Equal(t, 5, all, "the seed writes every grant as pending")
	require.Positive(t, active)
	require.Less(t, active, all, "some grants have ended")
	// One running grant soft-deleted, one moved to 'active' by an officer.
	mustExec(t, pool, `UPDATE grants SET is_deleted = true, deleted_at = now()
		WHERE id = (SELECT min(id) FROM grants WHERE is_active)`)
	mustExec(t, pool, `UPDATE grants SET status = 'active' WHERE id = (SELECT max(id) FROM grants WHERE is_active AND NOT is_deleted)`)
	active--

	res, err := GrantReport(t.Context(), GrantOptions{Pool: pool, AllActive: true, Out: t.TempDir(), Now: frozenNow})
	require.NoError(t, err)
	require.Len(t, res.Reports, active)
	require.Len(t, res.LeftOut, all-active)
	reasons := map[string]int{}
	for _, g := range res.LeftOut {
		reasons[g.Reason]++
		require.NotEmpty(t, g.GrantNumber)
	}
	require.Equal(t, map[string]int{"deleted (is_deleted)": 1, "not active (is_active is false)": all - active - 1}, reasons)

	// --status narrows; the pending ones are left out with the reason.
	res, err = GrantReport(t.Context(), GrantOptions{Pool: pool, AllActive: true, Statuses: []string{"active"}, Out: t.TempDir(), Now: frozenNow})
	require.NoError(t, err)
	require.Len(t, res.Reports, 1)
	pendingLeft := 0
	for _, g := range res.LeftOut {
		if g.Reason == `status "pending" is not one of --status active` {
			pendingLeft++
		}
	}
	require.Equal(t, active-1, pendingLeft)

	// Nothing selected is an error that says why, not an empty success.
	res, err = GrantReport(t.Context(), GrantOptions{Pool: pool, AllActive: true, Statuses: []string{"suspended"}, Out: t.TempDir(), Now: frozenNow})
	require.ErrorIs(t, err, ErrNothingToReport)
	require.ErrorContains(t, err, "all 5 grants left out")
	require.Empty(t, res.Reports)
	require.Len(t, res.LeftOut, 5)

	_, err = GrantReport(t.Context(), GrantOptions{Pool: pool, AllActive: true, Statuses: []string{"Active"}, Out: t.TempDir(), Now: frozenNow})
	require.ErrorIs(t, err, ErrBadStatus)
	require.ErrorContains(t, err, "pending, active, completed, closed, suspended")
}

func TestAllActiveStatusOnOlderSchema(t *testing.T) {
	t.Parallel()
	url := fixturetest.NewTestDB(t, fixture.Older, fixture.Options{Seed: 5, Now: frozenNow, Grants: 3})
	pool := pgtest.Pool(t, url)
	res, err := GrantReport(t.Context(), GrantOptions{Pool: pool, AllActive: true, Out: t.TempDir(), Now: frozenNow})
	require.NoError(t, err)
	require.NotEmpty(t, res.Reports)
	_, err = GrantReport(t.Context(), GrantOptions{Pool: pool, AllActive: true, Statuses: []string{"active"}, Out: t.TempDir(), Now: frozenNow})
	require.ErrorIs(t, err, ErrNoStatus)
}
