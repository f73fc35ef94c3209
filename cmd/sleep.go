package cmd

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/ip2a/ip2a-ops/pkg/jobs"
)

// newSleepJobCmd is a job that only waits: it exercises the runner, ledger,
// locks and signals without touching data (tests, the daemon demo, and
// checking a deployment's scheduling end to end).
func newSleepJobCmd(d *deps) *cobra.Command {
	var dur time.Duration
	var name string
	c := &cobra.Command{
		Use:         "sleep-job",
		Annotations: jobCommand(jobs.Sleep),
		Short:       "A job that only waits (for testing schedules, locks and signals)",
		Hidden:      true,
		Args:        cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			return runJob(c.Context(), d, jobs.Sleep, jobs.SleepArgs{For: dur, JobName: name},
				func(w io.Writer, r jobs.SleepResult) { fmt.Fprintf(w, "slept %.1fs\n", r.Slept) }, nil)
		},
	}
	c.Flags().DurationVar(&dur, "for", time.Second, "how long to wait")
	c.Flags().StringVar(&name, "job-name", "sleep", "job name to record in the ledger")
	return c
}
