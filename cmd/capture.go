package cmd

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ip2a/ip2a-ops/pkg/exitcode"
	"github.com/ip2a/ip2a-ops/pkg/jobs"
)

// capturedJob is a job command line turned into what a queue stores: the
// job's kind and JSON args, and the run settings that are global flags.
type capturedJob struct {
	Kind       string
	Args       []byte
	MaxRuntime time.Duration
}

// captureJob parses a command line with the command tree in capture mode:
// the job command records its job and arguments and runs nothing. Flags
// and environment mean what they would mean for the same command run here.
// A bad flag is a usage error; a command line that runs no job (--help,
// integrity-check --list) gives nil.
func (d *deps) captureJob(ctx context.Context, args []string) (*capturedJob, error) {
	child := newDeps(Env{Stdin: strings.NewReader(""), Stdout: d.stdout, Stderr: d.stderr, Getenv: d.getenv, Now: d.now})
	defer child.close()
	child.capture = true
	if err := child.execute(ctx, args); err != nil {
		return nil, err
	}
	if child.captured == nil {
		return nil, nil
	}
	return &capturedJob{Kind: child.captured.kind, Args: child.captured.args, MaxRuntime: child.g.maxRuntime}, nil
}

// metadata is what a worker needs besides the args: the run's maximum
// runtime and, for a daemon slot, the slot (nil when neither).
func (c *capturedJob) metadata(slot *time.Time) map[string]string {
	m := map[string]string{}
	if c.MaxRuntime > 0 {
		m[jobs.TaskMetaMaxRuntime] = c.MaxRuntime.String()
	}
	if slot != nil {
		m[jobs.TaskMetaSlot] = slot.UTC().Format(time.RFC3339)
	}
	if len(m) == 0 {
		return nil
	}
	return m
}

// jobCommandPath is the command line (without flags) of the command that
// runs the job kind: the shortest one annotated with it ("backup verify"
// for backup-verify, "audit-archive" for audit-archive).
func jobCommandPath(root *cobra.Command, kind string) []string {
	level := []*cobra.Command{root}
	for len(level) > 0 {
		var next []*cobra.Command
		for _, c := range level {
			if c.Annotations[jobAnnotation] == kind {
				return strings.Fields(c.CommandPath())[1:]
			}
			next = append(next, c.Commands()...)
		}
		level = next
	}
	return nil
}

// captureKind turns `tasks enqueue KIND -- FLAGS` into the job's args:
// FLAGS (and positional arguments) are read by KIND's own command.
func (d *deps) captureKind(ctx context.Context, kind string, flags []string) (*capturedJob, error) {
	path := jobCommandPath(newRootCmd(newDeps(Env{Getenv: d.getenv, Now: d.now})), kind)
	if path == nil {
		return nil, exitcode.Usagef("--args JSON   (kinds that are not ip2a-ops jobs take their args as JSON)", "task kind %s is not an ip2a-ops job: it has no command whose flags could follow --", kind)
	}
	c, err := d.captureJob(ctx, append(slices.Clone(path), flags...))
	if err != nil {
		return nil, err
	}
	if c == nil {
		if slices.Contains(flags, "--help") || slices.Contains(flags, "-h") {
			return nil, nil
		}
		return nil, exitcode.Usagef("ip2a-ops "+strings.Join(path, " ")+" --help", "ip2a-ops %s %s runs no job: nothing to enqueue", strings.Join(path, " "), strings.Join(flags, " "))
	}
	return c, nil
}
