package integrity

import (
	"slices"
	"time"
)

// Comparison says what changed since a previous run. Only checks that ran
// (ok or findings) in both runs are compared, so a run limited by --only,
// or a check skipped or failed in either run, reports nothing it cannot know.
type Comparison struct {
	PreviousRunID int64     `json:"previous_run_id"`
	PreviousAsOf  time.Time `json:"previous_as_of"`
	// New: checks with findings now and none before. Resolved: the reverse.
	// Changed: findings in both runs, with a different count or sample.
	New      []CheckDelta `json:"new"`
	Resolved []CheckDelta `json:"resolved"`
	Changed  []CheckDelta `json:"changed"`
}

// CheckDelta is one check's change. NewIDs and ResolvedIDs compare the two
// samples, so they are exact only while counts fit in the sample size.
type CheckDelta struct {
	ID          string   `json:"id"`
	Severity    Severity `json:"severity"`
	Before      int64    `json:"before"`
	After       int64    `json:"after"`
	NewIDs      []string `json:"new_ids"`
	ResolvedIDs []string `json:"resolved_ids"`
}

// Compare returns what changed from prev (the run with id prevID) to cur.
func Compare(prevID int64, prev, cur Result) *Comparison {
	cmp := &Comparison{PreviousRunID: prevID, PreviousAsOf: prev.AsOf, New: []CheckDelta{}, Resolved: []CheckDelta{}, Changed: []CheckDelta{}}
	before := map[string]CheckResult{}
	for _, c := range prev.Checks {
		before[c.ID] = c
	}
	ran := func(c CheckResult) bool { return c.Status == StatusOK || c.Status == StatusFindings }
	for _, c := range cur.Checks {
		b, ok := before[c.ID]
		if !ok || !ran(b) || !ran(c) || (b.Count == 0 && c.Count == 0) {
			continue
		}
		d := CheckDelta{ID: c.ID, Severity: c.Severity, Before: b.Count, After: c.Count,
			NewIDs: minus(c.SampleIDs, b.SampleIDs), ResolvedIDs: minus(b.SampleIDs, c.SampleIDs)}
		switch {
		case b.Count == 0:
			cmp.New = append(cmp.New, d)
		case c.Count == 0:
			cmp.Resolved = append(cmp.Resolved, d)
		case b.Count != c.Count || len(d.NewIDs) > 0 || len(d.ResolvedIDs) > 0:
			cmp.Changed = append(cmp.Changed, d)
		}
	}
	return cmp
}

func minus(a, b []string) []string {
	out := []string{}
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}
