package cmd

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ip2a/ip2a-ops/pkg/exitcode"
	"github.com/ip2a/ip2a-ops/pkg/scheduler"
)

type scheduleExplainOptions struct {
	next      int
	from      string
	localZone string
}

func newScheduleCmd(d *deps) *cobra.Command {
	c := &cobra.Command{
		Use:   "schedule",
		Short: "Inspect a crontab's schedule",
		Args:  cobra.NoArgs,
	}
	var o scheduleExplainOptions
	explain := &cobra.Command{
		Use:   "explain FILE",
		Short: "Print each entry's next fire times in UTC and local time, marking DST changes",
		Long: `Print the next --next fire times of every entry of a crontab file, as the
daemon computes them: in UTC, in the entry's CRON_TZ zone when it has one,
and in --local-zone (default: TZ or the machine's zone). DST is marked: a
time in a spring-forward gap ("runs once at the transition"), a time that
occurs twice ("runs once, at the first"), and a UTC offset change between
two fire times.

Exit codes: 0 printed, 2 bad crontab or flags.`,
		Example: `  ip2a-ops schedule explain crontab.example --next 5
  ip2a-ops schedule explain crontab.example --local-zone America/Los_Angeles --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error { return runScheduleExplain(d, args[0], o) },
	}
	explain.Flags().IntVar(&o.next, "next", 5, "how many fire times per entry")
	explain.Flags().StringVar(&o.from, "from", "", "start from this RFC 3339 time instead of now")
	explain.Flags().StringVar(&o.localZone, "local-zone", "", "zone for the local column (default: TZ, else the machine's zone)")
	c.AddCommand(explain)
	return c
}

type explainedSlot struct {
	UTC      time.Time `json:"utc"`
	ZoneTime string    `json:"zone_time"`
	Local    string    `json:"local"`
	Note     string    `json:"note,omitempty"`
}

type explainedEntry struct {
	Line  int             `json:"line"`
	Spec  string          `json:"spec"`
	Zone  string          `json:"zone"`
	Job   string          `json:"job"`
	Key   string          `json:"key"`
	Args  []string        `json:"args"`
	Slots []explainedSlot `json:"slots"`
}

func runScheduleExplain(d *deps, file string, o scheduleExplainOptions) error {
	if o.next < 1 || o.next > 1000 {
		return exitcode.Usagef("--next 5", "--next must be 1..1000, not %d", o.next)
	}
	from := d.now()
	if o.from != "" {
		t, err := time.Parse(time.RFC3339, o.from)
		if err != nil {
			return exitcode.Usagef("--from 2026-03-07T00:00:00Z", "invalid --from %q", o.from)
		}
		from = t
	}
	local := time.Local
	name := o.localZone
	if name == "" {
		name = d.getenv("TZ")
	}
	if name != "" {
		l, err := time.LoadLocation(name)
		if err != nil {
			return exitcode.Usagef("--local-zone Europe/Berlin", "unknown zone %q", name)
		}
		local = l
	}
	ct, err := loadCrontab(file)
	if err != nil {
		return err
	}
	var out []explainedEntry
	for _, e := range ct.Entries {
		ee := explainedEntry{Line: e.Line, Spec: e.Spec, Zone: e.Zone, Job: e.Job, Key: e.Key, Args: e.Args}
		zone := e.Schedule.Location()
		layout := "2006-01-02 15:04"
		if e.Schedule.Every() > 0 {
			layout = "2006-01-02 15:04:05"
		}
		at := from
		var prev *scheduler.Slot
		for i := 0; i < o.next; i++ {
			s, ok := e.Schedule.Next(at)
			if !ok {
				break
			}
			es := explainedSlot{UTC: s.At, ZoneTime: s.At.In(zone).Format(layout + " MST"), Local: s.At.In(local).Format(layout + " MST")}
			switch s.Kind {
			case scheduler.Gap:
				es.Note = fmt.Sprintf("DST: %s does not exist in %s; runs once at the transition", s.Wall.Format("15:04"), e.Zone)
			case scheduler.Repeat:
				es.Note = fmt.Sprintf("DST: %s occurs twice in %s; runs once, at the first", s.Wall.Format("15:04"), e.Zone)
			}
			if prev != nil && es.Note == "" {
				if n := offsetChange(prev.At, s.At, zone, e.Zone); n != "" {
					es.Note = n
				} else if n := offsetChange(prev.At, s.At, local, local.String()); n != "" {
					es.Note = n
				}
			}
			ee.Slots = append(ee.Slots, es)
			prev = &s
			at = s.At
		}
		out = append(out, ee)
	}
	if d.g.json {
		if out == nil {
			out = []explainedEntry{}
		}
		return writeJSON(d.stdout, map[string]any{"file": file, "from": from.UTC(), "local_zone": local.String(), "entries": out})
	}
	printExplain(d.stdout, out, local)
	return nil
}

func offsetChange(a, b time.Time, loc *time.Location, name string) string {
	_, oa := a.In(loc).Zone()
	_, ob := b.In(loc).Zone()
	if oa == ob {
		return ""
	}
	return fmt.Sprintf("DST: %s offset changes %s -> %s", name, a.In(loc).Format("-07:00"), b.In(loc).Format("-07:00"))
}

func printExplain(w io.Writer, entries []explainedEntry, local *time.Location) {
	for i, e := range entries {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "line %d: %s (%s) %s   [%s]\n", e.Line, e.Spec, e.Zone, e.Job, e.Key)
		showZone := e.Zone != "UTC" && e.Zone != local.String()
		for _, s := range e.Slots {
			line := "  " + s.UTC.Format("2006-01-02 15:04 UTC")
			if s.UTC.Second() != 0 || strings.HasPrefix(e.Spec, "@every") {
				line = "  " + s.UTC.Format("2006-01-02 15:04:05 UTC")
			}
			if showZone {
				line += "   " + s.ZoneTime
			}
			if local.String() != "UTC" {
				line += "   local " + s.Local
			}
			if s.Note != "" {
				line += "   " + s.Note
			}
			fmt.Fprintln(w, line)
		}
	}
}
