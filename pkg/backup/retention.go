package backup

import (
	"fmt"
	"sort"
	"time"

	"github.com/ip2a/ip2a-ops/pkg/exitcode"
)

// Policy is grandfather-father-son retention. Each Keep* counts periods
// that have backups (not calendar periods back from now), so a schedule
// that stopped for a month does not let the old backups age out: for each
// of the newest KeepDaily days with a backup, that day's newest backup is
// kept, and so on for ISO weeks, months and years, all in UTC. A backup kept
// for several reasons lists them all.
type Policy struct {
	KeepLast    int `json:"keep_last"`
	KeepDaily   int `json:"keep_daily"`
	KeepWeekly  int `json:"keep_weekly"`
	KeepMonthly int `json:"keep_monthly"`
	KeepYearly  int `json:"keep_yearly"`
}

// DefaultPolicy matches the app's runbook: daily copies for a week, weekly
// for a month, monthly for a year.
var DefaultPolicy = Policy{KeepDaily: 7, KeepWeekly: 4, KeepMonthly: 12}

// Validate names the first bad field; a policy must keep something.
func (p Policy) Validate() error {
	for _, f := range []struct {
		name string
		n    int
	}{{"KeepLast", p.KeepLast}, {"KeepDaily", p.KeepDaily}, {"KeepWeekly", p.KeepWeekly}, {"KeepMonthly", p.KeepMonthly}, {"KeepYearly", p.KeepYearly}} {
		if f.n < 0 {
			return exitcode.Fieldf(f.name, "%d is negative", f.n)
		}
	}
	if p.KeepLast+p.KeepDaily+p.KeepWeekly+p.KeepMonthly+p.KeepYearly == 0 {
		return exitcode.Fieldf("Policy", "keeps nothing; set at least one of KeepLast, KeepDaily, KeepWeekly, KeepMonthly, KeepYearly")
	}
	return nil
}

// Decision is the retention verdict for one backup.
type Decision struct {
	ID        string    `json:"id"`
	StartedAt time.Time `json:"started_at"`
	Keep      bool      `json:"keep"`
	// Reasons a kept backup is kept ("daily 2026-11-29", "newest verified").
	Reasons []string `json:"reasons,omitempty"`
}

// Retain decides which backups the policy keeps. It is a pure function of
// its inputs: backups in any order, the policy and the clock; decisions come
// back newest first. Whatever the policy, the newest verified backup is
// always kept, and so are backups that claim to start after now (a skewed
// clock is not a reason to delete). Within a period the newest backup whose
// last verification did not fail is preferred over a newer one that failed.
func Retain(backups []Manifest, p Policy, now time.Time) []Decision {
	bs := append([]Manifest(nil), backups...)
	sort.Slice(bs, func(i, j int) bool {
		if !bs[i].StartedAt.Equal(bs[j].StartedAt) {
			return bs[i].StartedAt.After(bs[j].StartedAt)
		}
		return bs[i].ID > bs[j].ID
	})
	reasons := make([][]string, len(bs))
	keep := func(i int, why string) { reasons[i] = append(reasons[i], why) }

	for i := 0; i < len(bs) && i < p.KeepLast; i++ {
		keep(i, fmt.Sprintf("last %d", i+1))
	}
	periods := []struct {
		name string
		n    int
		key  func(time.Time) string
	}{
		{"daily", p.KeepDaily, func(t time.Time) string { return t.Format("2006-01-02") }},
		{"weekly", p.KeepWeekly, func(t time.Time) string { y, w := t.ISOWeek(); return fmt.Sprintf("%d-W%02d", y, w) }},
		{"monthly", p.KeepMonthly, func(t time.Time) string { return t.Format("2006-01") }},
		{"yearly", p.KeepYearly, func(t time.Time) string { return t.Format("2006") }},
	}
	for _, per := range periods {
		if per.n == 0 {
			continue
		}
		// Group newest first; pick per period.
		var order []string
		members := map[string][]int{}
		for i, b := range bs {
			k := per.key(b.StartedAt.UTC())
			if _, ok := members[k]; !ok {
				order = append(order, k)
			}
			members[k] = append(members[k], i)
		}
		for n, k := range order {
			if n == per.n {
				break
			}
			pick := members[k][0]
			for _, i := range members[k] {
				if !failedLast(bs[i]) {
					pick = i
					break
				}
			}
			keep(pick, per.name+" "+k)
		}
	}
	for i, b := range bs {
		if b.Verified() {
			keep(i, "newest verified")
			break
		}
	}
	for i, b := range bs {
		if b.StartedAt.After(now) {
			keep(i, "starts after now")
		}
	}
	out := make([]Decision, len(bs))
	for i, b := range bs {
		out[i] = Decision{ID: b.ID, StartedAt: b.StartedAt, Keep: len(reasons[i]) > 0, Reasons: reasons[i]}
	}
	return out
}

func failedLast(m Manifest) bool {
	v, ok := m.LastVerification()
	return ok && !v.OK
}
