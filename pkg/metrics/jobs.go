package metrics

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ip2a/ip2a-ops/pkg/progress"
)

// JobHealth is one job's health from the run ledger.
type JobHealth struct {
	Job             string     `json:"job"`
	LastSuccess     *time.Time `json:"last_success"`
	LastRun         *time.Time `json:"last_run"`
	LastState       string     `json:"last_state,omitempty"`
	LastExitCode    *int       `json:"last_exit_code"`
	LastDurationSec float64    `json:"last_duration_seconds"`
	// Failures in the 24 hours before Now: failed, abandoned, interrupted.
	Failures24h int64 `json:"failures_24h"`
	// Skipped24h: attempts skipped because another run was active.
	Skipped24h int64 `json:"skipped_24h"`
	Running    bool  `json:"running"`
	Runs       int64 `json:"runs"`
	// Progress is how far along the running run is, as of its last
	// heartbeat; nil when none runs or it reports none.
	Progress *progress.State `json:"progress,omitempty"`
}

func collectJobs(ctx context.Context, o Options, res *Result) error {
	var exists bool
	runs := pgx.Identifier{o.OpsSchema, "runs"}.Sanitize()
	if err := o.Pool.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, runs).Scan(&exists); err != nil {
		return err
	}
	if !exists {
		res.JobsSkipped = fmt.Sprintf("schema %s has no run ledger (ip2a-ops migrate creates it)", o.OpsSchema)
		return nil
	}
	since := o.Now.Add(-24 * time.Hour)
	rows, err := o.Pool.Query(ctx, `WITH last AS (
			SELECT DISTINCT ON (job) job, started_at, state, exit_code,
				extract(epoch FROM coalesce(finished_at, heartbeat_at) - started_at)::float8 AS secs
			FROM `+runs+` WHERE state <> 'skipped' ORDER BY job, started_at DESC, id DESC),
		agg AS (
			SELECT job, count(*) AS runs,
				max(finished_at) FILTER (WHERE state = 'succeeded') AS last_success,
				count(*) FILTER (WHERE state IN ('failed', 'abandoned', 'interrupted') AND started_at > $1) AS failures,
				count(*) FILTER (WHERE state = 'skipped' AND started_at > $1) AS skipped,
				count(*) FILTER (WHERE state = 'running') > 0 AS running,
				max(progress::text) FILTER (WHERE state = 'running') AS progress
			FROM `+runs+` GROUP BY job)
		SELECT agg.job, agg.runs, agg.last_success, agg.failures, agg.skipped, agg.running,
			last.started_at, coalesce(last.state, ''), last.exit_code, coalesce(last.secs, 0), agg.progress
		FROM agg LEFT JOIN last USING (job) ORDER BY agg.job`, since)
	if err != nil {
		return err
	}
	res.Jobs, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (JobHealth, error) {
		var j JobHealth
		var prog *string
		err := r.Scan(&j.Job, &j.Runs, &j.LastSuccess, &j.Failures24h, &j.Skipped24h, &j.Running, &j.LastRun, &j.LastState,
			&j.LastExitCode, &j.LastDurationSec, &prog)
		if err == nil && prog != nil {
			var p progress.State
			if json.Unmarshal([]byte(*prog), &p) == nil {
				j.Progress = &p
			}
		}
		return j, err
	})
	if err != nil {
		return err
	}
	notes := pgx.Identifier{o.OpsSchema, "notifications"}.Sanitize()
	if err := o.Pool.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, notes).Scan(&exists); err != nil {
		return err
	}
	if exists {
		if err := o.Pool.QueryRow(ctx, `SELECT count(*) FROM `+notes+` WHERE state = 'pending'`).Scan(&res.PendingNotifications); err != nil {
			return err
		}
	}
	return nil
}

