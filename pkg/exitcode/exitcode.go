// Package exitcode is the one classification of a run's outcome and the
// exit code each outcome has. Every command and every trigger (cron, the
// daemon, a queue) derives its exit code, ledger state and retry decision
// from it, so they agree for every job.
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

// Outcome is what a run came to.
type Outcome string

// The outcomes. A queue retries only Retryable ones.
const (
	OutcomeSucceeded   Outcome = "succeeded"   // done
	OutcomeFindings    Outcome = "findings"    // ran to the end and found problems
	OutcomeSkipped     Outcome = "skipped"     // another run of the job is active
	OutcomeFailed      Outcome = "failed"      // failed; may pass when tried again
	OutcomeUsage       Outcome = "usage"       // bad arguments or configuration: a retry cannot help
	OutcomeInterrupted Outcome = "interrupted" // cancelled from outside (signal, shutdown)
	unclassified       Outcome = ""
)

// Code is the outcome's exit code.
func (o Outcome) Code() int {
	switch o {
	case OutcomeSucceeded:
		return OK
	case OutcomeFindings:
		return Problems
	case OutcomeSkipped:
		return Skipped
	case OutcomeUsage:
		return Usage
	case OutcomeInterrupted:
		return Interrupted
	}
	return Failed
}

// Retryable reports whether running the same arguments again may succeed:
// failures and interruptions may; findings, usage errors and a busy job
// (whose active run does the work) may not.
func (o Outcome) Retryable() bool { return o == OutcomeFailed || o == OutcomeInterrupted }

// Error carries an outcome chosen by the code that knows it, and a hint
// printed as "Try: ..." (which may be empty). It is the only error type
// that carries an exit code.
type Error struct {
	Err     error
	Outcome Outcome
	Hint    string
	// Field, when set, names the argument at fault, so that a caller with
	// no Hint can say which flag (or task field) to change.
	Field string
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// ExitCode is the outcome's exit code.
func (e *Error) ExitCode() int { return e.Outcome.Code() }

// UsageError marks err as a usage or configuration error (exit 2) with a hint.
func UsageError(err error, hint string) error {
	return &Error{Err: err, Outcome: OutcomeUsage, Hint: hint}
}

// Usagef returns a usage error with a hint (which may be empty).
func Usagef(hint, format string, args ...any) error {
	return UsageError(fmt.Errorf(format, args...), hint)
}

// FieldUsage marks err as a usage error caused by argument field, keeping
// err's text.
func FieldUsage(field string, err error) error {
	return &Error{Err: err, Outcome: OutcomeUsage, Field: field}
}

// FieldOf names the argument at fault in err ("" when none does): the
// outermost *Error with a Field, else a *FieldError.
func FieldOf(err error) string {
	var e *Error
	for x := err; errors.As(x, &e); x = e.Err {
		if e.Field != "" {
			return e.Field
		}
	}
	var f *FieldError
	if errors.As(err, &f) {
		return f.Field
	}
	return ""
}

// WithOutcome marks err with outcome o (nil stays nil).
func WithOutcome(err error, o Outcome) error {
	if err == nil {
		return nil
	}
	return &Error{Err: err, Outcome: o}
}

// ErrProblems marks "ran and found problems" (exit 3). Wrap it:
// fmt.Errorf("%d critical findings: %w", n, exitcode.ErrProblems).
var ErrProblems = errors.New("problems found")

// ErrSkipped marks a run skipped because another run of the job is active.
var ErrSkipped = errors.New("another run is active")

// Classify maps err to its outcome; nil is OutcomeSucceeded. The outermost
// *Error decides; otherwise cancellation, a busy job and findings are
// recognised by their sentinels, and anything else is a failure.
func Classify(err error) Outcome {
	if err == nil {
		return OutcomeSucceeded
	}
	var e *Error
	var f *FieldError
	switch {
	case errors.As(err, &e) && e.Outcome != unclassified:
		return e.Outcome
	case errors.As(err, &f):
		return OutcomeUsage
	case errors.Is(err, ErrSkipped):
		return OutcomeSkipped
	case errors.Is(err, context.Canceled):
		return OutcomeInterrupted
	case errors.Is(err, ErrProblems):
		return OutcomeFindings
	}
	return OutcomeFailed
}

// Code maps err to the exit code; nil is OK.
func Code(err error) int { return Classify(err).Code() }

// IsUsage reports whether err is classified as a usage error.
func IsUsage(err error) bool { return Classify(err) == OutcomeUsage }

// Hint returns the "Try: ..." hint carried by err, if any.
func Hint(err error) string {
	var e *Error
	for errors.As(err, &e) {
		if e.Hint != "" {
			return e.Hint
		}
		err = e.Err
	}
	return ""
}

// FieldError names the option a library's Validate rejected, without CLI
// wording: the command line maps Field to its flag for the hint. It is a
// usage error.
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

// Fieldf returns a *FieldError for field.
func Fieldf(field, format string, args ...any) error {
	return &FieldError{Field: field, Err: fmt.Errorf(format, args...)}
}
