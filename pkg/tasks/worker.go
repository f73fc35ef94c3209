package tasks

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ip2a/ip2a-ops/pkg/exitcode"
	"github.com/ip2a/ip2a-ops/pkg/migrate"
)

// WorkerOptions configure RunWorker. Zero values mean defaults.
type WorkerOptions struct {
	// Schema holds River's tables (default ip2a_ops).
	Schema   string
	Handlers Handlers
	// Queues this worker takes tasks from (default ["default"]).
	Queues []string
	// Concurrency is how many tasks of each queue run at once (default 4).
	Concurrency int
	// StopTimeout is how long running tasks may go on once ctx is done
	// (default 30 s); then their contexts are cancelled and a task whose
	// handler returns goes back to pending for another worker.
	StopTimeout time.Duration
	// CancelGrace is how long cancelled handlers get to return after
	// StopTimeout (default 10 s). A task whose handler still runs then is
	// left running; River's rescuer runs it again after RescueAfter.
	CancelGrace time.Duration
	// Timeout, RescueAfter, PollInterval and Backoff: see RiverOptions.
	Timeout      time.Duration
	RescueAfter  time.Duration
	PollInterval time.Duration
	Backoff      Backoff
	Logger       *slog.Logger
	// Started, when set, is called once the worker takes tasks.
	Started func()
}

// Defaults for WorkerOptions.
const (
	DefaultConcurrency = 4
	DefaultStopTimeout = 30 * time.Second
	DefaultCancelGrace = 10 * time.Second
)

// RunWorker works tasks from the queues until ctx is done, then stops
// gracefully (see WorkerOptions.StopTimeout) and returns nil. Several
// workers, in one process or on several hosts, share a database's tasks:
// River hands each task to one of them (FOR UPDATE SKIP LOCKED). When the
// database goes away River keeps retrying, and the worker resumes when it
// is back. River's tables must exist: a missing one is a usage error naming
// `ip2a-ops migrate`.
func RunWorker(ctx context.Context, pool *pgxpool.Pool, o WorkerOptions) error {
	if o.Schema == "" {
		o.Schema = migrate.DefaultSchema
	}
	if len(o.Queues) == 0 {
		o.Queues = []string{DefaultQueue}
	}
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.StopTimeout <= 0 {
		o.StopTimeout = DefaultStopTimeout
	}
	if o.CancelGrace <= 0 {
		o.CancelGrace = DefaultCancelGrace
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if len(o.Handlers) == 0 {
		return exitcode.Usagef("", "worker: no task kinds to run")
	}
	if err := CheckSchema(ctx, pool, o.Schema); err != nil {
		return err
	}
	queues := map[string]int{}
	for _, q := range o.Queues {
		queues[q] = o.Concurrency
	}
	r, err := NewRiver(pool, RiverOptions{Schema: o.Schema, Handlers: o.Handlers, Queues: queues, Backoff: o.Backoff,
		Timeout: o.Timeout, RescueAfter: o.RescueAfter, PollInterval: o.PollInterval, Logger: o.Logger})
	if err != nil {
		return err
	}
	if err := r.Start(ctx); err != nil {
		return err
	}
	o.Logger.Info("worker started", "queues", o.Queues, "concurrency", o.Concurrency, "kinds", o.Handlers.Kinds(), "schema", o.Schema)
	if o.Started != nil {
		o.Started()
	}
	<-ctx.Done()
	o.Logger.Info("worker stopping: running tasks may finish", "stop_timeout", o.StopTimeout.String())
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.StopTimeout)
	defer cancel()
	if err := r.Stop(stopCtx, o.CancelGrace); err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	o.Logger.Info("worker stopped")
	return nil
}

// CheckSchema returns an error wrapping migrate.ErrNotMigrated (a usage
// error, exit 2, whose hint is `ip2a-ops migrate`) when River's tables in
// schema are missing or older than this binary.
func CheckSchema(ctx context.Context, pool *pgxpool.Pool, schema string) error {
	missing, err := migrate.RiverMissing(ctx, pool, schema)
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		return fmt.Errorf("the task queue's tables in schema %s are missing or old (River migrations %v not applied): %w", schema, missing, migrate.ErrNotMigrated)
	}
	return nil
}
