// Package progress is how a running job says how far along it is: a phase
// name, units done and, where known, the total. A job adds to a Tracker
// (one atomic add on its hot path, nothing else); whoever wants to show it
// (the runner's heartbeat into the ledger, the terminal display, the
// metrics) takes a Snapshot when it likes. A nil *Tracker accepts every
// call and records nothing, so jobs report unconditionally.
package progress

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Unit names what a phase counts.
type Unit string

// The units jobs count in.
const (
	Bytes  Unit = "bytes"
	Rows   Unit = "rows"
	Tables Unit = "tables"
	Months Unit = "months"
	Checks Unit = "checks"
	Files  Unit = "files"
	Items  Unit = "items"
)

// State is one look at a job's progress. Its JSON form is stored in the
// run's ledger row and shown by `jobs status --json`; fields are only added.
type State struct {
	Phase string `json:"phase"`
	Unit  Unit   `json:"unit,omitempty"`
	Done  int64  `json:"done"`
	// Total is 0 when not known.
	Total int64 `json:"total,omitempty"`
	// PhaseStarted is when the phase began; Updated when this look was taken.
	PhaseStarted time.Time `json:"phase_started_at"`
	Updated      time.Time `json:"updated_at"`
	// Rate is units per second since the phase began (0 until there is one).
	Rate float64 `json:"rate_per_second,omitempty"`
}

// Fraction returns done/total in [0, 1], and false when the total is not
// known.
func (s State) Fraction() (float64, bool) {
	if s.Total <= 0 {
		return 0, false
	}
	return math.Min(1, math.Max(0, float64(s.Done)/float64(s.Total))), true
}

// Remaining estimates the time left in the phase at its rate so far, and
// false when there is no total or no rate yet.
func (s State) Remaining() (time.Duration, bool) {
	if s.Total <= 0 || s.Rate <= 0 {
		return 0, false
	}
	left := float64(s.Total-s.Done) / s.Rate
	if left < 0 {
		left = 0
	}
	return time.Duration(left * float64(time.Second)).Round(time.Second), true
}

// String renders the state for a person, for example
// "backup: 412 MiB of 770 MiB, 54%, 3s left" or "export: 1,204 rows".
func (s State) String() string {
	out := s.Phase + ": " + s.Unit.Format(s.Done)
	if s.Total > 0 {
		f, _ := s.Fraction()
		out += " of " + s.Unit.Format(s.Total) + fmt.Sprintf(", %d%%", int(f*100))
		if left, ok := s.Remaining(); ok {
			out += ", " + left.String() + " left"
		}
	}
	return out
}

// Format renders n in the unit: bytes in IEC units, counts with the unit
// name ("12 tables").
func (u Unit) Format(n int64) string {
	if u == Bytes {
		return FormatBytes(n)
	}
	if u == "" {
		return groupDigits(n)
	}
	return groupDigits(n) + " " + string(u)
}

// FormatBytes renders n bytes as B, KiB, MiB, GiB or TiB with at most one
// decimal ("412 MiB", "1.5 GiB").
func FormatBytes(n int64) string {
	const k = 1024
	if n < k {
		return strconv.FormatInt(n, 10) + " B"
	}
	v, unit := float64(n), ""
	for _, u := range []string{"KiB", "MiB", "GiB", "TiB", "PiB"} {
		v /= k
		unit = u
		if v < k {
			break
		}
	}
	if v >= 100 {
		return fmt.Sprintf("%.0f %s", v, unit)
	}
	return trimZero(fmt.Sprintf("%.1f", v)) + " " + unit
}

func trimZero(s string) string {
	if len(s) > 2 && s[len(s)-2:] == ".0" {
		return s[:len(s)-2]
	}
	return s
}

func groupDigits(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := n < 0
	if neg {
		s = s[1:]
	}
	out := make([]byte, 0, len(s)+len(s)/3)
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}

// Tracker holds a running job's progress. All methods are safe for
// concurrent use and do nothing on a nil *Tracker.
type Tracker struct {
	now func() time.Time

	done  atomic.Int64
	total atomic.Int64

	mu      sync.Mutex
	phase   string
	unit    Unit
	started time.Time
	seq     uint64 // bumped by every Phase, so a display can tell a new phase
}

// NewTracker returns an empty tracker; now is its clock (nil: time.Now).
func NewTracker(now func() time.Time) *Tracker {
	if now == nil {
		now = time.Now
	}
	return &Tracker{now: now}
}

// Phase starts a new phase counting unit, with total units to do (0 when
// not known): done goes back to 0.
func (t *Tracker) Phase(name string, unit Unit, total int64) {
	if t == nil {
		return
	}
	t.mu.Lock()
	t.phase, t.unit, t.started = name, unit, t.now()
	t.seq++
	t.done.Store(0)
	t.total.Store(total)
	t.mu.Unlock()
}

// SetTotal changes the current phase's total, once it is known.
func (t *Tracker) SetTotal(total int64) {
	if t != nil {
		t.total.Store(total)
	}
}

// Add counts n more units done in the current phase.
func (t *Tracker) Add(n int64) {
	if t != nil {
		t.done.Add(n)
	}
}

// Set sets the units done in the current phase.
func (t *Tracker) Set(done int64) {
	if t != nil {
		t.done.Store(done)
	}
}

// Snapshot returns the current state, and false before the first Phase
// (or on a nil tracker).
func (t *Tracker) Snapshot() (State, bool) {
	s, _, ok := t.snapshot()
	return s, ok
}

func (t *Tracker) snapshot() (State, uint64, bool) {
	if t == nil {
		return State{}, 0, false
	}
	t.mu.Lock()
	phase, unit, started, seq := t.phase, t.unit, t.started, t.seq
	t.mu.Unlock()
	if seq == 0 {
		return State{}, 0, false
	}
	now := t.now()
	s := State{Phase: phase, Unit: unit, Done: t.done.Load(), Total: t.total.Load(), PhaseStarted: started, Updated: now}
	if el := now.Sub(started).Seconds(); el > 0.2 && s.Done > 0 {
		s.Rate = float64(s.Done) / el
	}
	return s, seq, true
}

// Reader counts what is read through it on t (a nil t counts nothing).
func Reader(r io.Reader, t *Tracker) io.Reader {
	if t == nil {
		return r
	}
	return &reader{r: r, t: t}
}

type reader struct {
	r io.Reader
	t *Tracker
}

func (c *reader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.t.Add(int64(n))
	return n, err
}
