package metrics

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// promWriter writes the Prometheus text exposition format (version 0.0.4),
// which node-exporter's textfile collector reads.
type promWriter struct {
	w   *bufio.Writer
	err error
}

func (p *promWriter) family(name, typ, help string) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, "# HELP %s %s\n# TYPE %s %s\n", name, strings.NewReplacer(`\`, `\\`, "\n", `\n`).Replace(help), name, typ)
	}
}

func (p *promWriter) sample(name string, v float64, labels ...string) {
	if p.err != nil {
		return
	}
	var b strings.Builder
	b.WriteString(name)
	if len(labels) > 0 {
		b.WriteByte('{')
		for i := 0; i+1 < len(labels); i += 2 {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `%s="%s"`, labels[i], strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(labels[i+1]))
		}
		b.WriteByte('}')
	}
	b.WriteByte(' ')
	b.WriteString(strconv.FormatFloat(v, 'g', -1, 64))
	b.WriteByte('\n')
	_, p.err = p.w.WriteString(b.String())
}

func unix(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// WritePrometheus renders r in the Prometheus text format. Skipped admin
// figures are absent and listed in ip2a_metric_skipped.
func WritePrometheus(w io.Writer, r Result) error {
	p := &promWriter{w: bufio.NewWriter(w)}
	for _, m := range AdminMetrics {
		v, ok := r.Admin[m.Name]
		if !ok {
			continue
		}
		p.family(m.Prom, "gauge", m.Help)
		p.sample(m.Prom, v)
	}
	if len(r.Skipped) > 0 {
		p.family("ip2a_metric_skipped", "gauge", "1 for each admin figure this database's schema cannot provide, with the reason.")
		names := make([]string, 0, len(r.Skipped))
		for n := range r.Skipped {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			p.sample("ip2a_metric_skipped", 1, "metric", n, "reason", r.Skipped[n])
		}
	}

	db := r.Database
	p.family("ip2a_db_size_bytes", "gauge", "Size of the database.")
	p.sample("ip2a_db_size_bytes", float64(db.SizeBytes), "database", db.Name)
	p.family("ip2a_db_table_size_bytes", "gauge", "Total size of the largest tables, indexes and TOAST included.")
	for _, t := range db.Tables {
		p.sample("ip2a_db_table_size_bytes", float64(t.SizeBytes), "schema", t.Schema, "table", t.Name)
	}
	p.family("ip2a_db_table_dead_tuples", "gauge", "Dead tuples of the largest tables.")
	for _, t := range db.Tables {
		p.sample("ip2a_db_table_dead_tuples", float64(t.DeadTuples), "schema", t.Schema, "table", t.Name)
	}
	p.family("ip2a_db_dead_tuples", "gauge", "Dead tuples over every user table.")
	p.sample("ip2a_db_dead_tuples", float64(db.DeadTuples))
	p.family("ip2a_db_live_tuples", "gauge", "Live tuples over every user table.")
	p.sample("ip2a_db_live_tuples", float64(db.LiveTuples))
	p.family("ip2a_db_connections", "gauge", "Client connections to the database by state.")
	states := make([]string, 0, len(db.Connections))
	for s := range db.Connections {
		states = append(states, s)
	}
	sort.Strings(states)
	for _, s := range states {
		p.sample("ip2a_db_connections", float64(db.Connections[s]), "state", s)
	}
	p.family("ip2a_db_max_connections", "gauge", "The server's max_connections.")
	p.sample("ip2a_db_max_connections", float64(db.MaxConnections))
	p.family("ip2a_db_oldest_transaction_seconds", "gauge", "Age of the oldest open transaction on the database.")
	p.sample("ip2a_db_oldest_transaction_seconds", db.OldestTransactionSeconds)
	p.family("ip2a_db_xid_age", "gauge", "age(datfrozenxid): transactions since the database was last fully frozen.")
	p.sample("ip2a_db_xid_age", float64(db.XIDAge))

	if r.Jobs != nil {
		p.family("ip2a_ops_job_last_success_timestamp_seconds", "gauge", "When the job last succeeded (absent: never).")
		for _, j := range r.Jobs {
			if j.LastSuccess != nil {
				p.sample("ip2a_ops_job_last_success_timestamp_seconds", unix(*j.LastSuccess), "job", j.Job)
			}
		}
		p.family("ip2a_ops_job_last_run_timestamp_seconds", "gauge", "When the job's last run (skips aside) started.")
		for _, j := range r.Jobs {
			if j.LastRun != nil {
				p.sample("ip2a_ops_job_last_run_timestamp_seconds", unix(*j.LastRun), "job", j.Job)
			}
		}
		p.family("ip2a_ops_job_last_exit_code", "gauge", "Exit code of the job's last finished run.")
		for _, j := range r.Jobs {
			if j.LastExitCode != nil {
				p.sample("ip2a_ops_job_last_exit_code", float64(*j.LastExitCode), "job", j.Job)
			}
		}
		p.family("ip2a_ops_job_last_duration_seconds", "gauge", "Duration of the job's last run.")
		for _, j := range r.Jobs {
			p.sample("ip2a_ops_job_last_duration_seconds", j.LastDurationSec, "job", j.Job)
		}
		p.family("ip2a_ops_job_failures_24h", "gauge", "Failed, abandoned or interrupted runs in the last 24 hours.")
		for _, j := range r.Jobs {
			p.sample("ip2a_ops_job_failures_24h", float64(j.Failures24h), "job", j.Job)
		}
		p.family("ip2a_ops_job_skipped_24h", "gauge", "Runs skipped in the last 24 hours because another was active.")
		for _, j := range r.Jobs {
			p.sample("ip2a_ops_job_skipped_24h", float64(j.Skipped24h), "job", j.Job)
		}
		p.family("ip2a_ops_job_running", "gauge", "1 while a run of the job is active.")
		for _, j := range r.Jobs {
			v := 0.0
			if j.Running {
				v = 1
			}
			p.sample("ip2a_ops_job_running", v, "job", j.Job)
		}
	}
	if r.PendingNotifications >= 0 {
		p.family("ip2a_ops_notifications_pending", "gauge", "Notifications waiting in the outbox for a retry.")
		p.sample("ip2a_ops_notifications_pending", float64(r.PendingNotifications))
	}
	p.family("ip2a_ops_metrics_collected_timestamp_seconds", "gauge", "When these metrics were collected.")
	p.sample("ip2a_ops_metrics_collected_timestamp_seconds", unix(r.CollectedAt))
	if p.err != nil {
		return p.err
	}
	return p.w.Flush()
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
