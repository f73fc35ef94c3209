package cmd

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// demoDaemon runs two daemons for a few seconds on a fast, demo-only
// schedule and shows that each slot was claimed once and run once.
func demoDaemon(ctx context.Context, d *deps, env *demoEnv) error {
	file := filepath.Join(env.Dir, "demo.crontab")
	const crontab = `# demo only: @every is understood by the daemon, not by system cron
@every 1s ip2a-ops sleep-job --job-name demo-tick --for 100ms
@every 2s ip2a-ops sleep-job --job-name demo-slow --for 3s
`
	if err := os.WriteFile(file, []byte(crontab), 0o600); err != nil {
		return err
	}
	fmt.Fprintf(d.stdout, "%s:\n%s", file, crontab)
	if err := expect(env.run("daemon", "--check", file), 0); err != nil {
		return err
	}
	fmt.Fprintf(d.stdout, "\n$ ip2a-ops daemon --crontab %s --claim-host daemon-a   # and daemon-b, both for 5 seconds\n", file)
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	codes := make([]int, 2)
	for i, name := range []string{"daemon-a", "daemon-b"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			args := []string{"--database-url", env.URL, "--log-level", "error", "daemon", "--crontab", file, "--listen", "", "--shutdown-timeout", "1s", "--claim-host", name}
			codes[i] = Run(dctx, args, Env{Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: io.Discard, Getenv: demoGetenv(d.getenv), Now: d.now})
		}()
	}
	wg.Wait()
	for _, c := range codes {
		if err := expect(c, 0); err != nil {
			return fmt.Errorf("daemon: %w", err)
		}
	}
	var claims, slots, dups int
	var byHost string
	err := env.Pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT (entry, slot)),
		(SELECT count(*) FROM (SELECT slot FROM ip2a_ops.runs WHERE trigger = 'daemon' AND state <> 'skipped' GROUP BY job, slot HAVING count(*) > 1) x),
		(SELECT string_agg(host || ' ' || n, ', ' ORDER BY host) FROM (SELECT host, count(*) AS n FROM ip2a_ops.slot_claims GROUP BY host) h)
		FROM ip2a_ops.slot_claims`).Scan(&claims, &slots, &dups, &byHost)
	if err != nil {
		return err
	}
	fmt.Fprintf(d.stdout, "    %d slots claimed (%s), %d slots run twice\n", claims, byHost, dups)
	if dups > 0 || claims != slots {
		return fmt.Errorf("a slot ran twice")
	}
	return expect(env.run("jobs", "history", "--limit", "8"), 0)
}
