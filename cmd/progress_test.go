package cmd

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/creack/pty"
	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/internal/fixturetest"
	"github.com/ip2a/ip2a-ops/pkg/fixture"
)

var built struct {
	once sync.Once
	bin  string
	err  error
}

// binary builds ip2a-ops once for the tests that run it as a person would.
func binary(t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		dir, err := os.MkdirTemp("", "ip2a-ops-bin-")
		if err != nil {
			built.err = err
			return
		}
		built.bin = filepath.Join(dir, "ip2a-ops")
		out, err := exec.Command("go", "build", "-o", built.bin, "github.com/ip2a/ip2a-ops").CombinedOutput()
		if err != nil {
			built.err = &buildError{err, string(out)}
		}
	})
	require.NoError(t, built.err)
	return built.bin
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return e.err.Error() + ": " + e.out }

// runInPty runs bin with args on a pseudo-terminal (stdout and stderr both
// the terminal, as at a person's shell) and returns what the terminal got
// and the exit code.
func runInPty(t *testing.T, env []string, bin string, args ...string) (string, int) {
	t.Helper()
	c := exec.Command(bin, args...)
	c.Env = env
	f, err := pty.StartWithSize(c, &pty.Winsize{Rows: 40, Cols: 120})
	require.NoError(t, err)
	var out bytes.Buffer
	_, _ = io.Copy(&out, f) // ends with EIO when the child exits
	err = c.Wait()
	_ = f.Close()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return out.String(), code
}

var percent = regexp.MustCompile(`(\w[\w ]*?) +(\d+)% \|`)

// TestProgressAtATerminal runs a real backup at a pseudo-terminal: the
// terminal shows the dump's progress with rising percentages, then the
// line is cleared and the summary stands alone. The same run with stderr
// not a terminal prints no progress at all.
func TestProgressAtATerminal(t *testing.T) {
	t.Parallel()
	bin := binary(t)
	url := fixturetest.NewTestDB(t, fixture.Newer, fixture.Options{Seed: 2, AuditYears: 2, AuditRowsPerMonth: 15000})
	env := append(os.Environ(), "DATABASE_URL="+url, "IP2A_OPS_TRIGGER=", "TERM=xterm")
	migrated, code := runInPty(t, env, bin, "migrate")
	require.Equal(t, 0, code, migrated)

	store := "file://" + t.TempDir()
	out, code := runInPty(t, env, bin, "backup", "--storage", store, "--compression", "4", "--jobs", "1", "--threads", "1")
	require.Equal(t, 0, code, out)
	var dump []int
	for _, m := range percent.FindAllStringSubmatch(out, -1) {
		if m[1] == "dump" {
			n, _ := strconv.Atoi(m[2])
			dump = append(dump, n)
		}
	}
	require.GreaterOrEqual(t, len(dump), 2, "at least two frames of the dump's progress:\n%q", out)
	for i := 1; i < len(dump); i++ {
		require.GreaterOrEqual(t, dump[i], dump[i-1], "the dump's percentage never goes back: %v", dump)
	}
	require.Greater(t, dump[len(dump)-1], dump[0], "the percentage rises: %v", dump)
	require.Contains(t, out, "MiB/s", "the rate is shown")
	// The summary comes after the last frame, on a cleared line.
	last := strings.LastIndex(out, "% |")
	summary := strings.Index(out, "backup ")
	require.Greater(t, strings.LastIndex(out, "stored in "+store), last, "the summary follows the progress")
	require.NotEqual(t, -1, summary)
	cleared := out[last:strings.LastIndex(out, "stored in "+store)]
	require.Regexp(t, `\r {20,}\r`, cleared, "the progress line is blanked before the summary")

	// Without a terminal: the output of today, no progress drawn.
	c := exec.Command(bin, "backup", "--storage", store)
	c.Env = env
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	require.NoError(t, c.Run(), stderr.String())
	require.NotContains(t, stderr.String(), "% |")
	require.NotContains(t, stderr.String(), "\r")
	require.NotContains(t, stdout.String(), "\r")
	require.Contains(t, stdout.String(), "stored in "+store)
	require.Contains(t, stderr.String(), `"msg":"run finished"`, "logs are JSON lines when stderr is not a terminal")

	// audit-archive counts months at the terminal too: one frame per phase
	// at least, ending at every planned month.
	arch := "file://" + t.TempDir()
	out, code = runInPty(t, env, bin, "audit-archive", "run", "--storage", arch, "--archive-after", "6mo", "--keep-online")
	require.Equal(t, 0, code, out)
	months := regexp.MustCompile(`archive +\d+% \|[^|]*\| \((\d+)/(\d+), [^)]*months`).FindAllStringSubmatch(out, -1)
	require.NotEmpty(t, months, "audit-archive draws its months:\n%q", out)
	most := 0
	for _, m := range months {
		n, _ := strconv.Atoi(m[1])
		most = max(most, n)
	}
	require.Positive(t, most, "months done rise above 0: %v", months)
	require.Contains(t, out, "archived", "the summary follows")

	// Another process sees the progress rise in jobs status --json, from
	// one heartbeat to the next.
	bg := exec.Command(bin, "backup", "--storage", store, "--heartbeat", "100ms", "--compression", "4", "--jobs", "1", "--threads", "1")
	bg.Env = env
	var bgErr bytes.Buffer
	bg.Stderr = &bgErr
	require.NoError(t, bg.Start())
	var seen []int64
	for len(seen) < 3 {
		st := exec.Command(bin, "jobs", "status", "--json")
		st.Env = env
		js, err := st.Output()
		require.NoError(t, err)
		var doc struct {
			Jobs []struct {
				Job     string
				Running *struct {
					Progress *struct {
						Phase string
						Done  int64
						Total int64
					}
				}
			}
		}
		require.NoError(t, json.Unmarshal(js, &doc), string(js))
		for _, j := range doc.Jobs {
			if j.Job == "backup" && j.Running != nil && j.Running.Progress != nil && j.Running.Progress.Phase == "dump" {
				p := j.Running.Progress
				require.Positive(t, p.Total)
				if len(seen) == 0 || p.Done > seen[len(seen)-1] {
					seen = append(seen, p.Done)
				}
			}
		}
		if bg.ProcessState != nil || (len(seen) < 3 && processDone(bg)) {
			break
		}
	}
	require.NoError(t, bg.Wait(), bgErr.String())
	require.GreaterOrEqual(t, len(seen), 2, "jobs status saw the dump's progress rise: %v", seen)

	// --progress never at a terminal, and --json, draw nothing either.
	for _, args := range [][]string{{"--progress", "never"}, {"--json"}} {
		out, code := runInPty(t, env, bin, append([]string{"backup", "--storage", store}, args...)...)
		require.Equal(t, 0, code, out)
		require.NotContains(t, out, "% |", "%v draws no progress", args)
	}
}

// processDone says whether c has exited, without waiting for it.
func processDone(c *exec.Cmd) bool {
	return c.Process.Signal(syscall.Signal(0)) != nil
}
