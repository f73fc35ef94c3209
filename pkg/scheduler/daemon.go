package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// RunRequest is one slot handed to Options.Run.
type RunRequest struct {
	Entry Entry
	// Slot is the scheduled instant the run fills (the ledger's slot).
	Slot time.Time
	// Kind is KindScheduled, or KindCatchUp for a missed slot run late.
	Kind string
}

// RunFunc runs one slot's command and returns its exit code. Its ctx is
// not cancelled by the daemon's shutdown at first: only when running jobs
// outlast Options.ShutdownTimeout.
type RunFunc func(ctx context.Context, req RunRequest) int

// Handoff hands slots to something that runs them elsewhere. Hand gets
// the transaction that claims the slot and must do its work in it: the
// claim commits only with the hand-off, so a slot is never claimed and
// dropped; when Hand fails, nothing is claimed and the daemon tries the
// slot again shortly.
type Handoff interface {
	// Takes reports whether the entry's slots are handed off.
	Takes(e Entry) bool
	Hand(ctx context.Context, tx pgx.Tx, req RunRequest) error
}

// Clock is the daemon's time source; tests substitute a fake one.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Options configure RunDaemon. Zero durations mean defaults.
type Options struct {
	Crontab *Crontab
	// Load re-reads the crontab when Reload fires (SIGHUP). A bad file is
	// logged and the current one kept.
	Load   func() (*Crontab, error)
	Reload <-chan struct{}
	// Claims is where slots are claimed (and the ledger consulted).
	Claims *Claims
	Run    RunFunc
	// Handoff, when set, takes the slots of the entries it accepts instead
	// of Run: it hands each to something that runs it elsewhere (a task
	// queue), in the transaction that claims the slot.
	Handoff Handoff
	Clock   Clock
	// MaxWait caps every wait (1m), so a wall-clock jump or a resume from
	// sleep is noticed within it.
	MaxWait time.Duration
	// LateAfter: a slot noticed later than this (5m) after its time was
	// missed, and runs only if the entry's catch-up policy allows.
	LateAfter time.Duration
	// ShutdownTimeout: after ctx is cancelled, running jobs get this long
	// (1m) to finish; then their context is cancelled (interrupted).
	ShutdownTimeout time.Duration
	// PruneAfter: claims older than this (400 days) are deleted at start.
	PruneAfter time.Duration
	Host       string
	PID        int
	Logger     *slog.Logger
	// Stats receives the counters; nil allocates one.
	Stats *Stats
}

// Validate names the first bad field.
func (o Options) Validate() error {
	switch {
	case o.Crontab == nil:
		return errors.New("scheduler: Options.Crontab is required")
	case o.Claims == nil:
		return errors.New("scheduler: Options.Claims is required")
	case o.Run == nil:
		return errors.New("scheduler: Options.Run is required")
	case o.Reload != nil && o.Load == nil:
		return errors.New("scheduler: Options.Load is required with Options.Reload")
	case o.MaxWait < 0 || o.LateAfter < 0 || o.ShutdownTimeout < 0 || o.PruneAfter < 0:
		return errors.New("scheduler: Options durations must not be negative")
	}
	return nil
}

// Result says how the daemon's run ended.
type Result struct {
	// Started counts the runs this daemon started.
	Started int64
	// Cancelled counts the runs still going at ShutdownTimeout, whose
	// context was cancelled.
	Cancelled int
}

type entryState struct {
	e       Entry
	next    Slot
	hasNext bool
	retryAt time.Time
	running int
	queued  *RunRequest
}

type daemon struct {
	o       Options
	log     *slog.Logger
	stats   *Stats
	jobsCtx context.Context

	mu       sync.Mutex
	entries  []*entryState
	stopping bool
	started  int64
	wg       sync.WaitGroup
}

