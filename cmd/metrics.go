package cmd

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ip2a/ip2a-ops/pkg/exitcode"
	"github.com/ip2a/ip2a-ops/pkg/metrics"
)

type metricsOptions struct {
	format  string
	output  string
	largest int
}

func newMetricsCmd(d *deps) *cobra.Command {
	var o metricsOptions
	c := &cobra.Command{
		Use:   "metrics",
		Short: "Admin figures, database health and job health, as text, JSON or Prometheus",
		Long: `Print what an operator wants on a dashboard:

  admin     users total and active today (last_login today, UTC), members
            total and ACTIVE, audit_logs rows today and since Monday (UTC),
            dues collected in the last 30 days (amount_paid of PAID and
            PARTIAL payments by payment_date), students ENROLLED;
            soft-deleted rows excluded, enum labels read from the database,
            figures whose table or column is missing reported as skipped;
  database  size, largest tables, dead tuples, connections by state,
            the oldest open transaction, xid age;
  jobs      from the run ledger: last success and last run per job,
            failures and skips in 24 hours, running now, and notifications
            waiting to be retried.

--format prometheus prints the Prometheus text format; with --output FILE it
is written atomically (temp file, fsync, rename) for node-exporter's
textfile collector, e.g. every 5 minutes from cron.

Exit codes: 0 printed, 1 the database could not be read, 2 configuration
error.`,
		Example: `  ip2a-ops metrics
  ip2a-ops metrics --json
  ip2a-ops metrics --format prometheus --output /var/lib/node_exporter/textfile/ip2a.prom`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error { return runMetrics(c.Context(), d, o) },
	}
	f := c.Flags()
	f.StringVar(&o.format, "format", "text", "output format: text, json, prometheus (--json is the same as --format json)")
	envFlag(f, "format", "IP2A_OPS_METRICS_FORMAT")
	f.StringVar(&o.output, "output", "", "write the Prometheus text to this file atomically instead of stdout")
	envFlag(f, "output", "IP2A_OPS_METRICS_OUTPUT")
	f.IntVar(&o.largest, "largest-tables", 10, "how many of the largest tables to list")
	return c
}

func runMetrics(ctx context.Context, d *deps, o metricsOptions) error {
	format := o.format
	if d.g.json {
		format = "json"
	}
	switch format {
	case "text", "json", "prometheus":
	default:
		return exitcode.Usagef("--format text|json|prometheus", "invalid format %q", o.format)
	}
	if o.output != "" && format != "prometheus" {
		return exitcode.Usagef("--format prometheus --output FILE", "--output needs --format prometheus")
	}
	if o.largest <= 0 {
		return exitcode.Usagef("--largest-tables 10", "--largest-tables must be positive, got %d", o.largest)
	}
	pool, err := d.db(ctx)
	if err != nil {
		return err
	}
	res, err := metrics.Collect(ctx, metrics.Options{Pool: pool, OpsSchema: d.g.schema, Now: d.now(), LargestTables: o.largest})
	if err != nil {
		return err
	}
	switch {
	case format == "prometheus" && o.output != "":
		return metrics.WritePrometheusFile(o.output, res)
	case format == "prometheus":
		return metrics.WritePrometheus(d.stdout, res)
	case format == "json":
		return writeJSON(d.stdout, res)
	}
	printMetrics(d.stdout, res)
	return nil
}

func printMetrics(w io.Writer, r metrics.Result) {
	fmt.Fprintf(w, "collected at %s\n\nADMIN\n", r.CollectedAt.UTC().Format(time.RFC3339))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, m := range metrics.AdminMetrics {
		if v, ok := r.Admin[m.Name]; ok {
			if m.Name == "dues_collected_30d" {
				fmt.Fprintf(tw, "  %s\t$%.2f\n", m.Name, v)
			} else {
				fmt.Fprintf(tw, "  %s\t%.0f\n", m.Name, v)
			}
		} else {
			fmt.Fprintf(tw, "  %s\tskipped: %s\n", m.Name, r.Skipped[m.Name])
		}
	}
	tw.Flush()
	db := r.Database
	states := make([]string, 0, len(db.Connections))
	for s, n := range db.Connections {
		states = append(states, fmt.Sprintf("%s %d", s, n))
	}
	sort.Strings(states)
	fmt.Fprintf(w, "\nDATABASE %s\n  size                      %s\n  dead tuples               %d (live %d)\n  connections               %s (max %d)\n  oldest transaction        %.1fs\n  xid age                   %d\n  largest tables:\n",
		db.Name, byteSize(db.SizeBytes), db.DeadTuples, db.LiveTuples, strings.Join(states, ", "), db.MaxConnections, db.OldestTransactionSeconds, db.XIDAge)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, t := range db.Tables {
		fmt.Fprintf(tw, "    %s.%s\t%s\tlive %d\tdead %d\n", t.Schema, t.Name, byteSize(t.SizeBytes), t.LiveTuples, t.DeadTuples)
	}
	tw.Flush()
	fmt.Fprintln(w, "\nJOBS")
	switch {
	case r.JobsSkipped != "":
		fmt.Fprintf(w, "  skipped: %s\n", r.JobsSkipped)
	case len(r.Jobs) == 0:
		fmt.Fprintln(w, "  no runs recorded yet")
	default:
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  JOB\tLAST SUCCESS\tLAST STATE\tFAILURES 24H\tSKIPPED 24H\tRUNNING")
		for _, j := range r.Jobs {
			last := "never"
			if j.LastSuccess != nil {
				last = j.LastSuccess.UTC().Format("2006-01-02 15:04:05Z")
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%d\t%t\n", j.Job, last, j.LastState, j.Failures24h, j.Skipped24h, j.Running)
		}
		tw.Flush()
	}
	if r.PendingNotifications > 0 {
		fmt.Fprintf(w, "  %d notifications waiting to be retried (ip2a-ops notify list)\n", r.PendingNotifications)
	}
}
