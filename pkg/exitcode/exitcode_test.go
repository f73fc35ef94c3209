package exitcode

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		err       error
		want      Outcome
		code      int
		retryable bool
	}{
		{"nil", nil, OutcomeSucceeded, OK, false},
		{"plain", errors.New("boom"), OutcomeFailed, Failed, true},
		{"usage", Usagef("pass --grant", "unknown grant %q", "X"), OutcomeUsage, Usage, false},
		{"wrapped usage", fmt.Errorf("cmd: %w", Usagef("", "bad")), OutcomeUsage, Usage, false},
		{"skipped", fmt.Errorf("backup: %w", ErrSkipped), OutcomeSkipped, Skipped, false},
		{"canceled", fmt.Errorf("dump: %w", context.Canceled), OutcomeInterrupted, Interrupted, true},
		{"problems", fmt.Errorf("3 findings: %w", ErrProblems), OutcomeFindings, Problems, false},
		{"outcome overrides sentinel", WithOutcome(fmt.Errorf("lost claim: %w", context.Canceled), OutcomeFailed), OutcomeFailed, Failed, true},
		{"outermost outcome wins", WithOutcome(fmt.Errorf("x: %w", Usagef("", "bad")), OutcomeFailed), OutcomeFailed, Failed, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, Classify(tc.err))
			require.Equal(t, tc.code, Code(tc.err))
			require.Equal(t, tc.retryable, Classify(tc.err).Retryable())
		})
	}
	require.Equal(t, "pass --grant", Hint(fmt.Errorf("w: %w", Usagef("pass --grant", "x"))))
	require.Equal(t, "inner", Hint(WithOutcome(UsageError(errors.New("x"), "inner"), OutcomeFailed)), "a hint below an outcome without one still shows")
	require.Nil(t, WithOutcome(nil, OutcomeFailed))
}
