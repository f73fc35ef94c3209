package doctor

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/ip2a/ip2a-ops/pkg/scheduler"
)

// railwayDescriptors are the @-forms and the five fields Railway's cron
// schedule box wants instead.
var railwayDescriptors = map[string]string{
	"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
	"@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
}

// simulation bounds: a week of slots, at most this many per entry.
const (
	simulate    = 7 * 24 * time.Hour
	maxSlots    = 2100
	railwayNote = "Railway runs cron services in UTC, at most every 5 minutes, and skips a run while the previous one is still going"
)

// checkCrontab checks a crontab (the daemon's format, also system cron's)
// for Railway: every entry parses, runs in UTC, at least MinInterval apart,
// with five fields; entries sharing a minute are a warning (stagger them).
func checkCrontab(o Options) Check {
	c := Check{Name: "crontab fit for Railway"}
	if o.Crontab == nil {
		c.Status, c.Detail = Skipped, "no --crontab given"
		return c
	}
	name := o.CrontabName
	if name == "" {
		name = "crontab"
	}
	ct, err := scheduler.Parse(bytes.NewReader(o.Crontab), o.Resolve)
	var problems, warnings []string
	var perr *scheduler.ParseError
	switch {
	case errors.As(err, &perr):
		for _, l := range perr.Lines {
			problems = append(problems, fmt.Sprintf("line %d: %s", l.Line, l.Reason))
		}
	case err != nil:
		c.Status, c.Detail = Problem, err.Error()
		return c
	}
	if ct == nil {
		ct = &scheduler.Crontab{}
	}
	start := o.Now.UTC().Truncate(time.Minute)
	owners := map[time.Time][]int{}
	for _, e := range ct.Entries {
		if e.Zone != "" && e.Zone != "UTC" && e.Zone != "Etc/UTC" {
			problems = append(problems, fmt.Sprintf("line %d: runs in %s; Railway reads schedules in UTC (convert the times and drop CRON_TZ)", e.Line, e.Zone))
		}
		if e.Schedule.Every() > 0 {
			problems = append(problems, fmt.Sprintf("line %d: %s is daemon-only; Railway needs five cron fields", e.Line, e.Spec))
			continue
		}
		if five, ok := railwayDescriptors[strings.ToLower(e.Spec)]; ok {
			warnings = append(warnings, fmt.Sprintf("line %d: write %s as %q in Railway's schedule", e.Line, e.Spec, five))
		}
		var prev time.Time
		var slots []time.Time
		minGap := time.Duration(0)
		t := start
		for i := 0; i < maxSlots; i++ {
			s, ok := e.Schedule.Next(t)
			if !ok || s.At.Sub(start) > simulate {
				break
			}
			if !prev.IsZero() && (minGap == 0 || s.At.Sub(prev) < minGap) {
				minGap = s.At.Sub(prev)
			}
			slots = append(slots, s.At)
			prev, t = s.At, s.At
			if minGap > 0 && minGap < o.MinInterval {
				break
			}
		}
		// Frequent entries (metrics every 5 minutes) meet every job; only
		// jobs running hourly or rarer are worth staggering.
		if minGap == 0 || minGap >= time.Hour {
			for _, at := range slots {
				owners[at] = append(owners[at], e.Line)
			}
		}
		if minGap > 0 && minGap < o.MinInterval {
			problems = append(problems, fmt.Sprintf("line %d: %q runs every %s; Railway needs at least %s between runs", e.Line, e.Spec, minGap, o.MinInterval))
		}
	}
	clash := map[string]bool{}
	for _, lines := range owners {
		if len(lines) < 2 {
			continue
		}
		sort.Ints(lines)
		strs := make([]string, len(lines))
		for i, l := range lines {
			strs[i] = fmt.Sprint(l)
		}
		clash[strings.Join(strs, ", ")] = true
	}
	for k := range clash {
		warnings = append(warnings, fmt.Sprintf("lines %s start at the same minute; stagger them so jobs do not compete for the database", k))
	}
	sort.Strings(warnings)
	switch {
	case len(problems) > 0:
		c.Status = Problem
		c.Detail = fmt.Sprintf("%s: %s", name, strings.Join(append(problems, warnings...), "; "))
		c.Fix = railwayNote + ": fix the lines named (ip2a-ops daemon --check " + name + " validates the format)"
	case len(warnings) > 0:
		c.Status = Warning
		c.Detail = fmt.Sprintf("%s: %s", name, strings.Join(warnings, "; "))
		c.Fix = "stagger the entries; " + railwayNote
	default:
		c.Status = OK
		c.Detail = fmt.Sprintf("%s: %d entries, all UTC, at least %s apart", name, len(ct.Entries), o.MinInterval)
	}
	return c
}
