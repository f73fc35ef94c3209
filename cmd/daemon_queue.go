package cmd

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/ip2a/ip2a-ops/pkg/scheduler"
	"github.com/ip2a/ip2a-ops/pkg/tasks"
)

// enqueues reports whether the entry's slots go to the task queue: its
// enqueue= option, else the daemon's --enqueue.
func enqueues(e scheduler.Entry, daemonDefault bool) bool {
	if e.Enqueue != nil {
		return *e.Enqueue
	}
	return daemonDefault
}

// slotQueue is the insert-only task service the daemon hands slots to.
// When some entry enqueues, River's tables must exist now: a daemon that
// would fail every slot later refuses to start instead.
func (d *deps) slotQueue(ctx context.Context, ct *scheduler.Crontab, daemonDefault bool) (*tasks.River, error) {
	pool, err := d.opsDB(ctx)
	if err != nil {
		return nil, err
	}
	for _, e := range ct.Entries {
		if enqueues(e, daemonDefault) && isJobCommand(e.Args) {
			if err := tasks.CheckSchema(ctx, pool, d.g.schema); err != nil {
				return nil, err
			}
			break
		}
	}
	return tasks.NewRiver(pool, tasks.RiverOptions{Schema: d.g.schema, Logger: d.logger})
}

// enqueueSlot queues the captured job for the slot: one task per slot
// however many daemons try (the slot claim lets one through, and the task
// is unique by kind, args and the slot's second), scheduled at the slot so
// a worker runs it at once, with the slot in its metadata for the ledger.
func (d *deps) enqueueSlot(ctx context.Context, queue *tasks.River, req scheduler.RunRequest) error {
	c := &capturedJob{Kind: d.captured.kind, Args: d.captured.args, MaxRuntime: d.g.maxRuntime}
	slot := req.Slot.UTC()
	e, err := queue.Enqueue(ctx, c.Kind, c.Args, tasks.EnqueueOptions{ScheduledAt: slot, UniqueFor: time.Second, Metadata: c.metadata(&slot)})
	if err != nil {
		return fmt.Errorf("hand slot %s of %s to the queue: %w", slot.Format(time.RFC3339), req.Entry.Job, err)
	}
	d.logger.Info("slot handed to the task queue", "job", req.Entry.Job, "kind", c.Kind, "slot", slot.Format(time.RFC3339),
		"task_id", int64(e.ID), "duplicate", e.Duplicate)
	return nil
}

// isJobCommand reports whether the command line runs a registry job (and
// so can be queued), as opposed to metrics or jobs status.
func isJobCommand(args []string) bool {
	d := newDeps(Env{Stdout: io.Discard, Stderr: io.Discard, Getenv: func(string) string { return "" }, Now: time.Now})
	defer d.close()
	root := newRootCmd(d)
	c, _, err := root.Find(args)
	return err == nil && c.Annotations[jobAnnotation] != ""
}

// checkEnqueue rejects enqueue=true on an entry whose command is not a
// job: nothing could run it from the queue.
func checkEnqueue(ct *scheduler.Crontab) error {
	pe := &scheduler.ParseError{}
	for _, e := range ct.Entries {
		if e.Enqueue != nil && *e.Enqueue && !isJobCommand(e.Args) {
			pe.Lines = append(pe.Lines, &scheduler.LineError{Line: e.Line, Text: e.Text,
				Reason: "enqueue=true needs a job (backup, cleanup, ...); this command runs only in the daemon"})
		}
	}
	if len(pe.Lines) > 0 {
		return pe
	}
	return nil
}
