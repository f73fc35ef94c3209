package scheduler

import (
	"sort"
	"testing"
	"time"

	"github.com/robfig/cron/v3"
	"github.com/stretchr/testify/require"
)

func mustZone(t testing.TB, name string) *time.Location {
	t.Helper()
	l, err := time.LoadLocation(name)
	require.NoError(t, err)
	return l
}

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

// TestNextAcrossDST pins the slots around the 2026 US and EU transitions:
// a time in the spring-forward gap fires once at the transition, a repeated
// fall-back time fires once (the first time), and nothing else moves.
func TestNextAcrossDST(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		zone  string
		spec  string
		after string
		want  []string
		kinds []SlotKind
	}{
		{"US spring gap runs at the transition", "America/New_York", "30 2 * * *", "2026-03-07T00:00:00Z",
			[]string{"2026-03-07T07:30:00Z", "2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"}, []SlotKind{Normal, Gap, Normal}},
		{"US fall repeat runs once", "America/New_York", "30 1 * * *", "2026-10-31T00:00:00Z",
			[]string{"2026-10-31T05:30:00Z", "2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"}, []SlotKind{Normal, Repeat, Normal}},
		{"US hourly across fall back: 01:00 once", "America/New_York", "0 * * * *", "2026-11-01T03:30:00Z",
			[]string{"2026-11-01T04:00:00Z", "2026-11-01T05:00:00Z", "2026-11-01T07:00:00Z", "2026-11-01T08:00:00Z"}, []SlotKind{Normal, Repeat, Normal, Normal}},
		{"US quarter-hours in the gap collapse into one", "America/New_York", "*/30 * * * *", "2026-03-08T06:00:00Z",
			[]string{"2026-03-08T06:30:00Z", "2026-03-08T07:00:00Z", "2026-03-08T07:30:00Z"}, []SlotKind{Normal, Gap, Normal}},
		{"EU spring gap runs at the transition", "Europe/Berlin", "30 2 * * *", "2026-03-28T00:00:00Z",
			[]string{"2026-03-28T01:30:00Z", "2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"}, []SlotKind{Normal, Gap, Normal}},
		{"EU fall repeat runs once", "Europe/Berlin", "30 2 * * *", "2026-10-24T00:00:00Z",
			[]string{"2026-10-24T00:30:00Z", "2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"}, []SlotKind{Normal, Repeat, Normal}},
		{"UTC has no transitions", "UTC", "30 2 * * *", "2026-03-28T00:00:00Z",
			[]string{"2026-03-28T02:30:00Z", "2026-03-29T02:30:00Z"}, []SlotKind{Normal, Normal}},
		{"dom and dow both restricted: either", "UTC", "0 0 13 * 5", "2026-02-01T00:00:00Z",
			[]string{"2026-02-06T00:00:00Z", "2026-02-13T00:00:00Z", "2026-02-20T00:00:00Z"}, []SlotKind{Normal, Normal, Normal}},
		{"@every aligns to the epoch", "UTC", "@every 90s", "2026-01-01T00:00:10Z",
			[]string{"2026-01-01T00:01:30Z", "2026-01-01T00:03:00Z"}, []SlotKind{Normal, Normal}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := ParseSchedule(tt.spec, mustZone(t, tt.zone))
			require.NoError(t, err)
			at := utc(tt.after)
			for i, w := range tt.want {
				sl, ok := s.Next(at)
				require.True(t, ok)
				require.Equal(t, utc(w), sl.At, "slot %d", i)
				require.Equal(t, tt.kinds[i], sl.Kind, "slot %d kind", i)
				p, ok := s.Prev(sl.At)
				require.True(t, ok)
				require.Equal(t, sl.At, p.At, "Prev(slot) is the slot itself")
				at = sl.At
			}
		})
	}
}

