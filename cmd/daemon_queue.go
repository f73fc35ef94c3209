package cmd

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

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

// slotHandoff gives the daemon's queued entries to the task queue: each
// slot's task is inserted in the transaction that claims the slot, so a
// slot is claimed only together with its task.
type slotHandoff struct {
	d     *deps
	queue *tasks.River
	// enqueue is the daemon's --enqueue; url its database URL (the entry's
	// environment, as Run sees it).
	enqueue bool
	url     string
}

// Takes implements scheduler.Handoff.
func (h *slotHandoff) Takes(e scheduler.Entry) bool {
	return h.queue != nil && enqueues(e, h.enqueue) && isJobCommand(e.Args)
}

// Hand implements scheduler.Handoff: it turns the entry's command line into
// the job and its arguments (capture mode, nothing runs) and inserts one
// task for the slot in tx: unique by kind, args and the slot's second,
// scheduled at the slot so a worker runs it at once, with the slot in its
// metadata for the ledger.
func (h *slotHandoff) Hand(ctx context.Context, tx pgx.Tx, req scheduler.RunRequest) error {
	d := h.d.child(req, h.url)
	defer d.close()
	d.capture = true
	if err := d.execute(ctx, req.Entry.Args); err != nil {
		return err
	}
	if d.captured == nil {
		return fmt.Errorf("%s is not a job: it cannot be queued", strings.Join(req.Entry.Args, " "))
	}
	c := &capturedJob{Kind: d.captured.kind, Args: d.captured.args, MaxRuntime: d.g.maxRuntime}
	slot := req.Slot.UTC()
	e, err := h.queue.EnqueueTx(ctx, tx, c.Kind, c.Args, tasks.EnqueueOptions{ScheduledAt: slot, UniqueFor: time.Second, Metadata: c.metadata(&slot)})
	if err != nil {
		return err
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
