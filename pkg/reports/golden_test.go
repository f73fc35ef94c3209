package reports

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/internal/fixturetest"
	"github.com/ip2a/ip2a-ops/internal/pgtest"
	"github.com/ip2a/ip2a-ops/pkg/fixture"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// TestGrantReportGolden compares every cell value, type and number format,
// the layout of every sheet and the document properties of a fixture
// grant's workbook with testdata, on both schema generations, with a frozen
// clock. Only the snapshot time comes from the server; it is masked.
func TestGrantReportGolden(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		gen  fixture.Generation
	}{
		{"newer", fixture.Newer},
		{"older", fixture.Older},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			url := fixturetest.NewTestDB(t, tc.gen, fixture.Options{Seed: 1, Now: frozenNow})
			pool := pgtest.Pool(t, url)
			dir := t.TempDir()
			res, err := GrantReport(t.Context(), GrantOptions{Pool: pool, Grant: "1", Out: dir, Now: frozenNow, ToolVersion: "test",
				From: time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC), To: time.Date(2026, 9, 30, 0, 0, 0, 0, time.UTC)})
			require.NoError(t, err)
			require.Len(t, res.Reports, 1)
			rep := res.Reports[0]
			require.Equal(t, filepath.Join(dir, "grant_report_"+rep.GrantNumber+"_2026-07-01_2026-09-30.xlsx"), rep.Path)
			_, got := reopen(t, rep.Path)
			maskSnapshot(got, rep.SnapshotAt)

			golden := filepath.Join("testdata", "grant_report_"+tc.name+".golden")
			if *update {
				require.NoError(t, os.WriteFile(golden, []byte(got.encode()), 0o644))
				return
			}
			raw, err := os.ReadFile(golden)
			require.NoError(t, err, "run go test ./pkg/reports -run TestGrantReportGolden -update to create it")
			if diff := diffDumps(decodeDump(t, string(raw)), got); len(diff) > 0 {
				t.Fatalf("workbook differs from %s (%d cells; go test -update rewrites it):\n%s", golden, len(diff), strings.Join(diff, "\n"))
			}
		})
	}
}

// maskSnapshot replaces the server's snapshot time, the one value a frozen
// clock cannot fix, wherever the workbook shows it.
func maskSnapshot(d workbookDump, at time.Time) {
	texts := []string{at.UTC().Format(time.DateTime), at.UTC().Format(time.RFC3339)}
	for k, v := range d {
		for _, s := range texts {
			v = strings.ReplaceAll(v, s, "<snapshot>")
		}
		d[k] = v
	}
	// The Summary cell holds it as a date serial number.
	for k, v := range d {
		if strings.HasPrefix(k, SheetSummary+"!A") && strings.HasSuffix(v, `"Data snapshot at (UTC)"`) {
			d[SheetSummary+"!B"+strings.TrimPrefix(k, SheetSummary+"!A")] = "<snapshot>"
		}
	}
}
