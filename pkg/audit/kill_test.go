package audit_test

import (
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/pkg/audit"
	"github.com/ip2a/ip2a-ops/pkg/fixture"
)

// buildBinary builds ip2a-ops once for the test.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "ip2a-ops")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/ip2a/ip2a-ops").CombinedOutput()
	require.NoError(t, err, "%s", out)
	return bin
}

// TestKill9AtRandomPoints kills the real binary with SIGKILL at a random
// moment of a run (export, upload, read-back, delete transaction), reruns
// it to completion, and checks that the table plus the archives hold
// exactly the original rows, each once.
func TestKill9AtRandomPoints(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs 20 killed runs")
	}
	t.Parallel()
	kill9Trials(t, buildBinary(t), false, 20)
}

// The same when ids do not follow time: months go in one group, read by
// two COPY streams, stored two at a time and deleted by two transactions
// at once.
func TestKill9AtRandomPointsIDsShuffled(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs 10 killed runs")
	}
	t.Parallel()
	kill9Trials(t, buildBinary(t), true, 10)
}

func kill9Trials(t *testing.T, bin string, shuffled bool, trials int) {
	killedMidway := 0
	for i := range trials {
		t.Run("trial", func(t *testing.T) {
			e := newEnv(t, fixture.Newer, 5, 400)
			ctx := t.Context()
			if shuffled {
				renumberIDs(t, e, true, 1)
			}
			_, err := audit.InstallGuard(ctx, e.cfg)
			require.NoError(t, err)
			original := e.ids(t)
			run := func() *exec.Cmd {
				c := exec.Command(bin, "--database-url", e.url, "--log-level", "warn", "--stale-after", "1s", "--heartbeat", "100ms",
					"audit-archive", "run", "--storage", e.dir, "--temp-dir", t.TempDir(), "--delete-batch", "100")
				c.Env = append(os.Environ(), "IP2A_OPS_TRIGGER=manual")
				return c
			}
			// Random point of the run: from right after start to about its
			// whole length (a full run takes about 0.5-1 s here).
			delay := time.Duration(rand.IntN(500)) * time.Millisecond
			c := run()
			require.NoError(t, c.Start())
			timer := time.AfterFunc(delay, func() { _ = c.Process.Signal(syscall.SIGKILL) })
			err = c.Wait()
			timer.Stop()
			var ee *exec.ExitError
			if errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signaled() {
				killedMidway++
			}
			// Rerun until it is not skipped (the killed run's ledger row
			// turns abandoned once its heartbeat is older than 1 s).
			deadline := time.Now().Add(60 * time.Second)
			for {
				out, err := run().CombinedOutput()
				if err == nil {
					break
				}
				require.True(t, errors.As(err, &ee) && ee.ExitCode() == 4 && time.Now().Before(deadline), "trial %d (killed after %s): rerun: %v\n%s", i, delay, err, out)
				time.Sleep(200 * time.Millisecond)
			}
			require.Zero(t, e.count(t, `SELECT count(*) FROM audit_logs WHERE changed_at < '2023-11-01'`))
			require.Zero(t, e.count(t, `SELECT count(*) FROM ip2a_ops.audit_archive_months WHERE state <> 'deleted'`))
			requireConserved(t, e, e.store, original)
			// No stray archives: one data object per recorded month.
			objs, err := e.store.List(ctx, audit.DefaultPrefix+"/")
			require.NoError(t, err)
			require.Len(t, objs, 2*int(e.count(t, `SELECT count(*) FROM ip2a_ops.audit_archive_months`)))
			_, err = audit.Verify(ctx, audit.VerifyOptions{Config: e.cfg})
			require.NoError(t, err)
		})
	}
	t.Logf("%d of %d runs were killed before finishing", killedMidway, trials)
	require.GreaterOrEqual(t, killedMidway, trials/2, "most kills must land inside a run")
}
