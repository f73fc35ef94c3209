package backup

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite golden files")

// history is 400 days of nightly backups at 02:00 UTC up to the frozen
// clock, with a gap of ten days (a broken schedule), an extra manual backup
// on some days, and some verifications: passed, failed.
func history(now time.Time) []Manifest {
	var ms []Manifest
	day := now.Truncate(24 * time.Hour)
	for i := 0; i < 400; i++ {
		d := day.AddDate(0, 0, -i)
		if i >= 20 && i < 30 {
			continue // nothing ran for ten days
		}
		at := d.Add(2 * time.Hour)
		if at.After(now) {
			continue
		}
		m := Manifest{ID: at.Format("20060102T150405Z") + "-0000", StartedAt: at}
		switch {
		case i == 0 || i == 1:
			// The two newest have no verification at all.
		case i == 2:
			m.Verifications = []Verification{{Level: LevelRestore, OK: false, Error: "members differs"}}
		case i%7 == 3:
			m.Verifications = []Verification{{Level: LevelRestore, OK: true}}
		default:
			m.Verifications = []Verification{{Level: LevelChecksum, OK: true}}
		}
		ms = append(ms, m)
		if i%50 == 5 {
			manual := d.Add(15 * time.Hour)
			ms = append(ms, Manifest{ID: manual.Format("20060102T150405Z") + "-0001", StartedAt: manual,
				Verifications: []Verification{{Level: LevelChecksum, OK: false}}})
		}
	}
	return ms
}

func render(ds []Decision) string {
	var b strings.Builder
	for _, d := range ds {
		verdict := "delete"
		if d.Keep {
			verdict = "keep  "
		}
		fmt.Fprintf(&b, "%s %s %s\n", verdict, d.ID, strings.Join(d.Reasons, ", "))
	}
	return b.String()
}

// TestRetainGolden pins the retention decisions of several policies over a
// long, irregular history on a frozen clock.
func TestRetainGolden(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	hist := history(now)
	tests := []struct {
		name   string
		policy Policy
	}{
		{"default", DefaultPolicy},
		{"last3_yearly2", Policy{KeepLast: 3, KeepYearly: 2}},
		{"daily2", Policy{KeepDaily: 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := render(Retain(hist, tt.policy, now))
			path := filepath.Join("testdata", "retain_"+tt.name+".golden")
			if *update {
				require.NoError(t, os.MkdirAll("testdata", 0o755))
				require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
			}
			want, err := os.ReadFile(path)
			require.NoError(t, err, "run go test -run TestRetainGolden -update")
			require.Equal(t, string(want), got)
		})
	}
}

// TestRetainRules checks the rules one by one on small inputs.
func TestRetainRules(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	at := func(days int, verified *bool) Manifest {
		ts := now.AddDate(0, 0, -days)
		m := Manifest{ID: ts.Format("20060102T150405Z") + "-0000", StartedAt: ts}
		if verified != nil {
			m.Verifications = []Verification{{OK: *verified}}
		}
		return m
	}
	yes, no := true, false
	tests := []struct {
		name    string
		backups []Manifest
		policy  Policy
		keep    []string
	}{
		{"newest verified survives any policy", []Manifest{at(0, nil), at(1, nil), at(40, &yes)}, Policy{KeepLast: 1}, []string{"20261129T120000Z-0000", "20261020T120000Z-0000"}},
		{"a failed backup yields its day to a good one",
			[]Manifest{at(0, &no), {ID: "20261129T010000Z-0000", StartedAt: now.Add(-11 * time.Hour), Verifications: []Verification{{OK: true}}}},
			Policy{KeepDaily: 1}, []string{"20261129T010000Z-0000"}},
		{"future backups are kept", []Manifest{at(-2, nil), at(0, &yes)}, Policy{KeepLast: 1}, []string{"20261201T120000Z-0000", "20261129T120000Z-0000"}},
		{"periods with backups, not calendar days", []Manifest{at(100, nil), at(200, nil), at(300, nil)}, Policy{KeepDaily: 2}, []string{"20260821T120000Z-0000", "20260513T120000Z-0000"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var kept []string
			for _, d := range Retain(tt.backups, tt.policy, now) {
				if d.Keep {
					kept = append(kept, d.ID)
				}
			}
			require.Equal(t, tt.keep, kept)
		})
	}
	require.ErrorContains(t, Policy{}.Validate(), "keeps nothing")
	require.ErrorContains(t, Policy{KeepDaily: -1}.Validate(), "KeepDaily: -1 is negative")
}