// TestRobfigAloneGetsDSTWrong documents why slots are computed here: the
// library's own Next skips the spring gap and repeats the fall-back hour.
func TestRobfigAloneGetsDSTWrong(t *testing.T) {
	t.Parallel()
	ny := mustZone(t, "America/New_York")
	s, err := cron.ParseStandard("CRON_TZ=America/New_York 30 2 * * *")
	require.NoError(t, err)
	n := s.Next(time.Date(2026, 3, 7, 12, 0, 0, 0, ny))
	require.NotEqual(t, 8, n.In(ny).Day(), "robfig skips 8 March (the gap): %s", n)
	ours, _ := ParseSchedule("30 2 * * *", ny)
	sl, _ := ours.Next(time.Date(2026, 3, 7, 12, 0, 0, 0, ny))
	require.Equal(t, 8, sl.At.In(ny).Day())
}

// TestNextMatchesBruteForce checks Next against an independent definition
// over DST weeks: every real minute is mapped to its wall clock; a matching
// wall time fires at the first instant showing it, or, if no instant shows
// it (gap), at the first instant after it.
func TestNextMatchesBruteForce(t *testing.T) {
	t.Parallel()
	specs := []string{"30 2 * * *", "0 * * * *", "*/20 1-3 * * *", "15 1,2 * * 0", "0 3 * * *", "45 23 * * *"}
	windows := []struct{ zone, from string }{
		{"America/New_York", "2026-03-06T00:00:00Z"}, {"America/New_York", "2026-10-30T00:00:00Z"},
		{"Europe/Berlin", "2026-03-27T00:00:00Z"}, {"Europe/Berlin", "2026-10-23T00:00:00Z"},
		{"Australia/Lord_Howe", "2026-04-03T00:00:00Z"}, // half-hour shift
	}
	for _, w := range windows {
		loc := mustZone(t, w.zone)
		from := utc(w.from)
		to := from.Add(4 * 24 * time.Hour)
		for _, spec := range specs {
			s, err := ParseSchedule(spec, loc)
			require.NoError(t, err)
			want := bruteForce(s, loc, from, to)
			var got []time.Time
			for at := from; ; {
				sl, ok := s.Next(at)
				require.True(t, ok)
				if sl.At.After(to) {
					break
				}
				got = append(got, sl.At)
				at = sl.At
			}
			require.Equal(t, want, got, "%s in %s from %s", spec, w.zone, w.from)
		}
	}
}

func bruteForce(s Schedule, loc *time.Location, from, to time.Time) []time.Time {
	first := map[time.Time]time.Time{} // wall -> first instant showing it
	var instants []time.Time
	for at := from.Add(-26 * time.Hour); at.Before(to.Add(26 * time.Hour)); at = at.Add(time.Minute) {
		l := at.In(loc)
		wall := time.Date(l.Year(), l.Month(), l.Day(), l.Hour(), l.Minute(), 0, 0, time.UTC)
		if _, ok := first[wall]; !ok {
			first[wall] = at
		}
		instants = append(instants, at)
	}
	set := map[time.Time]bool{}
	startWall := from.Add(-24 * time.Hour).In(loc)
	w0 := time.Date(startWall.Year(), startWall.Month(), startWall.Day(), 0, 0, 0, 0, time.UTC)
	for wall := w0; wall.Before(w0.Add(7 * 24 * time.Hour)); wall = wall.Add(time.Minute) {
		if !s.dayMatches(wall) || s.spec.Hour&(1<<uint(wall.Hour())) == 0 || s.spec.Minute&(1<<uint(wall.Minute())) == 0 {
			continue
		}
		at, ok := first[wall]
		if !ok {
			for _, in := range instants {
				l := in.In(loc)
				if time.Date(l.Year(), l.Month(), l.Day(), l.Hour(), l.Minute(), 0, 0, time.UTC).After(wall) {
					at = in
					break
				}
			}
		}
		if at.After(from) && !at.After(to) {
			set[at] = true
		}
	}
	out := make([]time.Time, 0, len(set))
	for k := range set {
		out = append(out, k.UTC())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Before(out[j]) })
	return out
}

func TestParseScheduleRejects(t *testing.T) {
	t.Parallel()
	for _, spec := range []string{"61 * * * *", "* * * *", "@every 100ms", "@fortnightly", "CRON_TZ=UTC 0 0 * * *", "0 0 0 0 0 0"} {
		_, err := ParseSchedule(spec, nil)
		require.Error(t, err, spec)
	}
}
