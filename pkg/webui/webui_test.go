package webui_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/internal/pgtest"
	"github.com/ip2a/ip2a-ops/internal/tasktest"
	"github.com/ip2a/ip2a-ops/pkg/ledger"
	"github.com/ip2a/ip2a-ops/pkg/tasks"
	"github.com/ip2a/ip2a-ops/pkg/webui"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// fixture is a database with one completed and one failed task and three
// ledger runs, the failed one made by the failed task.
type fixture struct {
	pool            *pgxpool.Pool
	svc             *tasks.River
	done, failed    tasks.ID
	okRun, badRun   int64
	taskRun, unused int64
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	url := tasktest.Database(t)
	svc := tasktest.Worker(t, url, tasks.Builtin(), tasks.RiverOptions{})
	f := fixture{pool: pgtest.Pool(t, url), svc: svc}
	f.done = tasktest.Enqueue(t, svc, "noop", map[string]any{}, 1)
	f.failed = tasktest.Enqueue(t, svc, "test.fail", map[string]any{"message": "grant table locked"}, 1)
	require.Equal(t, tasks.StateCompleted, tasktest.WaitFinal(t, svc, f.done, time.Minute).State)
	require.Equal(t, tasks.StateFailed, tasktest.WaitFinal(t, svc, f.failed, time.Minute).State)

	l := ledger.New(f.pool, "ip2a_ops")
	run := func(job, state string, code int, msg string) int64 {
		r, err := l.Start(t.Context(), ledger.StartParams{Job: job, Trigger: "manual", Host: "test", PID: 1})
		require.NoError(t, err)
		require.NoError(t, l.Finish(t.Context(), r.ID, state, code, msg, map[string]int{"rows": 3}))
		return r.ID
	}
	f.okRun = run("backup", ledger.Succeeded, 0, "")
	f.badRun = run("integrity-check", ledger.Failed, 1, "integrity-check: query orphaned_enrollments: canceling statement due to statement timeout\nsecond line")
	f.taskRun = run("grant-report", ledger.Failed, 1, "grant table locked")
	// The run the failed task made. (Until the ledger records task ids
	// itself, the column is added here as its migration adds it.)
	_, err := f.pool.Exec(t.Context(), `ALTER TABLE ip2a_ops.runs ADD COLUMN IF NOT EXISTS task_id bigint`)
	require.NoError(t, err)
	_, err = f.pool.Exec(t.Context(), `UPDATE ip2a_ops.runs SET task_id = $1 WHERE id = $2`, int64(f.failed), f.taskRun)
	require.NoError(t, err)
	return f
}

func serve(t *testing.T, f fixture, readOnly bool) string {
	t.Helper()
	ui, err := webui.New(webui.Options{Pool: f.pool, ReadOnly: readOnly})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	require.NoError(t, ui.Start(ctx))
	srv := httptest.NewServer(ui)
	t.Cleanup(srv.Close)
	return srv.URL
}

func fetch(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Accept", "text/html")
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func TestRunsPage(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	base := serve(t, f, false)

	code, body := fetch(t, "GET", base+"/runs", "")
	require.Equal(t, 200, code)
	for _, want := range []string{
		`<a href="/runs?job=integrity-check">integrity-check</a>`,
		`<td class="err">integrity-check: query orphaned_enrollments: canceling statement due to statement timeout</td>`,
		`<a href="/riverui/jobs/` + f.failed.String() + `">task ` + f.failed.String() + `</a>`, // the run's task
		`<a href="/runs?task=` + f.failed.String() + `">its runs</a>`,                          // the task's runs
		`<td class="err">grant table locked (attempt 1 of 1)</td>`,
	} {
		require.Contains(t, body, want)
	}
	require.NotContains(t, body, "second line", "only the error's first line in the table")
	require.NotContains(t, body, `/riverui/jobs/`+f.done.String()+`"`, "the completed task is not among the failed")

	code, body = fetch(t, "GET", base+"/runs?task="+f.failed.String(), "")
	require.Equal(t, 200, code)
	_, body, _ = strings.Cut(body, `id="latest"`) // the runs, not the jobs table
	require.Contains(t, body, "Runs of task "+f.failed.String())
	require.Contains(t, body, `<a href="/runs/`+itoa(f.taskRun)+`">`)
	require.NotContains(t, body, `<a href="/runs/`+itoa(f.badRun)+`">`)

	code, body = fetch(t, "GET", base+"/runs?job=backup", "")
	require.Equal(t, 200, code)
	_, body, _ = strings.Cut(body, `id="latest"`)
	require.Contains(t, body, `<a href="/runs/`+itoa(f.okRun)+`">`)
	require.NotContains(t, body, `<a href="/runs/`+itoa(f.badRun)+`">`)

	code, body = fetch(t, "GET", base+"/runs/"+itoa(f.taskRun), "")
	require.Equal(t, 200, code)
	require.Contains(t, body, `<a id="task-link" href="/riverui/jobs/`+f.failed.String()+`">`)
	require.Contains(t, body, `&#34;rows&#34;: 3`)
	code, _ = fetch(t, "GET", base+"/runs/999999", "")
	require.Equal(t, 404, code)
	code, _ = fetch(t, "GET", base+"/runs?task=x", "")
	require.Equal(t, 400, code)
}

func itoa(n int64) string { return tasks.ID(n).String() }

// TestReadOnly: River UI's changes are refused and its buttons hidden in
// read-only mode, and go through otherwise.
func TestReadOnly(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	retry := `{"ids": ["` + f.failed.String() + `"]}`

	ro := serve(t, f, true)
	code, page := fetch(t, "GET", ro+"/riverui/jobs/"+f.failed.String(), "")
	require.Equal(t, 200, code)
	require.Contains(t, page, "var readOnly = true;")
	require.Less(t, strings.Index(page, "ip2a-ops-read-only"), strings.Index(page, "</head>"))
	for _, path := range []string{"/riverui/api/jobs/retry", "/riverui/api/jobs/cancel", "/riverui/api/jobs/delete"} {
		code, _ = fetch(t, "POST", ro+path, retry)
		require.Equal(t, 403, code, path)
	}
	code, _ = fetch(t, "PUT", ro+"/riverui/api/queues/default/pause", "{}")
	require.Equal(t, 403, code)
	code, body := fetch(t, "GET", ro+"/riverui/api/jobs/"+f.failed.String(), "")
	require.Equal(t, 200, code, "reading still works")
	var job struct{ State string }
	require.NoError(t, json.Unmarshal([]byte(body), &job))
	require.Equal(t, "discarded", job.State)
	require.Equal(t, tasks.StateFailed, tasktest.WaitFinal(t, f.svc, f.failed, time.Second).State, "nothing changed")

	rw := serve(t, f, false)
	code, page = fetch(t, "GET", rw+"/riverui/jobs/"+f.failed.String(), "")
	require.Equal(t, 200, code)
	require.Contains(t, page, "var readOnly = false;")
	require.Contains(t, page, "ip2a-ops-runs-link")
	code, body = fetch(t, "POST", rw+"/riverui/api/jobs/retry", retry)
	require.Equal(t, 200, code, body)
	r := tasktest.WaitFor(t, f.svc, f.failed, time.Minute, "retried", func(r tasks.Result) bool { return r.Attempts == 2 && r.State.Final() })
	require.Len(t, r.Errors, 2)
}