// RunDaemon schedules the crontab's entries until ctx is cancelled, then
// stops scheduling, waits for running jobs up to ShutdownTimeout, cancels
// the rest and returns. It returns an error only for bad options.
func RunDaemon(ctx context.Context, o Options) (Result, error) {
	if err := o.Validate(); err != nil {
		return Result{}, err
	}
	if o.Clock == nil {
		o.Clock = realClock{}
	}
	if o.MaxWait == 0 {
		o.MaxWait = time.Minute
	}
	if o.LateAfter == 0 {
		o.LateAfter = 5 * time.Minute
	}
	if o.ShutdownTimeout == 0 {
		o.ShutdownTimeout = time.Minute
	}
	if o.PruneAfter == 0 {
		o.PruneAfter = 400 * 24 * time.Hour
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Stats == nil {
		o.Stats = &Stats{}
	}
	jobsCtx, cancelJobs := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelJobs()
	d := &daemon{o: o, log: o.Logger, stats: o.Stats, jobsCtx: jobsCtx}

	if n, err := o.Claims.Prune(ctx, o.PruneAfter); err != nil {
		d.log.Warn("could not prune old slot claims", "error", err)
	} else if n > 0 {
		d.log.Info("pruned old slot claims", "count", n)
	}
	now := d.now()
	d.setEntries(o.Crontab, now, true)
	d.log.Info("daemon started", "entries", len(o.Crontab.Entries), "host", o.Host, "pid", o.PID)
	last := now
	for {
		now = d.now()
		if now.Before(last.Add(-time.Second)) {
			// The wall clock went back: recompute from now. Slots that come
			// round again are already claimed and do not run twice.
			d.log.Warn("wall clock moved backwards; recomputing next slots", "by", last.Sub(now).String())
			d.mu.Lock()
			for _, es := range d.entries {
				es.next, es.hasNext = es.e.Schedule.Next(now)
			}
			d.mu.Unlock()
		}
		last = now
		d.processDue(ctx, now)
		d.stats.tick(now, len(d.entries))
		wait := d.untilNext(now)
		select {
		case <-ctx.Done():
			return d.drain(cancelJobs), nil
		case <-o.Clock.After(wait):
		case <-o.Reload:
			ct, err := o.Load()
			if err != nil {
				d.log.Error("crontab reload failed; keeping the current schedule", "error", err)
				continue
			}
			d.setEntries(ct, d.now(), false)
			d.stats.reloaded()
			d.log.Info("crontab reloaded", "entries", len(ct.Entries))
		}
	}
}

// now is the clock without its monotonic reading, so comparisons use the
// wall clock that slots are defined in.
func (d *daemon) now() time.Time { return d.o.Clock.Now().Round(0) }

// setEntries installs a crontab. At start each entry's latest past slot is
// due again if it is recent (LateAfter) or its catch-up policy allows it,
// so a restart or a long sleep still runs what was missed, once. On reload
// entries keep their state; new ones start from their next slot.
func (d *daemon) setEntries(ct *Crontab, now time.Time, startup bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	old := map[string]*entryState{}
	for _, es := range d.entries {
		old[es.e.Key] = es
	}
	var out []*entryState
	for _, e := range ct.Entries {
		d.stats.mu.Lock()
		d.stats.job(e.Job)
		d.stats.mu.Unlock()
		if es, ok := old[e.Key]; ok && es.e.Spec == e.Spec && es.e.Zone == e.Zone {
			es.e = e
			out = append(out, es)
			continue
		}
		es := &entryState{e: e}
		es.next, es.hasNext = e.Schedule.Next(now)
		if startup {
			if p, ok := e.Schedule.Prev(now); ok {
				late := now.Sub(p.At)
				if late <= d.o.LateAfter || e.CatchUp.Allows(late) {
					es.next, es.hasNext = p, true
				}
			}
		}
		out = append(out, es)
	}
	d.entries = out
}

func (d *daemon) untilNext(now time.Time) time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	wait := d.o.MaxWait
	for _, es := range d.entries {
		if !es.hasNext {
			continue
		}
		at := es.next.At
		if es.retryAt.After(at) {
			at = es.retryAt
		}
		if w := at.Sub(now); w < wait {
			wait = w
		}
	}
	if wait < 0 {
		wait = 0
	}
	return wait
}

