// Package exitcode is the one table that maps errors to process exit codes.
// Every command uses it, so cron, systemd and Railway can branch on the same
// codes for every job.
package exitcode

import (
	"context"
	"errors"
	"fmt"
)

// The exit-code contract shared by every command.
const (
	OK          = 0   // the job succeeded
	Failed      = 1   // the job failed or could not verify its result
	Usage       = 2   // usage or configuration error
	Problems    = 3   // the job ran and found problems (findings, stale status)
	Skipped     = 4   // another run of the same job is active
	Interrupted = 130 // cancelled by SIGINT/SIGTERM
)

// Table documents every code, in order, for help texts.
var Table = []struct {
	Code    int
	Meaning string
}{
	{OK, "success"},
	{Failed, "the job failed or could not verify its result"},
	{Usage, "usage or configuration error (bad flag, missing setting, ip2a_ops schema missing, tool missing)"},
	{Problems, "the job ran and found problems (integrity findings, a stale backup or job)"},
	{Skipped, "skipped: another run of the same job is active"},
	{Interrupted, "interrupted by SIGINT/SIGTERM"},
}

// Help renders Table as the text of `ip2a-ops help exit-codes`.
func Help() string {
	s := "Every ip2a-ops command exits with one of these codes:\n\n"
	for _, r := range Table {
		s += fmt.Sprintf("  %3d  %s\n", r.Code, r.Meaning)
	}
	return s
}

// UsageError is a usage or configuration problem; Hint is printed as "Try: ...".
type UsageError struct {
	Err  error
	Hint string
}

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// Usagef returns a UsageError with a hint (which may be empty).
func Usagef(hint, format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format, args...), Hint: hint}
}

// ErrProblems marks "ran and found problems" (exit 3). Wrap it:
// fmt.Errorf("%d critical findings: %w", n, exitcode.ErrProblems).
var ErrProblems = errors.New("problems found")

// ErrSkipped marks a run skipped because another run of the job is active.
var ErrSkipped = errors.New("another run is active")

// Coder lets an error choose its own exit code.
type Coder interface{ ExitCode() int }

// Code maps err to the exit code; nil is OK.
func Code(err error) int {
	if err == nil {
		return OK
	}
	var c Coder
	if errors.As(err, &c) {
		return c.ExitCode()
	}
	var u *UsageError
	switch {
	case errors.As(err, &u):
		return Usage
	case errors.Is(err, ErrSkipped):
		return Skipped
	case errors.Is(err, context.Canceled):
		return Interrupted
	case errors.Is(err, ErrProblems):
		return Problems
	}
	return Failed
}

// Hint returns the "Try: ..." hint carried by err, if any.
func Hint(err error) string {
	var u *UsageError
	if errors.As(err, &u) {
		return u.Hint
	}
	return ""
}
