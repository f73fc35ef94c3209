package cmd

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/stretchr/testify/require"
)

var (
	cronSpec = regexp.MustCompile(`^(@\w+( \d+s)?|(\S+\s+){4}\S+)\s+(/\S*/)?ip2a-ops\s`)
	binPath  = regexp.MustCompile(`^(ExecStart(Pre)?=)?/\S*/ip2a-ops\s`)
)

// checkLine runs one documented command line with --help appended and
// reports whether it was one (lines with shell syntax are passed over).
func checkLine(t *testing.T, where, line string) bool {
	t.Helper()
	line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "$ "))
	// A crontab line: drop the schedule and a path to the binary.
	line = cronSpec.ReplaceAllString(line, "")
	line = binPath.ReplaceAllString(line, "ip2a-ops ")
	if i := strings.Index(line, "#"); i >= 0 {
		line = strings.TrimSpace(line[:i])
	}
	for _, cut := range []string{" > ", " >> ", " | ", " && ", "   ("} {
		if i := strings.Index(line, cut); i >= 0 {
			line = line[:i]
		}
	}
	if !strings.HasPrefix(line, "ip2a-ops ") || strings.ContainsAny(line, "\"'$<>`[]{}") || strings.Contains(line, "...") {
		return false
	}
	args := append(strings.Fields(line)[1:], "--help")
	var out, errb bytes.Buffer
	code := Run(context.Background(), args, Env{Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }})
	require.Equal(t, 0, code, "%s: %s\n%s", where, line, errb.String())
	return true
}

// Command lines in the code blocks of README.md and docs/ must parse too.
func TestDocumentedCommandsParse(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("../docs/*.md")
	require.NoError(t, err)
	files = append(files, "../README.md")
	units, err := filepath.Glob("../deploy/systemd/*.service")
	require.NoError(t, err)
	checked := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		inCode := false
		for i, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "```") {
				inCode = !inCode
				continue
			}
			if inCode && checkLine(t, fmt.Sprintf("%s:%d", f, i+1), line) {
				checked++
			}
		}
	}
	for _, f := range units {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		for i, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "ExecStart") {
				require.True(t, checkLine(t, fmt.Sprintf("%s:%d", f, i+1), line), "%s:%d not checked: %s", f, i+1, line)
				checked++
			}
		}
	}
	require.Greater(t, checked, 10, "documented command lines checked")
}

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
			if checkLine(t, "example of "+c.CommandPath(), line) {
				checked++
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	require.Greater(t, checked, 20, "examples checked")
}