// Freshness says whether one job succeeded recently enough.
type Freshness struct {
	Job           string     `json:"job"`
	MaxAge        string     `json:"max_age"`
	MaxAgeSeconds float64    `json:"max_age_seconds"`
	LastSuccess   *time.Time `json:"last_success"`
	// AgeSeconds since the last success; nil when it never succeeded.
	AgeSeconds *float64 `json:"age_seconds"`
	Stale      bool     `json:"stale"`
	Reason     string   `json:"reason,omitempty"`
}

// CheckFreshness compares each job of maxAges with its last success (by
// job name; a job absent from lastSuccess never succeeded, which is stale)
// at now. The result is sorted by job.
func CheckFreshness(lastSuccess map[string]time.Time, maxAges map[string]time.Duration, now time.Time) []Freshness {
	out := make([]Freshness, 0, len(maxAges))
	for job, max := range maxAges {
		f := Freshness{Job: job, MaxAge: FormatAge(max), MaxAgeSeconds: max.Seconds()}
		t, ok := lastSuccess[job]
		if !ok {
			f.Stale, f.Reason = true, "never succeeded"
		} else {
			t := t
			age := now.Sub(t)
			secs := age.Seconds()
			f.LastSuccess, f.AgeSeconds = &t, &secs
			if age > max {
				f.Stale = true
				f.Reason = fmt.Sprintf("last success %s ago, more than %s", FormatAge(age.Round(time.Minute)), FormatAge(max))
			}
		}
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Job < out[j].Job })
	return out
}

var ageRe = regexp.MustCompile(`^(?:(\d+)w)?(?:(\d+)d)?(.*)$`)

// ParseAge parses a Go duration that may also use days and weeks: "26h",
// "32d", "1w", "1d12h". It must be positive.
func ParseAge(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	m := ageRe.FindStringSubmatch(s)
	if s == "" || m == nil {
		return 0, fmt.Errorf("invalid age %q (want e.g. 26h, 32d, 1w)", s)
	}
	var d time.Duration
	if m[1] != "" {
		n, _ := strconv.Atoi(m[1])
		d += time.Duration(n) * 7 * 24 * time.Hour
	}
	if m[2] != "" {
		n, _ := strconv.Atoi(m[2])
		d += time.Duration(n) * 24 * time.Hour
	}
	if m[3] != "" {
		r, err := time.ParseDuration(m[3])
		if err != nil {
			return 0, fmt.Errorf("invalid age %q (want e.g. 26h, 32d, 1w)", s)
		}
		d += r
	}
	if d <= 0 {
		return 0, fmt.Errorf("invalid age %q: must be positive", s)
	}
	return d, nil
}

// FormatAge prints d compactly, with days when it has any: 32d, 1d2h, 26h,
// 90m -> 1h30m.
func FormatAge(d time.Duration) string {
	day := 24 * time.Hour
	if d >= day {
		days, rest := d/day, d%day
		if rest == 0 {
			return fmt.Sprintf("%dd", days)
		}
		return fmt.Sprintf("%dd%s", days, compact(rest))
	}
	return compact(d)
}

func compact(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// ParseMaxAges parses job=age pairs, each item possibly a comma-separated
// list: ["backup=26h", "integrity-check=26h,audit-archive=32d"]. A job
// named twice keeps the last age.
func ParseMaxAges(items []string) (map[string]time.Duration, error) {
	out := map[string]time.Duration{}
	for _, item := range items {
		for _, pair := range strings.Split(item, ",") {
			pair = strings.TrimSpace(pair)
			if pair == "" {
				continue
			}
			job, age, ok := strings.Cut(pair, "=")
			job = strings.TrimSpace(job)
			if !ok || job == "" {
				return nil, fmt.Errorf("invalid max age %q (want job=age, e.g. backup=26h)", pair)
			}
			d, err := ParseAge(age)
			if err != nil {
				return nil, fmt.Errorf("max age for %s: %w", job, err)
			}
			out[job] = d
		}
	}
	return out, nil
}
