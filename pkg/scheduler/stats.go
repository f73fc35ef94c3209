package scheduler

import (
	"sort"
	"sync"
	"time"
)

// Slot outcomes counted per job by the daemon.
const (
	SlotRan     = "ran"     // claimed by this daemon and started
	SlotLost    = "lost"    // another daemon claimed it first
	SlotMissed  = "missed"  // too late to run (outside the catch-up window)
	SlotCatchUp = "catchup" // claimed and started late, as a catch-up
	SlotQueued  = "queued"  // claimed while the job ran; waits (overlap=queue)
	SlotSkipped = "skipped" // started while the job ran; recorded as skipped (exit 4)
	SlotAlready = "already" // a catch-up found the job already ran since
	SlotError   = "error"   // the claim failed (database unreachable)
)

// Stats are the daemon's counters, shared with the metrics endpoint. All
// methods are safe for concurrent use; the zero value is ready.
type Stats struct {
	mu       sync.Mutex
	started  time.Time
	lastTick time.Time
	entries  int
	reloads  int64
	panics   int64
	jobs     map[string]*JobStats
}

// JobStats are one job's counters in this daemon.
type JobStats struct {
	Slots         map[string]int64 `json:"slots"`
	Outcomes      map[string]int64 `json:"outcomes"`
	Running       int              `json:"running"`
	LastLatency   time.Duration    `json:"-"`
	MaxLatency    time.Duration    `json:"-"`
	LastDuration  time.Duration    `json:"-"`
	LastSuccessAt time.Time        `json:"last_success_at"`
}

// Snapshot is a copy of Stats at one moment.
type Snapshot struct {
	Started  time.Time
	LastTick time.Time
	Entries  int
	Reloads  int64
	Panics   int64
	Jobs     map[string]JobStats
}

// JobNames returns the snapshot's jobs sorted.
func (s Snapshot) JobNames() []string {
	out := make([]string, 0, len(s.Jobs))
	for k := range s.Jobs {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (s *Stats) job(name string) *JobStats {
	if s.jobs == nil {
		s.jobs = map[string]*JobStats{}
	}
	j := s.jobs[name]
	if j == nil {
		j = &JobStats{Slots: map[string]int64{}, Outcomes: map[string]int64{}}
		s.jobs[name] = j
	}
	return j
}

func (s *Stats) slot(job, outcome string) {
	s.mu.Lock()
	s.job(job).Slots[outcome]++
	s.mu.Unlock()
}

func (s *Stats) start(job string, latency time.Duration) {
	s.mu.Lock()
	j := s.job(job)
	j.Running++
	j.LastLatency = latency
	if latency > j.MaxLatency {
		j.MaxLatency = latency
	}
	s.mu.Unlock()
}

func (s *Stats) finish(job, outcome string, d time.Duration, at time.Time) {
	s.mu.Lock()
	j := s.job(job)
	j.Running--
	j.Outcomes[outcome]++
	if outcome != OutcomeSkipped {
		j.LastDuration = d
	}
	if outcome == OutcomeSucceeded {
		j.LastSuccessAt = at
	}
	s.mu.Unlock()
}

func (s *Stats) tick(now time.Time, entries int) {
	s.mu.Lock()
	if s.started.IsZero() {
		s.started = now
	}
	s.lastTick, s.entries = now, entries
	s.mu.Unlock()
}

func (s *Stats) reloaded() { s.mu.Lock(); s.reloads++; s.mu.Unlock() }
func (s *Stats) panicked() { s.mu.Lock(); s.panics++; s.mu.Unlock() }

// Snapshot copies the counters.
func (s *Stats) Snapshot() Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := Snapshot{Started: s.started, LastTick: s.lastTick, Entries: s.entries, Reloads: s.reloads, Panics: s.panics, Jobs: map[string]JobStats{}}
	for k, j := range s.jobs {
		c := *j
		c.Slots, c.Outcomes = map[string]int64{}, map[string]int64{}
		for a, b := range j.Slots {
			c.Slots[a] = b
		}
		for a, b := range j.Outcomes {
			c.Outcomes[a] = b
		}
		out.Jobs[k] = c
	}
	return out
}

// Run outcomes by exit code, as the ledger names them.
const (
	OutcomeSucceeded   = "succeeded"
	OutcomeProblems    = "problems"
	OutcomeFailed      = "failed"
	OutcomeSkipped     = "skipped"
	OutcomeInterrupted = "interrupted"
)

// Outcome names an exit code of ip2a-ops: 0 succeeded, 3 problems (ran and
// found problems), 4 skipped, 130 interrupted, anything else failed.
func Outcome(code int) string {
	switch code {
	case 0:
		return OutcomeSucceeded
	case 3:
		return OutcomeProblems
	case 4:
		return OutcomeSkipped
	case 130:
		return OutcomeInterrupted
	}
	return OutcomeFailed
}
