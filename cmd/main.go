// Package cmd is the thin command-line layer of ip2a-ops: flags, environment
// and output over the library packages in pkg/. Only main.go exits.
package cmd

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/ip2a/ip2a-ops/pkg/dbconn"
	"github.com/ip2a/ip2a-ops/pkg/exitcode"
	"github.com/ip2a/ip2a-ops/pkg/jobs"
)

// Env is what a run of the binary gets from its process. Tests fill it in.
type Env struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	Now            func() time.Time
}

// Main runs ip2a-ops with args (without the program name) and returns the
// exit code. ctx is cancelled on SIGINT/SIGTERM by main.go.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return Run(ctx, args, Env{Stdin: stdin, Stdout: stdout, Stderr: stderr, Getenv: os.Getenv, Now: time.Now})
}

// Run is Main with every dependency given.
func Run(ctx context.Context, args []string, env Env) int {
	if env.Getenv == nil {
		env.Getenv = os.Getenv
	}
	if env.Now == nil {
		env.Now = time.Now
	}
	d := newDeps(env)
	defer d.close()
	return d.exit(d.execute(ctx, args))
}

// execute runs the command line args (in capture mode a job command only
// records its invocation).
func (d *deps) execute(ctx context.Context, args []string) error {
	d.args = args
	root := newRootCmd(d)
	root.SetArgs(args)
	root.SetIn(d.stdin)
	root.SetOut(d.stdout)
	root.SetErr(d.stderr)
	err := root.ExecuteContext(ctx)
	if err != nil && !d.ran && !exitcode.IsUsage(err) {
		// Cobra rejected the command line (unknown command, wrong number of
		// arguments) before anything ran: a usage error.
		err = exitcode.UsageError(err, "ip2a-ops --help")
	}
	return err
}

// exit prints err (one line, redacted) and its hint on stderr and returns
// the exit code of its outcome.
func (d *deps) exit(err error) int {
	if err == nil {
		return exitcode.OK
	}
	fmt.Fprintf(d.stderr, "Error: %s\n", dbconn.Redact(oneLine(err.Error())))
	if h := d.hint(err); h != "" {
		fmt.Fprintf(d.stderr, "Try: %s\n", h)
	}
	return jobs.Classify(err).Code()
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
