// Package scheduler is ip2a-ops's built-in scheduler: it reads the same
// crontab file system cron reads, computes each entry's slots itself (so
// daylight-saving changes neither skip nor double a run), claims every slot
// in the database so several daemons run it once, catches up missed slots
// within a per-entry window, and runs each job through a caller-supplied
// function (the CLI runs it in-process through the runner and ledger).
package scheduler

import (
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// SlotKind says how a slot's wall-clock time maps onto real time.
type SlotKind string

const (
	// Normal: the wall-clock time exists exactly once.
	Normal SlotKind = ""
	// Gap: the wall-clock time falls in a spring-forward gap; the slot fires
	// once, at the transition.
	Gap SlotKind = "gap"
	// Repeat: the wall-clock time occurs twice (fall back); the slot fires
	// once, at the first occurrence.
	Repeat SlotKind = "repeat"
)

// Slot is one scheduled firing.
type Slot struct {
	// At is the instant the slot fires, in UTC. It is the slot's identity
	// in the claims table and the ledger's slot column.
	At time.Time
	// Wall is the wall-clock time the schedule names, as a UTC-located
	// value holding the zone's civil fields (a gap time has no instant).
	Wall time.Time
	Kind SlotKind
}

// Schedule is a parsed schedule spec in a zone. The zero value is invalid.
type Schedule struct {
	text  string
	spec  *cron.SpecSchedule // nil for @every
	every time.Duration
	loc   *time.Location
}

// The standard five fields and the descriptors (@daily, @every 1h, ...).
// Seconds are not accepted: system cron has none.
var specParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ParseSchedule parses a five-field spec or a descriptor with robfig/cron
// and binds it to loc (UTC when nil). robfig's own Next is not used: it
// skips spring-forward slots and doubles fall-back ones.
func ParseSchedule(text string, loc *time.Location) (Schedule, error) {
	if loc == nil {
		loc = time.UTC
	}
	text = strings.Join(strings.Fields(text), " ")
	if strings.HasPrefix(text, "TZ=") || strings.HasPrefix(text, "CRON_TZ=") {
		return Schedule{}, fmt.Errorf("put the zone on its own CRON_TZ= line")
	}
	if v, ok := strings.CutPrefix(text, "@every "); ok {
		// robfig rounds 100ms up to 1s silently; say so instead.
		if d, err := time.ParseDuration(v); err == nil && (d < time.Second || d%time.Second != 0) {
			return Schedule{}, fmt.Errorf("schedule %q: @every needs whole seconds, at least 1s", text)
		}
	}
	s, err := specParser.Parse(text)
	if err != nil {
		return Schedule{}, fmt.Errorf("schedule %q: %w", text, err)
	}
	switch v := s.(type) {
	case *cron.SpecSchedule:
		return Schedule{text: text, spec: v, loc: loc}, nil
	case cron.ConstantDelaySchedule:
		if v.Delay < time.Second {
			return Schedule{}, fmt.Errorf("schedule %q: @every needs at least 1s", text)
		}
		return Schedule{text: text, every: v.Delay, loc: time.UTC}, nil
	default:
		return Schedule{}, fmt.Errorf("schedule %q: unsupported kind %T", text, s)
	}
}

// String returns the spec as written (whitespace normalised).
func (s Schedule) String() string { return s.text }

// Location is the zone the spec is read in (UTC for @every).
func (s Schedule) Location() *time.Location { return s.loc }

// Every is the period of an @every schedule, 0 otherwise.
func (s Schedule) Every() time.Duration { return s.every }

// Next returns the first slot strictly after t; ok is false when there is
// none within five years (e.g. 30 February).
//
// @every D slots are the multiples of D since the Unix epoch, so every
// replica computes the same slots whatever time it started.
func (s Schedule) Next(t time.Time) (Slot, bool) {
	if s.every > 0 {
		d := s.every.Nanoseconds()
		n := t.UnixNano()
		k := n / d
		if n < 0 && n%d != 0 {
			k--
		}
		at := time.Unix(0, (k+1)*d).UTC()
		return Slot{At: at, Wall: at}, true
	}
	if s.spec == nil {
		return Slot{}, false
	}
	w := t.In(s.loc)
	start := time.Date(w.Year(), w.Month(), w.Day(), w.Hour(), w.Minute(), 0, 0, time.UTC)
	day := time.Date(w.Year(), w.Month(), w.Day(), 0, 0, 0, 0, time.UTC)
	// Walk wall-clock days, then hours and minutes in order. Mapping a wall
	// time to an instant is monotone (gap -> transition, repeat -> first),
	// so the first candidate past t is the answer.
	for i := 0; i < 5*366+1; i++ {
		d := day.AddDate(0, 0, i)
		if !s.dayMatches(d) {
			continue
		}
		for h := 0; h < 24; h++ {
			if s.spec.Hour&(1<<uint(h)) == 0 {
				continue
			}
			for m := 0; m < 60; m++ {
				if s.spec.Minute&(1<<uint(m)) == 0 {
					continue
				}
				wall := d.Add(time.Duration(h)*time.Hour + time.Duration(m)*time.Minute)
				if wall.Before(start) {
					continue
				}
				at, kind := Resolve(wall, s.loc)
				if at.After(t) {
					return Slot{At: at.UTC(), Wall: wall, Kind: kind}, true
				}
			}
		}
	}
	return Slot{}, false
}

// Prev returns the latest slot at or before t; ok is false when there is
// none within five years.
func (s Schedule) Prev(t time.Time) (Slot, bool) {
	if s.every > 0 {
		d := s.every.Nanoseconds()
		n := t.UnixNano()
		k := n / d
		if n < 0 && n%d != 0 {
			k--
		}
		at := time.Unix(0, k*d).UTC()
		return Slot{At: at, Wall: at}, true
	}
	// Look back in growing steps so a minutely spec costs a few dozen Next
	// calls and a yearly one still finds its slot.
	for _, back := range []time.Duration{time.Hour, 26 * time.Hour, 8 * 24 * time.Hour, 32 * 24 * time.Hour, 367 * 24 * time.Hour, 5 * 366 * 24 * time.Hour} {
		s0, ok := s.Next(t.Add(-back))
		if !ok || s0.At.After(t) {
			continue
		}
		for {
			n, ok := s.Next(s0.At)
			if !ok || n.At.After(t) {
				return s0, true
			}
			s0 = n
		}
	}
	return Slot{}, false
}

const starBit = 1 << 63

// dayMatches follows cron: when both day-of-month and day-of-week are
// restricted, either may match; otherwise both must.
func (s Schedule) dayMatches(d time.Time) bool {
	sp := s.spec
	if sp.Month&(1<<uint(d.Month())) == 0 {
		return false
	}
	dom := sp.Dom&(1<<uint(d.Day())) != 0
	dow := sp.Dow&(1<<uint(d.Weekday())) != 0
	if sp.Dom&starBit != 0 || sp.Dow&starBit != 0 {
		return dom && dow
	}
	return dom || dow
}

// Resolve maps a wall-clock time (civil fields in a UTC-located value) in
// loc to the instant a slot fires: the time itself when it exists once, the
// first occurrence when it exists twice (Repeat), and the transition instant
// when it falls in a spring-forward gap (Gap).
func Resolve(wall time.Time, loc *time.Location) (time.Time, SlotKind) {
	if loc == time.UTC {
		return wall, Normal
	}
	// Offsets two days either side: real zones change at most once in that
	// span, so the wall time's candidates are wall minus each.
	_, before := wall.Add(-48 * time.Hour).In(loc).Zone()
	_, after := wall.Add(48 * time.Hour).In(loc).Zone()
	var found []time.Time
	for _, off := range []int{before, after} {
		at := wall.Add(-time.Duration(off) * time.Second)
		if sameWall(at.In(loc), wall) && (len(found) == 0 || !found[0].Equal(at)) {
			found = append(found, at)
		}
	}
	switch len(found) {
	case 1:
		return found[0].In(loc), Normal
	case 2:
		if found[1].Before(found[0]) {
			found[0] = found[1]
		}
		return found[0].In(loc), Repeat
	}
	// In the gap: wall minus the earlier offset lands after the transition,
	// whose start ZoneBounds gives.
	at := wall.Add(-time.Duration(before) * time.Second).In(loc)
	start, _ := at.ZoneBounds()
	if start.IsZero() {
		return at, Gap
	}
	return start.In(loc), Gap
}

func sameWall(t, wall time.Time) bool {
	y, mo, d := t.Date()
	wy, wmo, wd := wall.Date()
	return y == wy && mo == wmo && d == wd && t.Hour() == wall.Hour() && t.Minute() == wall.Minute() && t.Second() == wall.Second()
}
