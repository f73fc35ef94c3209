package progress

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestStateString(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 12, 6, 2, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		s    State
		want string
	}{
		{name: "bytes with total and rate", s: State{Phase: "backup", Unit: Bytes, Done: 412 << 20, Total: 770 << 20,
			Rate: float64(100 << 20)}, want: "backup: 412 MiB of 770 MiB, 53%, 4s left"},
		{name: "no rate yet", s: State{Phase: "backup", Unit: Bytes, Done: 0, Total: 1 << 30}, want: "backup: 0 B of 1 GiB, 0%"},
		{name: "unknown total", s: State{Phase: "export", Unit: Rows, Done: 1204, Rate: 10}, want: "export: 1,204 rows"},
		{name: "months", s: State{Phase: "archive", Unit: Months, Done: 3, Total: 12, Rate: 1}, want: "archive: 3 months of 12 months, 25%, 9s left"},
		{name: "done beyond total", s: State{Phase: "x", Unit: Items, Done: 12, Total: 10, Rate: 1}, want: "x: 12 items of 10 items, 100%, 0s left"},
		{name: "fractional bytes", s: State{Phase: "restore", Unit: Bytes, Done: 1536, PhaseStarted: start}, want: "restore: 1.5 KiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, tt.s.String())
		})
	}
}

func TestFormatBytes(t *testing.T) {
	t.Parallel()
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1 KiB", 1536: "1.5 KiB",
		10 << 20: "10 MiB", 150 << 30: "150 GiB", 3 << 40: "3 TiB", -1: "-1 B"} {
		require.Equal(t, want, FormatBytes(n), "%d", n)
	}
}

func TestTrackerConcurrentAdds(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 6, 2, 0, 0, 0, time.UTC)
	clock := now
	var mu sync.Mutex
	tr := NewTracker(func() time.Time { mu.Lock(); defer mu.Unlock(); return clock })
	_, ok := tr.Snapshot()
	require.False(t, ok, "nothing before the first phase")
	tr.Phase("copy", Bytes, 0)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				tr.Add(3)
			}
		}()
	}
	wg.Wait()
	tr.SetTotal(48000)
	mu.Lock()
	clock = now.Add(4 * time.Second)
	mu.Unlock()
	s, ok := tr.Snapshot()
	require.True(t, ok)
	require.Equal(t, int64(24000), s.Done)
	require.Equal(t, int64(48000), s.Total)
	require.InDelta(t, 6000, s.Rate, 0.001)
	left, ok := s.Remaining()
	require.True(t, ok)
	require.Equal(t, 4*time.Second, left)

	tr.Phase("verify", Tables, 5)
	s, _ = tr.Snapshot()
	require.Equal(t, State{Phase: "verify", Unit: Tables, Total: 5, PhaseStarted: clock, Updated: clock}, s)
}

func TestNilTrackerIsQuiet(t *testing.T) {
	t.Parallel()
	var tr *Tracker
	tr.Phase("x", Rows, 1)
	tr.Add(1)
	tr.Set(2)
	tr.SetTotal(3)
	_, ok := tr.Snapshot()
	require.False(t, ok)
}

// syncBuffer lets the display goroutine write while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestDisplayDrawsPhasesAndClears(t *testing.T) {
	t.Parallel()
	var out syncBuffer
	tr := NewTracker(nil)
	d := StartDisplay(&out, tr, 10*time.Millisecond)
	tr.Phase("dump", Bytes, 4<<20)
	tr.Add(1 << 20)
	waitFor(t, func() bool { return strings.Contains(out.String(), "dump") && strings.Contains(out.String(), "MiB") })
	tr.Phase("verify", Tables, 7)
	tr.Add(3)
	waitFor(t, func() bool { return strings.Contains(out.String(), "verify") && strings.Contains(out.String(), "3/7") })
	d.Stop()
	d.Stop()
	drawn := out.String()
	// The last thing written is a cleared line: a carriage return and blanks.
	last := drawn[strings.LastIndex(drawn, "\r"):]
	require.Empty(t, strings.TrimSpace(last), "the display ends with the line cleared, got %q", last)
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
