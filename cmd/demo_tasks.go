package cmd

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
)

// demoTasks queues a grant report and a backup with their own flags, runs
// a worker until both are done, and shows each task's status and the
// ledger's runs of them (trigger queue, the task id).
func demoTasks(ctx context.Context, d *deps, env *demoEnv) error {
	number, err := demoGrant(ctx, env)
	if err != nil {
		return err
	}
	var ids []string
	for _, args := range [][]string{
		{"tasks", "enqueue", "grant-report", "--", "--grant", number, "--out", filepath.Join(env.Dir, "reports")},
		{"tasks", "enqueue", "backup", "--", "--storage", filepath.Join(env.Dir, "queued-backups")},
	} {
		out, code := env.output(args...)
		if err := expect(code, 0); err != nil {
			return err
		}
		ids = append(ids, strings.TrimSpace(out))
	}
	if err := expect(env.run("tasks", "list"), 0); err != nil {
		return err
	}
	fmt.Fprintln(d.stdout, "\n$ ip2a-ops worker --concurrency 2   # in the background until both tasks are done")
	wctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	var workerCode int
	go func() {
		defer wg.Done()
		args := []string{"--database-url", env.URL, "--log-level", "error", "worker", "--concurrency", "2", "--stop-timeout", "1m"}
		workerCode = Run(wctx, args, Env{Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: d.stderr, Getenv: demoGetenv(d.getenv), Now: d.now})
	}()
	for _, id := range ids {
		if err = expect(env.run("tasks", "status", id, "--wait", "5m"), 0); err != nil {
			err = fmt.Errorf("task %s: %w", id, err)
			break
		}
	}
	stop()
	wg.Wait()
	if err != nil {
		return err
	}
	if err := expect(workerCode, 0); err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	return expect(env.run("jobs", "history", "--limit", "2"), 0)
}
