package apptask_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/internal/nettest"
	"github.com/ip2a/ip2a-ops/internal/pgtest"
	"github.com/ip2a/ip2a-ops/internal/tasktest"
	"github.com/ip2a/ip2a-ops/pkg/apptask"
	"github.com/ip2a/ip2a-ops/pkg/tasks"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

var secret = []byte("test-secret-0123456789abcdef")

// app is the app's task endpoint as docs/tasks.md describes it: it verifies
// every delivery with the reference verifier (401 when that fails) and
// does each task id's work once, answering later deliveries of the same id
// as done.
type app struct {
	// respond answers a verified delivery (default 200 {"ok": true}); it is
	// called once per request, duplicates included.
	respond func(w http.ResponseWriter, r *http.Request, d apptask.Delivery, n int)

	mu       sync.Mutex
	requests int
	refused  []string
	seen     map[string]int // idempotency key -> deliveries
	bodies   map[string]string
}

func (a *app) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	task := strings.TrimPrefix(r.URL.Path, "/tasks/")
	d, err := apptask.Verifier{Secrets: [][]byte{secret}}.Verify(r.Header, task, body)
	a.mu.Lock()
	a.requests++
	if err != nil {
		a.refused = append(a.refused, err.Error())
		a.mu.Unlock()
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	if a.seen == nil {
		a.seen, a.bodies = map[string]int{}, map[string]string{}
	}
	a.seen[d.TaskID]++
	a.bodies[d.TaskID] = task + " " + string(body)
	n := a.requests
	a.mu.Unlock()
	if a.respond != nil {
		a.respond(w, r, d, n)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"ok": true}`)
}

func (a *app) counts() (requests int, seen map[string]int, refused []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	seen = map[string]int{}
	for k, v := range a.seen {
		seen[k] = v
	}
	return a.requests, seen, append([]string(nil), a.refused...)
}

// setup starts a worker running the http kind against baseURL with opts.
func setup(t *testing.T, baseURL string, opts apptask.Options) *tasks.River {
	t.Helper()
	opts.BaseURL, opts.Secret = baseURL, secret
	h, err := apptask.NewHandler(opts)
	require.NoError(t, err)
	return tasktest.Worker(t, tasktest.Database(t), tasks.Handlers{apptask.Kind: h}, tasks.RiverOptions{})
}

func enqueue(t *testing.T, s tasks.Service, task, payload string, maxAttempts int) tasks.ID {
	t.Helper()
	args := fmt.Sprintf(`{"v": 1, "task": %q, "payload": %s}`, task, payload)
	return tasktest.Enqueue(t, s, apptask.Kind, json.RawMessage(args), maxAttempts)
}

func output(t *testing.T, r tasks.Result) apptask.Output {
	return tasktest.Output[apptask.Output](t, r)
}

func TestDeliversSignedPayload(t *testing.T) {
	t.Parallel()
	a := &app{}
	srv := httptest.NewServer(a)
	defer srv.Close()
	s := setup(t, srv.URL+"/tasks", apptask.Options{})
	id := enqueue(t, s, "send_welcome_email", `{"member_id": 42, "name": "Zoë"}`, 5)
	r := tasktest.WaitFinal(t, s, id, time.Minute)
	require.Equal(t, tasks.StateCompleted, r.State, "errors: %v", r.Errors)
	require.Equal(t, apptask.Output{Task: "send_welcome_email", Status: 200, Body: `{"ok": true}`, DurationMS: output(t, r).DurationMS}, output(t, r))
	_, seen, refused := a.counts()
	require.Empty(t, refused)
	require.Equal(t, map[string]int{id.String(): 1}, seen)
	a.mu.Lock()
	defer a.mu.Unlock()
	task, body, _ := strings.Cut(a.bodies[id.String()], " ")
	require.Equal(t, "send_welcome_email", task)
	require.JSONEq(t, `{"member_id": 42, "name": "Zoë"}`, body)
}

// TestAppDownThenBack: nothing listens on the app's address for the first
// attempts (connection refused); once the app is up the task completes.
func TestAppDownThenBack(t *testing.T) {
	t.Parallel()
	addr := nettest.FreeAddr(t) // the app is down
	s := setup(t, "http://"+addr+"/tasks", apptask.Options{})
	id := enqueue(t, s, "process_stripe_event", `{"event": "evt_1"}`, 25)
	tasktest.WaitFor(t, s, id, time.Minute, "failed twice", func(r tasks.Result) bool { return len(r.Errors) >= 2 })

	ln, err := net.Listen("tcp", addr) // the app is back
	require.NoError(t, err)
	a := &app{}
	srv := &http.Server{Handler: a}
	go srv.Serve(ln) //nolint:errcheck // ends with Close
	defer srv.Close()

	r := tasktest.WaitFinal(t, s, id, time.Minute)
	require.Equal(t, tasks.StateCompleted, r.State, "errors: %v", r.Errors)
	require.GreaterOrEqual(t, r.Attempts, 3)
	require.Contains(t, r.Errors[0].Error, "connection refused")
	require.NotContains(t, r.Errors[0].Error, addr+"/tasks", "errors name no URL")
	_, seen, _ := a.counts()
	require.Equal(t, map[string]int{id.String(): 1}, seen)
}

// TestSlowAppTimesOutThenRetries: the first attempt gets no answer within
// the request timeout and is retried; the second is answered.
func TestSlowAppTimesOutThenRetries(t *testing.T) {
	t.Parallel()
	a := &app{respond: func(w http.ResponseWriter, r *http.Request, d apptask.Delivery, n int) {
		if d.Attempt == 1 {
			<-r.Context().Done() // hang until the worker gives up
			return
		}
		io.WriteString(w, "done")
	}}
	srv := httptest.NewServer(a)
	defer srv.Close()
	s := setup(t, srv.URL+"/tasks", apptask.Options{Timeout: 300 * time.Millisecond})
	id := enqueue(t, s, "generate_report", `{}`, 5)
	r := tasktest.WaitFinal(t, s, id, time.Minute)
	require.Equal(t, tasks.StateCompleted, r.State, "errors: %v", r.Errors)
	require.Equal(t, 2, r.Attempts)
	require.Len(t, r.Errors, 1)
	require.Contains(t, r.Errors[0].Error, "app task generate_report: no answer within 300ms")
	require.Equal(t, "done", output(t, r).Body)
	_, seen, _ := a.counts()
	require.Equal(t, 2, seen[id.String()], "the same idempotency key both times")
}

func TestServerErrorsAreRetried(t *testing.T) {
	t.Parallel()
	a := &app{respond: func(w http.ResponseWriter, r *http.Request, d apptask.Delivery, n int) {
		if d.Attempt < 3 {
			http.Error(w, "database is restarting", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok")
	}}
	srv := httptest.NewServer(a)
	defer srv.Close()
	s := setup(t, srv.URL+"/tasks/", apptask.Options{})
	id := enqueue(t, s, "import_members", `{"file": "x.csv"}`, 5)
	r := tasktest.WaitFinal(t, s, id, time.Minute)
	require.Equal(t, tasks.StateCompleted, r.State)
	require.Equal(t, 3, r.Attempts)
	require.Equal(t, "app task import_members: HTTP 503 Service Unavailable: database is restarting", r.Errors[0].Error)
	require.Equal(t, 200, output(t, r).Status)
}

// TestClientErrorIsNotRetried: a 4xx fails the task at once, the response
// kept in its output; the app sees one request.
func TestClientErrorIsNotRetried(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 3000)
	a := &app{respond: func(w http.ResponseWriter, r *http.Request, d apptask.Delivery, n int) {
		w.WriteHeader(http.StatusUnprocessableEntity)
		io.WriteString(w, `{"detail": "member 42 has no email"}`+long)
	}}
	srv := httptest.NewServer(a)
	defer srv.Close()
	s := setup(t, srv.URL+"/tasks", apptask.Options{})
	id := enqueue(t, s, "send_welcome_email", `{"member_id": 42}`, 5)
	r := tasktest.WaitFinal(t, s, id, time.Minute)
	require.Equal(t, tasks.StateFailed, r.State)
	require.Equal(t, 1, r.Attempts)
	require.True(t, strings.HasPrefix(r.LastError(), `permanent: app task send_welcome_email: HTTP 422 Unprocessable Entity (not retried): {"detail": "member 42 has no email"}xxx`), r.LastError())
	o := output(t, r)
	require.Equal(t, 422, o.Status)
	require.True(t, o.Truncated)
	require.Len(t, o.Body, apptask.DefaultMaxBody)
	require.True(t, strings.HasPrefix(o.Body, `{"detail": "member 42 has no email"}`))
	requests, _, _ := a.counts()
	require.Equal(t, 1, requests)
}

func TestBadArgsFailAtOnce(t *testing.T) {
	t.Parallel()
	a := &app{}
	srv := httptest.NewServer(a)
	defer srv.Close()
	s := setup(t, srv.URL, apptask.Options{})
	for _, tt := range []struct{ name, args, want string }{
		{"no version", `{"task": "x"}`, "version 0, this binary reads version 1"},
		{"unknown field", `{"v": 1, "task": "x", "url": "http://evil"}`, `unknown field "url"`},
		{"path in the name", `{"v": 1, "task": "../admin"}`, `http task name "../admin"`},
		{"no name", `{"v": 1}`, `http task name ""`},
	} {
		tasktest.FailsAtOnce(t, s, apptask.Kind, tt.args, tt.want)
	}
	requests, _, _ := a.counts()
	require.Zero(t, requests)
}

func TestOptionsRefuseUnsignedDelivery(t *testing.T) {
	for _, tt := range []struct {
		name string
		o    apptask.Options
		want string
	}{
		{"no secret", apptask.Options{BaseURL: "https://app.example/tasks"}, "signing secret is required"},
		{"short secret", apptask.Options{BaseURL: "https://app.example/tasks", Secret: []byte("short")}, "shorter than 16"},
		{"no url", apptask.Options{Secret: secret}, "task URL is required"},
		{"not http", apptask.Options{BaseURL: "ftp://app.example/", Secret: secret}, "not an http(s) URL"},
		{"query", apptask.Options{BaseURL: "https://app.example/t?token=x", Secret: secret}, "must not have a query"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := apptask.NewHandler(tt.o)
			require.ErrorContains(t, err, tt.want)
			require.NotContains(t, err.Error(), "token=x")
		})
	}
}

// TestFiveHundredTasksTwoWorkers: every task reaches the app exactly once
// (counted by idempotency key) with two workers sharing the queue.
func TestFiveHundredTasksTwoWorkers(t *testing.T) {
	t.Parallel()
	a := &app{}
	srv := httptest.NewServer(a)
	defer srv.Close()
	url := tasktest.Database(t)
	var ran [2]atomic.Int64
	for i := range ran {
		h, err := apptask.NewHandler(apptask.Options{BaseURL: srv.URL + "/tasks", Secret: secret})
		require.NoError(t, err)
		counted := func(ctx context.Context, task tasks.Task) (json.RawMessage, error) {
			ran[i].Add(1)
			return h(ctx, task)
		}
		tasktest.Worker(t, url, tasks.Handlers{apptask.Kind: counted}, tasks.RiverOptions{Queues: map[string]int{"default": 8}})
	}
	client, pool := tasktest.Client(t, url)
	const n = 500
	want := map[string]int{}
	for i := range n {
		id := enqueue(t, client, "send_welcome_email", fmt.Sprintf(`{"member_id": %d}`, i), 5)
		want[id.String()] = 1
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		var done, other int
		require.NoError(t, pool.QueryRow(t.Context(), `SELECT count(*) FILTER (WHERE state = 'completed'), count(*) FILTER (WHERE state <> 'completed') FROM ip2a_ops.river_job`).Scan(&done, &other))
		if done == n {
			break
		}
		require.True(t, time.Now().Before(deadline), "%d of %d tasks completed, %d not", done, n, other)
		time.Sleep(50 * time.Millisecond)
	}
	requests, seen, refused := a.counts()
	require.Empty(t, refused)
	require.Equal(t, n, requests)
	require.Equal(t, want, seen, "each task delivered exactly once")
	require.Positive(t, ran[0].Load(), "worker 1 ran tasks")
	require.Positive(t, ran[1].Load(), "worker 2 ran tasks")
	require.Equal(t, int64(n), ran[0].Load()+ran[1].Load())
}
