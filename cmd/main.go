// Package cmd is the thin command-line layer of ip2a-ops: flags, environment
// and output over the library packages in pkg/. Only main.go exits.
package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/ip2a/ip2a-ops/pkg/dbconn"
	"github.com/ip2a/ip2a-ops/pkg/exitcode"
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
	d.args = args
	defer d.close()
	root := newRootCmd(d)
	root.SetArgs(args)
	root.SetIn(env.Stdin)
	root.SetOut(env.Stdout)
	root.SetErr(env.Stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitcode.OK
	}
	var u *exitcode.UsageError
	if !d.ran && !errors.As(err, &u) {
		// Cobra rejected the command line (unknown command, wrong number of
		// arguments) before anything ran: a usage error.
		err = &exitcode.UsageError{Err: err, Hint: "ip2a-ops --help"}
	}
	code := exitcode.Code(err)
	fmt.Fprintf(env.Stderr, "Error: %s\n", dbconn.Redact(oneLine(err.Error())))
	if h := exitcode.Hint(err); h != "" {
		fmt.Fprintf(env.Stderr, "Try: %s\n", h)
	}
	return code
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
