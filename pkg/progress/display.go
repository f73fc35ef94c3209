package progress

import (
	"io"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
)

// Display draws a Tracker's progress as a live line on a terminal: phase,
// done of total, percentage, rate and time left (a spinner with the count
// when the total is not known). It polls the tracker, so the job pays
// nothing for it. Start it only when the output is a terminal.
type Display struct {
	w     io.Writer
	t     *Tracker
	every time.Duration

	stop chan struct{}
	done chan struct{}
	once sync.Once

	mu    sync.Mutex // serialises drawing and Write
	bar   *progressbar.ProgressBar
	seq   uint64
	total int64
}

// StartDisplay draws t on w every interval (default 200ms) until Stop.
func StartDisplay(w io.Writer, t *Tracker, every time.Duration) *Display {
	if every <= 0 {
		every = 200 * time.Millisecond
	}
	d := &Display{w: w, t: t, every: every, stop: make(chan struct{}), done: make(chan struct{})}
	go d.loop()
	return d
}

func (d *Display) loop() {
	defer close(d.done)
	tick := time.NewTicker(d.every)
	defer tick.Stop()
	for {
		select {
		case <-d.stop:
			d.mu.Lock()
			if d.bar != nil {
				_ = d.bar.Clear()
			}
			d.bar = nil
			d.mu.Unlock()
			return
		case <-tick.C:
			d.draw()
		}
	}
}

func (d *Display) draw() {
	s, seq, ok := d.t.snapshot()
	if !ok {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if seq != d.seq {
		if d.bar != nil {
			_ = d.bar.Clear()
		}
		d.bar, d.seq, d.total = d.newBar(s), seq, s.Total
	}
	if s.Total != d.total && s.Total > 0 {
		d.bar.ChangeMax64(s.Total)
		d.total = s.Total
	}
	_ = d.bar.Set64(s.Done)
}

func (d *Display) newBar(s State) *progressbar.ProgressBar {
	max := s.Total
	if max <= 0 {
		max = -1 // a spinner with the count
	}
	opts := []progressbar.Option{
		progressbar.OptionSetWriter(d.w),
		progressbar.OptionSetDescription(s.Phase),
		progressbar.OptionSetWidth(24),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionShowElapsedTimeOnFinish(),
		progressbar.OptionThrottle(d.every / 2),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionSetRenderBlankState(true),
	}
	if s.Unit == Bytes {
		opts = append(opts, progressbar.OptionShowCount(), progressbar.OptionShowBytes(true), progressbar.OptionUseIECUnits(true))
	} else {
		opts = append(opts, progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString(string(s.Unit)))
	}
	return progressbar.NewOptions64(max, opts...)
}

// Write writes p (a log line) on the display's terminal: it clears the
// progress line first, and the next tick draws it again below.
func (d *Display) Write(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.bar != nil {
		_ = d.bar.Clear()
	}
	return d.w.Write(p)
}

// Stop stops drawing and clears the line, so what is printed next stands
// alone. It is safe to call more than once.
func (d *Display) Stop() {
	if d == nil {
		return
	}
	d.once.Do(func() { close(d.stop) })
	<-d.done
}
