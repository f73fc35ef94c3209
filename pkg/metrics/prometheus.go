package metrics

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

func unix(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// Registry returns r as Prometheus gauges in a fresh registry, so the same
// figures can be served over HTTP (promhttp) or written to a textfile.
// Skipped admin figures are absent and listed in ip2a_metric_skipped; a job
// that never succeeded has no last-success sample.
func Registry(r Result) (*prometheus.Registry, error) {
	reg := prometheus.NewPedanticRegistry()
	var regErr error
	gauge := func(name, help string, labels ...string) *prometheus.GaugeVec {
		g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
		if err := reg.Register(g); err != nil && regErr == nil {
			regErr = fmt.Errorf("register %s: %w", name, err)
		}
		return g
	}
	for _, m := range AdminMetrics {
		if v, ok := r.Admin[m.Name]; ok {
			gauge(m.Prom, m.Help).WithLabelValues().Set(v)
		}
	}
	if len(r.Skipped) > 0 {
		g := gauge("ip2a_metric_skipped", "1 for each admin figure this database's schema cannot provide, with the reason.", "metric", "reason")
		for n, why := range r.Skipped {
			g.WithLabelValues(n, why).Set(1)
		}
	}

	db := r.Database
	gauge("ip2a_db_size_bytes", "Size of the database.", "database").WithLabelValues(db.Name).Set(float64(db.SizeBytes))
	size := gauge("ip2a_db_table_size_bytes", "Total size of the largest tables, indexes and TOAST included.", "schema", "table")
	dead := gauge("ip2a_db_table_dead_tuples", "Dead tuples of the largest tables.", "schema", "table")
	for _, t := range db.Tables {
		size.WithLabelValues(t.Schema, t.Name).Set(float64(t.SizeBytes))
		dead.WithLabelValues(t.Schema, t.Name).Set(float64(t.DeadTuples))
	}
	gauge("ip2a_db_dead_tuples", "Dead tuples over every user table.").WithLabelValues().Set(float64(db.DeadTuples))
	gauge("ip2a_db_live_tuples", "Live tuples over every user table.").WithLabelValues().Set(float64(db.LiveTuples))
	conns := gauge("ip2a_db_connections", "Client connections to the database by state.", "state")
	for st, n := range db.Connections {
		conns.WithLabelValues(st).Set(float64(n))
	}
	gauge("ip2a_db_max_connections", "The server's max_connections.").WithLabelValues().Set(float64(db.MaxConnections))
	gauge("ip2a_db_oldest_transaction_seconds", "Age of the oldest open transaction on the database.").WithLabelValues().Set(db.OldestTransactionSeconds)
	gauge("ip2a_db_xid_age", "age(datfrozenxid): transactions since the database was last fully frozen.").WithLabelValues().Set(float64(db.XIDAge))

	if r.Jobs != nil {
		success := gauge("ip2a_ops_job_last_success_timestamp_seconds", "When the job last succeeded (absent: never).", "job")
		lastRun := gauge("ip2a_ops_job_last_run_timestamp_seconds", "When the job's last run (skips aside) started.", "job")
		exit := gauge("ip2a_ops_job_last_exit_code", "Exit code of the job's last finished run.", "job")
		dur := gauge("ip2a_ops_job_last_duration_seconds", "Duration of the job's last run.", "job")
		fails := gauge("ip2a_ops_job_failures_24h", "Failed, abandoned or interrupted runs in the last 24 hours.", "job")
		skips := gauge("ip2a_ops_job_skipped_24h", "Runs skipped in the last 24 hours because another was active.", "job")
		running := gauge("ip2a_ops_job_running", "1 while a run of the job is active.", "job")
		ratio := gauge("ip2a_ops_job_progress_ratio", "Fraction done (0 to 1) of the running run's current phase, where its total is known.", "job")
		done := gauge("ip2a_ops_job_progress_done", "Units done in the running run's current phase.", "job", "unit")
		updated := gauge("ip2a_ops_job_progress_updated_timestamp_seconds",
			"When the running run last reported progress (its heartbeat): alert when it stops moving.", "job")
		for _, j := range r.Jobs {
			if j.LastSuccess != nil {
				success.WithLabelValues(j.Job).Set(unix(*j.LastSuccess))
			}
			if j.LastRun != nil {
				lastRun.WithLabelValues(j.Job).Set(unix(*j.LastRun))
			}
			if j.LastExitCode != nil {
				exit.WithLabelValues(j.Job).Set(float64(*j.LastExitCode))
			}
			dur.WithLabelValues(j.Job).Set(j.LastDurationSec)
			fails.WithLabelValues(j.Job).Set(float64(j.Failures24h))
			skips.WithLabelValues(j.Job).Set(float64(j.Skipped24h))
			v := 0.0
			if j.Running {
				v = 1
			}
			running.WithLabelValues(j.Job).Set(v)
			if p := j.Progress; p != nil {
				if f, ok := p.Fraction(); ok {
					ratio.WithLabelValues(j.Job).Set(f)
				}
				done.WithLabelValues(j.Job, string(p.Unit)).Set(float64(p.Done))
				updated.WithLabelValues(j.Job).Set(unix(p.Updated))
			}
		}
	}
	if r.PendingNotifications >= 0 {
		gauge("ip2a_ops_notifications_pending", "Notifications waiting in the outbox for a retry.").WithLabelValues().Set(float64(r.PendingNotifications))
	}
	gauge("ip2a_ops_metrics_collected_timestamp_seconds", "When these metrics were collected.").WithLabelValues().Set(unix(r.CollectedAt))
	return reg, regErr
}

// WritePrometheus renders r in the Prometheus text format (0.0.4), which
// node-exporter's textfile collector reads; families are sorted by name.
func WritePrometheus(w io.Writer, r Result) error {
	reg, err := Registry(r)
	if err != nil {
		return err
	}
	families, err := reg.Gather()
	if err != nil {
		return fmt.Errorf("gather metrics: %w", err)
	}
	enc := expfmt.NewEncoder(w, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range families {
		if err := enc.Encode(mf); err != nil {
			return fmt.Errorf("write metrics: %w", err)
		}
	}
	return nil
}

// WritePrometheusFile writes r to path atomically (temp file in the same
// directory, fsync, rename, fsync of the directory), so node-exporter's
// textfile collector never reads half a file. The file is mode 0644.
func WritePrometheusFile(path string, r Result) error {
	dir := filepath.Dir(path)
	// The textfile collector only reads *.prom, so the temp name is ignored.
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write metrics file: %w", err)
	}
	tmp := f.Name()
	fail := func(err error) error {
		_ = f.Close()
		_ = os.Remove(tmp)
		return fmt.Errorf("write metrics file %s: %w", path, err)
	}
	if err := WritePrometheus(f, r); err != nil {
		return fail(err)
	}
	if err := f.Chmod(0o644); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write metrics file %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write metrics file %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}
