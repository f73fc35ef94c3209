package exitcode

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

type coded struct{}

func (coded) Error() string { return "coded" }
func (coded) ExitCode() int { return 42 }

func TestCode(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, OK},
		{"plain", errors.New("boom"), Failed},
		{"usage", Usagef("pass --grant", "unknown grant %q", "X"), Usage},
		{"wrapped usage", fmt.Errorf("cmd: %w", Usagef("", "bad")), Usage},
		{"skipped", fmt.Errorf("backup: %w", ErrSkipped), Skipped},
		{"canceled", fmt.Errorf("dump: %w", context.Canceled), Interrupted},
		{"problems", fmt.Errorf("3 findings: %w", ErrProblems), Problems},
		{"coder", fmt.Errorf("x: %w", coded{}), 42},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, Code(tc.err))
		})
	}
	require.Equal(t, "pass --grant", Hint(fmt.Errorf("w: %w", Usagef("pass --grant", "x"))))
}
