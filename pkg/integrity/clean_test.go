package integrity

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/pkg/fixture"
)

// The clean fixture yields no finding on either schema generation, with
// the file checks on; what the older generation lacks is skipped, with the
// reason.
func TestCleanFixtureHasNoFindings(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		g       fixture.Generation
		skipped map[string]string
	}{
		{name: "newer", g: fixture.Newer, skipped: map[string]string{}},
		{name: "older", g: fixture.Older, skipped: map[string]string{
			"grant_enrollment_after_grant_end":              "table grant_enrollments does not exist",
			"grant_enrollment_completion_before_enrollment": "table grant_enrollments does not exist",
			"grant_enrollment_outcome_without_date":         "table grant_enrollments does not exist",
			"grant_enrollment_placement_without_employment": "table grant_enrollments does not exist; enum type grant_outcome does not exist",
			"audit_trigger_missing":                         "older schema generation: audit_logs never had immutability triggers",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pool, _ := cloneDB(t, tc.g)
			res, err := Run(t.Context(), Options{Pool: pool, Files: fileStore(t)})
			require.NoError(t, err)
			require.Empty(t, findings(res))
			cat, err := Catalogue("")
			require.NoError(t, err)
			require.Len(t, res.Checks, len(cat))
			skipped := map[string]string{}
			for _, c := range res.Checks {
				if c.Status == StatusSkipped {
					skipped[c.ID] = c.Reason
				}
			}
			require.Equal(t, tc.skipped, skipped)
			require.Equal(t, len(cat)-len(tc.skipped), res.Totals.OK)
		})
	}
}
