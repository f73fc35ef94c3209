package cmd

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/stretchr/testify/require"
)

// Every example in every command's --help must parse: a user copies them.
// Each is run with --help appended, which checks the command and its flags
// and runs nothing.
func TestHelpExamplesParse(t *testing.T) {
	t.Parallel()
	root := newRootCmd(newDeps(Env{Getenv: func(string) string { return "" }}))
	var walk func(c *cobra.Command)
	checked := 0
	walk = func(c *cobra.Command) {
		for _, line := range strings.Split(c.Example, "\n") {
			line = strings.TrimSpace(line)
			if i := strings.Index(line, "#"); i >= 0 {
				line = strings.TrimSpace(line[:i])
			}
			for _, cut := range []string{" > ", " >> ", " | ", " && ", "   ("} {
				if i := strings.Index(line, cut); i >= 0 {
					line = line[:i]
				}
			}
			if !strings.HasPrefix(line, "ip2a-ops ") || strings.ContainsAny(line, `"'$`) {
				continue
			}
			args := append(strings.Fields(line)[1:], "--help")
			var out, errb bytes.Buffer
			code := Run(context.Background(), args, Env{Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }})
			require.Equal(t, 0, code, "example of %q: %s\n%s", c.CommandPath(), line, errb.String())
			checked++
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	require.Greater(t, checked, 20, "examples checked")
}
