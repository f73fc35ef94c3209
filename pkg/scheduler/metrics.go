package scheduler

import (
	"context"
	"fmt"
	"time"

	"github.com/ip2a/ip2a-ops/pkg/httpserve"
)

// JobLedger is one job's health as the ledger sees it, whatever started
// its runs (this daemon, another replica, cron, a person).
type JobLedger struct {
	Job              string
	Runs             map[string]int64 // by state
	LastSuccess      *time.Time
	LastDuration     *time.Duration
	Running          int64
	OldestHeartbeatS float64 // age of the stalest running heartbeat
}

// LedgerHealth reads every job's counts, last success, last duration and
// running runs from the ledger in two statements.
func (c *Claims) LedgerHealth(ctx context.Context) ([]JobLedger, error) {
	rows, err := c.pool.Query(ctx, `SELECT job, state, count(*) FROM `+c.runs+` GROUP BY job, state ORDER BY job, state`)
	if err != nil {
		return nil, fmt.Errorf("read ledger health: %w", err)
	}
	byJob := map[string]*JobLedger{}
	var order []string
	for rows.Next() {
		var job, state string
		var n int64
		if err := rows.Scan(&job, &state, &n); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read ledger health: %w", err)
		}
		j := byJob[job]
		if j == nil {
			j = &JobLedger{Job: job, Runs: map[string]int64{}}
			byJob[job] = j
			order = append(order, job)
		}
		j.Runs[state] = n
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read ledger health: %w", err)
	}
	rows, err = c.pool.Query(ctx, `SELECT job,
		max(finished_at) FILTER (WHERE state = 'succeeded'),
		(SELECT extract(epoch FROM r2.finished_at - r2.started_at)::float8 FROM `+c.runs+` r2
		  WHERE r2.job = r.job AND r2.finished_at IS NOT NULL AND r2.state <> 'skipped' ORDER BY r2.finished_at DESC LIMIT 1),
		count(*) FILTER (WHERE state = 'running'),
		coalesce(extract(epoch FROM now() - min(heartbeat_at) FILTER (WHERE state = 'running'))::float8, 0)
		FROM `+c.runs+` r GROUP BY job`)
	if err != nil {
		return nil, fmt.Errorf("read ledger health: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var job string
		var last *time.Time
		var dur *float64
		var running int64
		var hb float64
		if err := rows.Scan(&job, &last, &dur, &running, &hb); err != nil {
			return nil, fmt.Errorf("read ledger health: %w", err)
		}
		if j := byJob[job]; j != nil {
			j.LastSuccess, j.Running, j.OldestHeartbeatS = last, running, hb
			if dur != nil {
				d := time.Duration(*dur * float64(time.Second))
				j.LastDuration = &d
			}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read ledger health: %w", err)
	}
	out := make([]JobLedger, 0, len(order))
	for _, k := range order {
		out = append(out, *byJob[k])
	}
	return out, nil
}

// CheckWritable proves the ledger and the claims table accept writes (not a
// read-only replica, privileges in place) with inserts that are rolled back.
func (c *Claims) CheckWritable(ctx context.Context) error {
	tx, err := c.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("ledger not reachable: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // rollback is the point
	if _, err := tx.Exec(ctx, `INSERT INTO `+c.runs+` (job, trigger, host, pid, state) VALUES ('readyz', 'daemon', 'readyz', 0, 'succeeded')`); err != nil {
		return fmt.Errorf("ledger not writable: %w", err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO `+c.table+` (entry, job, slot, kind, host, pid) VALUES ('readyz', 'readyz', now(), 'scheduled', 'readyz', 0) ON CONFLICT DO NOTHING`); err != nil {
		return fmt.Errorf("slot claims not writable: %w", err)
	}
	return nil
}

// MetricsOptions say what Metrics reports.
type MetricsOptions struct {
	Stats  *Stats
	Claims *Claims // nil: only the daemon's own counters
	Now    func() time.Time
}

// Metrics returns the daemon's Prometheus families: per job, from the ledger
// (every replica and trigger) last success time, last duration, runs by
// state, running now; from this daemon, slots by outcome (ran, lost to
// another replica, skipped, queued, missed, caught up) and slot start
// latency; plus ledger lag and whether the ledger answered.
func Metrics(ctx context.Context, o MetricsOptions) []httpserve.Metric {
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	snap := o.Stats.Snapshot()
	slots := httpserve.Metric{Name: "ip2a_ops_daemon_slots_total", Type: httpserve.Counter,
		Help: "Slots this daemon handled, by job and outcome (ran, catchup, lost: another daemon claimed it, skipped: job still running, queued, missed, already: a later run covered it, error: claim failed)."}
	outcomes := httpserve.Metric{Name: "ip2a_ops_daemon_runs_total", Type: httpserve.Counter, Help: "Runs this daemon started, by job and outcome (exit code)."}
	latency := httpserve.Metric{Name: "ip2a_ops_daemon_slot_start_latency_seconds", Help: "Start minus scheduled time of the job's latest slot in this daemon."}
	maxLatency := httpserve.Metric{Name: "ip2a_ops_daemon_slot_start_latency_max_seconds", Help: "Largest start minus scheduled time seen by this daemon."}
	dRunning := httpserve.Metric{Name: "ip2a_ops_daemon_running", Help: "Runs of the job this daemon has going now."}
	for _, job := range snap.JobNames() {
		j := snap.Jobs[job]
		for _, k := range []string{SlotRan, SlotCatchUp, SlotLost, SlotSkipped, SlotQueued, SlotMissed, SlotAlready, SlotError} {
			slots.Samples = append(slots.Samples, httpserve.S(float64(j.Slots[k]), "job", job, "outcome", k))
		}
		for _, k := range []string{OutcomeSucceeded, OutcomeProblems, OutcomeFailed, OutcomeSkipped, OutcomeInterrupted} {
			outcomes.Samples = append(outcomes.Samples, httpserve.S(float64(j.Outcomes[k]), "job", job, "outcome", k))
		}
		latency.Samples = append(latency.Samples, httpserve.S(j.LastLatency.Seconds(), "job", job))
		maxLatency.Samples = append(maxLatency.Samples, httpserve.S(j.MaxLatency.Seconds(), "job", job))
		dRunning.Samples = append(dRunning.Samples, httpserve.S(float64(j.Running), "job", job))
	}
	out := []httpserve.Metric{slots, outcomes, latency, maxLatency, dRunning,
		{Name: "ip2a_ops_daemon_entries", Help: "Crontab entries scheduled.", Samples: []httpserve.Sample{httpserve.S(float64(snap.Entries))}},
		{Name: "ip2a_ops_daemon_reloads_total", Type: httpserve.Counter, Help: "Successful crontab reloads (SIGHUP).", Samples: []httpserve.Sample{httpserve.S(float64(snap.Reloads))}},
		{Name: "ip2a_ops_daemon_panics_total", Type: httpserve.Counter, Help: "Jobs that panicked (each counted as a failed run).", Samples: []httpserve.Sample{httpserve.S(float64(snap.Panics))}},
		{Name: "ip2a_ops_daemon_last_tick_age_seconds", Help: "Seconds since the scheduling loop last turned (it turns at least every --max-wait).", Samples: []httpserve.Sample{httpserve.S(sinceOrZero(now(), snap.LastTick))}},
	}
	if o.Claims == nil {
		return out
	}
	up := 1.0
	jobs, err := o.Claims.LedgerHealth(ctx)
	if err != nil {
		up = 0
	}
	out = append(out, httpserve.Metric{Name: "ip2a_ops_ledger_up", Help: "1 when the run ledger answered this scrape.", Samples: []httpserve.Sample{httpserve.S(up)}})
	if err != nil {
		return out
	}
	runs := httpserve.Metric{Name: "ip2a_ops_job_runs_total", Type: httpserve.Counter, Help: "Runs in the ledger by job and state, whatever started them."}
	lastOK := httpserve.Metric{Name: "ip2a_ops_job_last_success_timestamp_seconds", Help: "Unix time the job last succeeded (absent: never)."}
	lastDur := httpserve.Metric{Name: "ip2a_ops_job_last_duration_seconds", Help: "Duration of the job's latest finished run (skips excluded)."}
	running := httpserve.Metric{Name: "ip2a_ops_job_running", Help: "Runs of the job the ledger shows running now (any host)."}
	lag := 0.0
	for _, j := range jobs {
		for _, st := range []string{"succeeded", "failed", "skipped", "interrupted", "abandoned", "running"} {
			runs.Samples = append(runs.Samples, httpserve.S(float64(j.Runs[st]), "job", j.Job, "state", st))
		}
		if j.LastSuccess != nil {
			lastOK.Samples = append(lastOK.Samples, httpserve.S(float64(j.LastSuccess.Unix()), "job", j.Job))
		}
		if j.LastDuration != nil {
			lastDur.Samples = append(lastDur.Samples, httpserve.S(j.LastDuration.Seconds(), "job", j.Job))
		}
		running.Samples = append(running.Samples, httpserve.S(float64(j.Running), "job", j.Job))
		if j.OldestHeartbeatS > lag {
			lag = j.OldestHeartbeatS
		}
	}
	return append(out, runs, lastOK, lastDur, running, httpserve.Metric{Name: "ip2a_ops_ledger_lag_seconds",
		Help:    "Age of the stalest heartbeat among running runs (0 when none run): past --stale-after a run is dead or its host lost the database.",
		Samples: []httpserve.Sample{httpserve.S(lag)}})
}

func sinceOrZero(now, t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return now.Sub(t).Seconds()
}
