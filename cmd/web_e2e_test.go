package cmd

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/internal/nettest"
	"github.com/ip2a/ip2a-ops/internal/pgtest"
)

const (
	webUser     = "ops"
	webPassword = "correct horse battery staple"
)

// TestWebUIInChromium drives the web page of a real worker and a real
// daemon (in-process, on loopback, with credentials) from headless
// Chromium: the sign-in form refuses a wrong password and accepts the
// right one, the run ledger shows a succeeded and a failed run with its
// error, River UI shows a completed and a failed task, the worker offers
// Retry on the failed task and the read-only daemon does not. Screenshots
// are kept in the directory the log names. CI installs Chromium; there the
// test fails without it.
func TestWebUIInChromium(t *testing.T) {
	t.Parallel()
	browser := chromium(t)
	url := pgtest.NewDatabase(t)
	env := func(k string) string {
		switch k {
		case "IP2A_OPS_HTTP_USER":
			return webUser
		case "IP2A_OPS_HTTP_PASSWORD":
			return webPassword
		}
		return ""
	}
	run := func(args ...string) (int, string) {
		var out, errb bytes.Buffer
		code := Run(t.Context(), append([]string{"--database-url", url, "--log-level", "error"}, args...), Env{Stdout: &out, Stderr: &errb, Getenv: env})
		return code, strings.TrimSpace(out.String()) + errb.String()
	}
	code, out := run("migrate")
	require.Equal(t, 0, code, out)
	// A succeeded and a failed run in the ledger, by real jobs.
	code, out = run("cleanup")
	require.Equal(t, 0, code, out)
	code, out = run("backup", "--storage", "file://"+t.TempDir(), "--pg-dump", "/nonexistent/pg_dump")
	require.NotEqual(t, 0, code, out)
	// A task that will complete and one that will fail.
	code, done := run("tasks", "enqueue", "noop")
	require.Equal(t, 0, code, done)
	code, failed := run("tasks", "enqueue", "test.fail", "--max-attempts", "1", "--args", `{"message": "grant table locked"}`)
	require.Equal(t, 0, code, failed)

	ctx, stop := context.WithCancel(t.Context())
	worker, daemon := nettest.FreeAddr(t), nettest.FreeAddr(t)
	crontab := filepath.Join(t.TempDir(), "crontab")
	require.NoError(t, os.WriteFile(crontab, []byte("@yearly ip2a-ops cleanup\n"), 0o600))
	exits := make(chan int, 2)
	go func() {
		exits <- Run(ctx, []string{"--database-url", url, "worker", "--listen", worker}, Env{Stdout: io.Discard, Stderr: io.Discard, Getenv: env})
	}()
	go func() {
		exits <- Run(ctx, []string{"--database-url", url, "daemon", "--crontab", crontab, "--listen", daemon, "--read-only"}, Env{Stdout: io.Discard, Stderr: io.Discard, Getenv: env})
	}()
	t.Cleanup(func() {
		stop()
		for range 2 {
			select {
			case code := <-exits:
				require.Equal(t, 0, code)
			case <-time.After(30 * time.Second):
				t.Error("worker or daemon did not stop")
			}
		}
	})
	code, out = run("tasks", "status", failed, "--wait", "1m")
	require.Equal(t, 1, code, out)
	code, out = run("tasks", "status", done, "--wait", "1m")
	require.Equal(t, 0, code, out)
	waitHTTP(t, "http://"+daemon+"/healthz")

	artifacts := artifactDir(t)
	bctx := newBrowser(t, browser)
	shot := func(name string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			png, err := chromedp.FullScreenshot(100)(ctx, tg)
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(artifacts, name), png, 0o644)
		})
	}
	text := func(want string) chromedp.Action[chromedp.Void] {
		return chromedp.Poll[chromedp.Void](fmt.Sprintf(`document.body && document.body.innerText.includes(%q)`, want), chromedp.WithPollingTimeout(30*time.Second))
	}
	visibleButtons := `Array.from(document.querySelectorAll("button")).filter(b => ["Retry", "Cancel", "Delete"].includes(b.textContent.trim()) && b.offsetParent !== null).map(b => b.textContent.trim())`
	signIn := func(password string) chromedp.Action[chromedp.Void] {
		return chromedp.Steps(
			chromedp.WaitVisible(chromedp.ID("password")),
			chromedp.Clear(chromedp.ID("user")),
			chromedp.SendKeys(chromedp.ID("user"), webUser),
			chromedp.SendKeys(chromedp.ID("password"), password),
			chromedp.Click(chromedp.ID("sign-in")),
		)
	}

	// Signing in: a wrong password is refused, the right one lands on the
	// page first asked for.
	require.NoError(t, chromedp.Do(bctx,
		chromedp.Navigate("http://"+worker+"/runs"),
		signIn("correct horse battery stable"),
		chromedp.WaitVisible(chromedp.ID("login-error")),
		shot("1-login-refused.png"),
	))
	loginText, err := chromedp.Run(bctx, chromedp.Text(chromedp.ID("login-error")))
	require.NoError(t, err)
	require.Equal(t, "Wrong user name or password.", loginText)
	require.NoError(t, chromedp.Do(bctx, signIn(webPassword), chromedp.WaitVisible(chromedp.ID("runs"))))
	location, err := chromedp.Run(bctx, chromedp.Location())
	require.NoError(t, err)
	require.Equal(t, "http://"+worker+"/runs", location)

	// The ledger page: both runs, the failed one with its error, and the
	// failed task.
	require.NoError(t, chromedp.Do(bctx, shot("2-runs.png")))
	read := func(id string) string {
		s, err := chromedp.Run(bctx, chromedp.Text(chromedp.ID(id)))
		require.NoError(t, err)
		return s
	}
	jobs, runs, failedTasks := read("jobs"), read("runs"), read("failed-tasks")
	require.Contains(t, jobs, "cleanup")
	require.Regexp(t, `backup\s+\d+\s+failed`, jobs)
	require.Contains(t, runs, "PostgreSQL client tool missing or too old")
	require.Regexp(t, `cleanup\s+succeeded`, runs)
	require.Regexp(t, failed+`\s+test.fail\s+1/1`, failedTasks)
	require.Contains(t, failedTasks, "grant table locked (attempt 1 of 1)")

	// River UI: the completed task, and the failed one with Retry offered.
	require.NoError(t, chromedp.Do(bctx,
		chromedp.Navigate("http://"+worker+"/riverui/jobs?state=completed"),
		text("noop"),
		shot("3-riverui-completed.png"),
		chromedp.Navigate("http://"+worker+"/riverui/jobs?state=discarded"),
		text("test.fail"),
		chromedp.Navigate("http://"+worker+"/riverui/jobs/"+failed),
		text("grant table locked"),
		chromedp.Poll[chromedp.Void](visibleButtons+`.length > 0`, chromedp.WithPollingTimeout(30*time.Second)),
		shot("4-riverui-failed-task.png"),
	))
	buttons, err := chromedp.Run(bctx, chromedp.Evaluate[[]string](visibleButtons))
	require.NoError(t, err)
	require.Contains(t, buttons, "Retry")
	require.Equal(t, "ledger runs of task "+failed, read("ip2a-ops-runs-link"))
	require.NoError(t, chromedp.Do(bctx, chromedp.Click(chromedp.ID("ip2a-ops-runs-link")), chromedp.WaitVisible(chromedp.ID("latest"))))
	require.Equal(t, "Runs of task "+failed, read("latest"), "from the task to its runs")

	// The read-only daemon: the same task, no Retry, Cancel or Delete.
	// (Cookies do not tell ports apart, and the daemon has the same
	// credentials, so the worker's session is valid there: sign out first.)
	require.NoError(t, chromedp.Do(bctx,
		chromedp.Navigate("http://"+daemon+"/logout"),
		chromedp.WaitVisible(chromedp.ID("sign-in")),
		chromedp.Navigate("http://"+daemon+"/riverui/jobs/"+failed),
		signIn(webPassword),
		chromedp.WaitVisible(chromedp.ID("ip2a-ops-read-only")),
		text("grant table locked"),
		shot("5-read-only-failed-task.png"),
	))
	badge := read("ip2a-ops-read-only")
	require.Equal(t, "read-only", badge)
	buttons, err = chromedp.Run(bctx, chromedp.Evaluate[[]string](visibleButtons))
	require.NoError(t, err)
	require.Empty(t, buttons)
	t.Logf("screenshots in %s", artifacts)
}

// chromium finds Debian's chromium; without it the test fails in CI and
// is skipped elsewhere.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed (.ci/run installs it: apt-get install -y chromium)")
	}
	t.Skip("chromium is not installed (apt-get install -y chromium)")
	return ""
}

func newBrowser(t *testing.T, path string) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // as root in a container
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1400, 1000),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelBrowser(); cancelAlloc() })
	tctx, cancel := context.WithTimeout(bctx, 3*time.Minute)
	t.Cleanup(cancel)
	return tctx
}

// artifactDir is where screenshots are kept: $IP2A_OPS_TEST_ARTIFACTS, or
// a directory under the system's temporary one that outlives the test.
func artifactDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("IP2A_OPS_TEST_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "ip2a-ops-test-artifacts")
	}
	dir = filepath.Join(dir, t.Name())
	require.NoError(t, os.MkdirAll(dir, 0o755))
	return dir
}

func waitHTTP(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		require.True(t, time.Now().Before(deadline), "%s did not answer: %v", url, err)
		time.Sleep(50 * time.Millisecond)
	}
}