func (d *daemon) processDue(ctx context.Context, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, es := range d.entries {
		if ctx.Err() != nil {
			return
		}
		if !es.hasNext || es.next.At.After(now) || now.Before(es.retryAt) {
			continue
		}
		e := es.e
		latest, missed := es.next, 0
		for i := 0; ; i++ {
			n, ok := e.Schedule.Next(latest.At)
			if !ok || n.At.After(now) {
				break
			}
			if i == 10000 {
				if p, ok := e.Schedule.Prev(now); ok {
					latest = p
				}
				break
			}
			latest, missed = n, missed+1
		}
		if missed > 0 {
			d.stats.mu.Lock()
			d.stats.job(e.Job).Slots[SlotMissed] += int64(missed)
			d.stats.mu.Unlock()
			d.log.Warn("missed slots (daemon stopped, machine asleep or clock jump); only the latest is considered",
				"job", e.Job, "entry", e.Key, "missed", missed, "first", es.next.At.Format(time.RFC3339))
		}
		kind := KindScheduled
		if late := now.Sub(latest.At); late > d.o.LateAfter {
			if !e.CatchUp.Allows(late) {
				d.stats.slot(e.Job, SlotMissed)
				d.log.Warn("missed slot not caught up (outside the entry's catch-up window)", "job", e.Job, "entry", e.Key,
					"slot", latest.At.Format(time.RFC3339), "late", late.Round(time.Second).String(), "catchup", e.CatchUp.String())
				es.next, es.hasNext = e.Schedule.Next(now)
				continue
			}
			kind = KindCatchUp
		}
		if err := d.fire(ctx, es, latest.At, kind); err != nil {
			// The database did not answer: keep the slot and retry shortly;
			// if it stays away the slot becomes late and catch-up rules apply.
			d.stats.slot(e.Job, SlotError)
			d.log.Error("could not claim slot; will retry", "job", e.Job, "entry", e.Key, "slot", latest.At.Format(time.RFC3339), "error", err)
			es.next, es.retryAt = latest, now.Add(5*time.Second)
			continue
		}
		es.next, es.hasNext = e.Schedule.Next(now)
	}
}

// fire claims one slot and starts, queues or records it. Called with d.mu held.
func (d *daemon) fire(ctx context.Context, es *entryState, slot time.Time, kind string) error {
	e := es.e
	if ctx.Err() != nil {
		return nil // stopping: claim nothing new; another replica may take it
	}
	// Not cancelled by the daemon's stop: a claim interrupted in flight may
	// still commit on the server, and a slot claimed but never started is
	// lost to every replica. Once claimed it starts, and the stop waits
	// for it like any running job.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if kind == KindCatchUp {
		ran, err := d.o.Claims.RanSince(cctx, e.Job, slot)
		if err != nil {
			return err
		}
		if ran {
			d.stats.slot(e.Job, SlotAlready)
			d.log.Debug("missed slot already covered by a later run", "job", e.Job, "slot", slot.Format(time.RFC3339))
			return nil
		}
	}
	params := ClaimParams{Entry: e.Key, Job: e.Job, Slot: slot, Kind: kind, Host: d.o.Host, PID: d.o.PID}
	if d.o.Handoff != nil && d.o.Handoff.Takes(e) {
		return d.handOff(cctx, es, params)
	}
	won, err := d.o.Claims.Claim(cctx, params)
	if err != nil {
		return err
	}
	if !won {
		d.stats.slot(e.Job, SlotLost)
		d.log.Debug("slot claimed by another daemon", "job", e.Job, "slot", slot.Format(time.RFC3339))
		return nil
	}
	req := RunRequest{Entry: e, Slot: slot, Kind: kind}
	if es.running > 0 && e.Overlap == OverlapQueue && es.queued == nil {
		es.queued = &req
		d.stats.slot(e.Job, SlotQueued)
		d.log.Info("job still running; slot queued", "job", e.Job, "slot", slot.Format(time.RFC3339))
		return nil
	}
	if es.running > 0 {
		// Started anyway: the runner finds the job busy and records a
		// visible skipped run for this slot.
		d.stats.slot(e.Job, SlotSkipped)
	}
	if kind == KindCatchUp {
		d.stats.slot(e.Job, SlotCatchUp)
		d.log.Info("catching up a missed slot", "job", e.Job, "slot", slot.Format(time.RFC3339), "catchup", e.CatchUp.String())
	} else {
		d.stats.slot(e.Job, SlotRan)
	}
	d.launch(es, req)
	return nil
}

// handOff claims the slot and hands it off in one transaction. Called
// with d.mu held.
func (d *daemon) handOff(ctx context.Context, es *entryState, p ClaimParams) error {
	tx, err := d.o.Claims.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("claim slot %s of %s: %w", p.Slot.UTC().Format(time.RFC3339), p.Entry, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after Commit
	won, err := d.o.Claims.claim(ctx, tx, p)
	if err != nil {
		return err
	}
	if !won {
		d.stats.slot(p.Job, SlotLost)
		d.log.Debug("slot claimed by another daemon", "job", p.Job, "slot", p.Slot.Format(time.RFC3339))
		return nil
	}
	t0, now := time.Now(), d.now()
	if err := d.o.Handoff.Hand(ctx, tx, RunRequest{Entry: es.e, Slot: p.Slot, Kind: p.Kind}); err != nil {
		return fmt.Errorf("hand off slot %s of %s: %w", p.Slot.UTC().Format(time.RFC3339), p.Entry, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("hand off slot %s of %s: commit: %w", p.Slot.UTC().Format(time.RFC3339), p.Entry, err)
	}
	if p.Kind == KindCatchUp {
		d.stats.slot(p.Job, SlotCatchUp)
	} else {
		d.stats.slot(p.Job, SlotRan)
	}
	d.started++
	d.stats.start(p.Job, now.Sub(p.Slot))
	d.stats.finish(p.Job, Outcome(0), time.Since(t0), d.now())
	return nil
}

// launch starts req in its own goroutine. Called with d.mu held.
func (d *daemon) launch(es *entryState, req RunRequest) {
	es.running++
	d.started++
	now := d.now()
	d.stats.start(req.Entry.Job, now.Sub(req.Slot))
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		t0 := time.Now()
		code := d.safeRun(req)
		d.stats.finish(req.Entry.Job, Outcome(code), time.Since(t0), d.now())
		d.mu.Lock()
		defer d.mu.Unlock()
		es.running--
		if es.running == 0 && es.queued != nil && !d.stopping {
			q := *es.queued
			es.queued = nil
			d.launch(es, q)
		}
	}()
}

// safeRun turns a panic in a job into a failed run (exit 1): the daemon
// goes on.
func (d *daemon) safeRun(req RunRequest) (code int) {
	defer func() {
		if p := recover(); p != nil {
			d.stats.panicked()
			d.log.Error("job panicked; counted as failed", "job", req.Entry.Job, "slot", req.Slot.Format(time.RFC3339), "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			code = 1
		}
	}()
	return d.o.Run(d.jobsCtx, req)
}

func (d *daemon) drain(cancelJobs context.CancelFunc) Result {
	d.mu.Lock()
	d.stopping = true
	running := 0
	for _, es := range d.entries {
		running += es.running
		es.queued = nil
	}
	d.mu.Unlock()
	done := make(chan struct{})
	go func() { d.wg.Wait(); close(done) }()
	res := Result{}
	if running > 0 {
		d.log.Info("stopping: waiting for running jobs", "running", running, "timeout", d.o.ShutdownTimeout.String())
	}
	select {
	case <-done:
	case <-d.o.Clock.After(d.o.ShutdownTimeout):
		d.mu.Lock()
		for _, es := range d.entries {
			res.Cancelled += es.running
		}
		d.mu.Unlock()
		d.log.Warn("shutdown timeout: cancelling running jobs", "running", res.Cancelled)
		cancelJobs()
		select {
		case <-done:
		case <-d.o.Clock.After(30 * time.Second):
			d.log.Error("jobs did not stop within 30s of cancellation")
		}
	}
	d.mu.Lock()
	res.Started = d.started
	d.mu.Unlock()
	d.log.Info("daemon stopped", "started", res.Started, "cancelled", res.Cancelled)
	return res
}
