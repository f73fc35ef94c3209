package notify

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/internal/nettest"
	"github.com/ip2a/ip2a-ops/internal/pgtest"
	"github.com/ip2a/ip2a-ops/internal/smtptest"
	"github.com/ip2a/ip2a-ops/pkg/migrate"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func finished(job string, runID int64, state string, code int, errText string) Event {
	start := time.Date(2026, 11, 2, 2, 0, 0, 0, time.UTC)
	fin := start.Add(90 * time.Second)
	return Event{Phase: PhaseFinish, Job: job, RunID: runID, State: state, ExitCode: code, Error: errText, Host: "db-1",
		Trigger: "cron", StartedAt: start, FinishedAt: &fin, Seconds: 90}
}

func TestPingURLFor(t *testing.T) {
	t.Parallel()
	rid := RunUUID("backup", 7)
	tests := []struct {
		name string
		base string
		ev   Event
		want string
	}{
		{name: "start", base: "https://hc.example/abc", ev: Event{Phase: PhaseStart, Job: "backup", RunID: 7}, want: "https://hc.example/abc/start?rid=" + rid},
		{name: "success", base: "https://hc.example/abc", ev: finished("backup", 7, "succeeded", 0, ""), want: "https://hc.example/abc?rid=" + rid},
		{name: "failure carries the exit code", base: "https://hc.example/abc/", ev: finished("backup", 7, "failed", 1, "x"), want: "https://hc.example/abc/1?rid=" + rid},
		{name: "problems found", base: "https://hc.example/abc", ev: finished("backup", 7, "succeeded", 3, ""), want: "https://hc.example/abc/3?rid=" + rid},
		{name: "keeps a query", base: "https://hc.example/ping/key/backup?create=1", ev: finished("backup", 7, "succeeded", 0, ""), want: "https://hc.example/ping/key/backup?create=1&rid=" + rid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := PingURLFor(tt.base, tt.ev)
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
	require.Regexp(t, `^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`, rid)
	require.NotEqual(t, rid, RunUUID("backup", 8))
	require.NotEqual(t, rid, RunUUID("cleanup", 7))
}

func TestConfigFromEnv(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"IP2A_OPS_PING_URL":               "https://hc-ping.com/KEY/{job}",
		"IP2A_OPS_PING_URL_BACKUP":        "https://hc-ping.com/0f4d-uuid",
		"IP2A_OPS_WEBHOOK_URL":            "https://hooks.example/T/B/secret",
		"IP2A_OPS_WEBHOOK_URL_CLEANUP":    "https://other.example/hook",
		"IP2A_OPS_SMTP_ADDR":              "smtp.example:587",
		"IP2A_OPS_SMTP_FROM":              "ops@example.org",
		"IP2A_OPS_SMTP_TO":                "a@example.org, b@example.org",
		"IP2A_OPS_SMTP_TO_AUDIT_ARCHIVE":  "legal@example.org",
		"IP2A_OPS_SMTP_PASSWORD":          "hunter2",
		"IP2A_OPS_SMTP_USERNAME":          "ops",
		"IP2A_OPS_NOTIFY_TIMEOUT":         "3s",
		"IP2A_OPS_PING_URL_INTEGRITY_CHK": "unused",
	}
	getenv := func(k string) string { return env[k] }
	tests := []struct {
		name               string
		job                string
		ping, webhook      string
		to                 []string
		timeout            time.Duration
		describePingSecret string
	}{
		{name: "per-job ping wins", job: "backup", ping: "https://hc-ping.com/0f4d-uuid", webhook: "https://hooks.example/T/B/secret", to: []string{"a@example.org", "b@example.org"}},
		{name: "shared ping with the job slug", job: "integrity-check", ping: "https://hc-ping.com/KEY/integrity-check", webhook: "https://hooks.example/T/B/secret", to: []string{"a@example.org", "b@example.org"}},
		{name: "per-job webhook", job: "cleanup", ping: "https://hc-ping.com/KEY/cleanup", webhook: "https://other.example/hook", to: []string{"a@example.org", "b@example.org"}},
		{name: "dashes become underscores", job: "audit-archive", ping: "https://hc-ping.com/KEY/audit-archive", webhook: "https://hooks.example/T/B/secret", to: []string{"legal@example.org"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := ConfigFromEnv(getenv, tt.job)
			require.Equal(t, tt.ping, c.PingURL)
			require.Equal(t, tt.webhook, c.WebhookURL)
			require.Equal(t, tt.to, c.SMTP.To)
			require.Equal(t, "hunter2", c.SMTP.Password)
			require.Equal(t, 3*time.Second, c.Timeout)
			require.NoError(t, c.Validate())
			for _, ch := range []string{ChannelPing, ChannelWebhook, ChannelEmail} {
				d := c.Describe(ch)
				require.NotContains(t, d, "KEY")
				require.NotContains(t, d, "secret")
				require.NotContains(t, d, "uuid")
				require.NotContains(t, d, "hunter2")
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{name: "ok empty", cfg: Config{}},
		{name: "ping not http", cfg: Config{PingURL: "ftp://x/y"}, want: "PingURL"},
		{name: "webhook relative", cfg: Config{WebhookURL: "/hook"}, want: "WebhookURL"},
		{name: "smtp without port", cfg: Config{SMTP: SMTP{Addr: "mail", From: "a@b", To: []string{"c@d"}}}, want: "SMTP.Addr"},
		{name: "smtp without to", cfg: Config{SMTP: SMTP{Addr: "mail:25", From: "a@b"}}, want: "SMTP.To"},
		{name: "header injection", cfg: Config{SMTP: SMTP{Addr: "mail:25", From: "a@b", To: []string{"c@d\r\nBcc: x@y"}}}, want: "not a plain email"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.cfg.Validate()
			if tt.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.want)
		})
	}
}

// recorder is an HTTP endpoint that records requests and can be told to fail.
type recorder struct {
	mu     sync.Mutex
	reqs   []recorded
	status atomic.Int32
}

type recorded struct {
	Method, Path, Query, Body, ContentType string
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	b, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	r.reqs = append(r.reqs, recorded{req.Method, req.URL.Path, req.URL.RawQuery, string(b), req.Header.Get("Content-Type")})
	r.mu.Unlock()
	if s := r.status.Load(); s != 0 {
		w.WriteHeader(int(s))
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (r *recorder) Requests() []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]recorded(nil), r.reqs...)
}

func TestDeliverWebhookAndPing(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)
	cfg := Config{PingURL: srv.URL + "/ping/abc-token", WebhookURL: srv.URL + "/hooks/secret-token"}
	ev := finished("backup", 42, "failed", 1, "dump database: pg_dump: error: connection refused")
	require.NoError(t, Deliver(t.Context(), cfg, ChannelPing, Event{Phase: PhaseStart, Job: "backup", RunID: 42, Host: "db-1"}))
	require.NoError(t, Deliver(t.Context(), cfg, ChannelPing, ev))
	require.NoError(t, Deliver(t.Context(), cfg, ChannelWebhook, ev))

	reqs := rec.Requests()
	require.Len(t, reqs, 3)
	rid := "rid=" + RunUUID("backup", 42)
	require.Equal(t, recorded{Method: "POST", Path: "/ping/abc-token/start", Query: rid, ContentType: "text/plain; charset=utf-8", Body: reqs[0].Body}, reqs[0])
	require.Equal(t, "/ping/abc-token/1", reqs[1].Path)
	require.Equal(t, rid, reqs[1].Query)
	require.Contains(t, reqs[1].Body, "run_id=42 job=backup state=failed exit_code=1 host=db-1")

	require.Equal(t, "/hooks/secret-token", reqs[2].Path)
	require.Equal(t, "application/json", reqs[2].ContentType)
	var p map[string]any
	require.NoError(t, json.Unmarshal([]byte(reqs[2].Body), &p))
	require.Equal(t, "run.failed", p["event"])
	require.Equal(t, "backup", p["job"])
	require.EqualValues(t, 42, p["run_id"])
	require.Equal(t, "failed", p["state"])
	require.EqualValues(t, 1, p["exit_code"])
	require.Equal(t, "dump database: pg_dump: error: connection refused", p["error"])
	require.Equal(t, "db-1", p["host"])
	require.Equal(t, "2026-11-02T02:00:00Z", p["started_at"])
	require.Equal(t, "2026-11-02T02:01:30Z", p["finished_at"])
	require.Contains(t, p["text"], "ip2a-ops backup failed, exit 1 (run 42 on db-1")

	// An endpoint answering 500 is a failure whose error names no token.
	rec.status.Store(500)
	err := Deliver(t.Context(), cfg, ChannelWebhook, ev)
	require.ErrorContains(t, err, "HTTP 500")
	require.NotContains(t, err.Error(), "secret-token")
	srv.Close()
	err = Deliver(t.Context(), cfg, ChannelPing, ev)
	require.Error(t, err)
	require.NotContains(t, err.Error(), "abc-token")
}

func TestDeliverEmail(t *testing.T) {
	t.Parallel()
	smtpSrv := smtptest.New(t, smtptest.Options{User: "ops", Password: "s3cret"})
	cfg := Config{SMTP: SMTP{Addr: smtpSrv.Addr(), From: "ops@ibew46.example", To: []string{"admin@ibew46.example", "oncall@ibew46.example"}, Username: "ops", Password: "s3cret"}}
	ev := finished("audit-archive", 9, "failed", 1, "line one\n.dot line\nline three")
	require.NoError(t, Deliver(t.Context(), cfg, ChannelEmail, ev))
	mails := smtpSrv.Mails()
	require.Len(t, mails, 1)
	m := mails[0]
	require.Equal(t, "ops", m.User)
	require.Equal(t, "ops@ibew46.example", m.From)
	require.Equal(t, []string{"admin@ibew46.example", "oncall@ibew46.example"}, m.To)
	require.Contains(t, m.Data, "Subject: [ip2a-ops] audit-archive failed (exit 1) on db-1\r\n")
	require.Contains(t, m.Data, "To: admin@ibew46.example, oncall@ibew46.example\r\n")
	require.Contains(t, m.Data, "run:       9\r\n")
	require.Contains(t, m.Data, "           .dot line\r\n")
	require.NotContains(t, m.Data, "s3cret")

	// A wrong password is refused, and the error does not repeat it.
	bad := cfg
	bad.SMTP.Password = "wrong-pass"
	err := Deliver(t.Context(), bad, ChannelEmail, ev)
	require.ErrorContains(t, err, "auth as ops")
	require.NotContains(t, err.Error(), "wrong-pass")
	require.Len(t, smtpSrv.Mails(), 1)
}

func newOutbox(t *testing.T) *pgxpool.Pool {
	t.Helper()
	url := pgtest.NewDatabase(t)
	pool, err := pgxpool.New(t.Context(), url)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	_, err = migrate.Up(t.Context(), pool, migrate.DefaultSchema)
	require.NoError(t, err)
	return pool
}

// serveOn starts an HTTP server on addr (an endpoint coming back).
func serveOn(t *testing.T, addr string, h http.Handler) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	require.NoError(t, err)
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
}

func outboxRows(t *testing.T, pool *pgxpool.Pool) map[string]int {
	t.Helper()
	rows, err := pool.Query(t.Context(), `SELECT channel || ':' || state, count(*) FROM ip2a_ops.notifications GROUP BY 1`)
	require.NoError(t, err)
	out := map[string]int{}
	for rows.Next() {
		var k string
		var n int
		require.NoError(t, rows.Scan(&k, &n))
		out[k] = n
	}
	require.NoError(t, rows.Err())
	return out
}

func TestNotifyQueuesWhileDownAndRetriesWhenBack(t *testing.T) {
	t.Parallel()
	pool := newOutbox(t)
	httpAddr := nettest.FreeAddr(t)
	smtpSrv := smtptest.New(t, smtptest.Options{})
	smtpSrv.Stop() // the mail relay is down too

	cfg := Config{
		PingURL:    "http://" + httpAddr + "/ping/tok-123",
		WebhookURL: "http://" + httpAddr + "/hook/tok-456",
		SMTP:       SMTP{Addr: smtpSrv.Addr(), From: "ops@x.example", To: []string{"admin@x.example"}, Password: "pw-789"},
		Timeout:    2 * time.Second,
	}
	n := &Notifier{Pool: pool, ConfigFunc: func(string) Config { return cfg }, Backoff: time.Millisecond}

	// Start: the ping fails, and is not queued (it would be stale later).
	res := n.Notify(t.Context(), Event{Phase: PhaseStart, Job: "backup", RunID: 1, Host: "h"})
	require.Len(t, res.Sent, 1)
	require.False(t, res.Sent[0].Delivered)
	require.False(t, res.Sent[0].Queued)

	// Finish, failed: ping, webhook and email all fail and are queued.
	res = n.Notify(t.Context(), finished("backup", 1, "failed", 1, "boom"))
	require.Len(t, res.Sent, 3)
	for _, d := range res.Sent {
		require.False(t, d.Delivered, d.Channel)
		require.True(t, d.Queued, d.Channel)
		require.NotEmpty(t, d.Error)
	}
	require.Equal(t, map[string]int{"ping:pending": 1, "webhook:pending": 1, "email:pending": 1}, outboxRows(t, pool))
	// The outbox holds no secret: targets are redacted, URLs re-read at retry.
	var dump string
	require.NoError(t, pool.QueryRow(t.Context(), `SELECT string_agg(n::text, ' ') FROM ip2a_ops.notifications n`).Scan(&dump))
	for _, s := range []string{"tok-123", "tok-456", "pw-789"} {
		require.NotContains(t, dump, s)
	}

	// Everything comes back; the next run (of any job) delivers the backlog.
	rec := &recorder{}
	serveOn(t, httpAddr, rec)
	smtpSrv.Start()
	res = n.Notify(t.Context(), finished("cleanup", 2, "succeeded", 0, ""))
	require.Len(t, res.Sent, 1) // cleanup's success ping
	require.True(t, res.Sent[0].Delivered)
	require.Len(t, res.Retried, 3)
	for _, d := range res.Retried {
		require.True(t, d.Delivered, d.Channel)
	}
	require.Equal(t, map[string]int{"ping:delivered": 1, "webhook:delivered": 1, "email:delivered": 1}, outboxRows(t, pool))
	paths := []string{}
	for _, r := range rec.Requests() {
		paths = append(paths, r.Path)
	}
	require.ElementsMatch(t, []string{"/ping/tok-123", "/ping/tok-123/1", "/hook/tok-456"}, paths)
	require.Len(t, smtpSrv.Mails(), 1)
	require.Contains(t, smtpSrv.Mails()[0].Data, "Subject: [ip2a-ops] backup failed (exit 1)")

	// Nothing is sent twice.
	retried, err := n.Retry(t.Context())
	require.NoError(t, err)
	require.Empty(t, retried)
}

func TestRetryBacksOffAndGivesUp(t *testing.T) {
	t.Parallel()
	pool := newOutbox(t)
	rec := &recorder{}
	rec.status.Store(http.StatusServiceUnavailable)
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)
	cfg := Config{WebhookURL: srv.URL + "/hook"}
	n := &Notifier{Pool: pool, ConfigFunc: func(string) Config { return cfg }, MaxAttempts: 3, Backoff: time.Hour}

	res := n.Notify(t.Context(), finished("backup", 5, "failed", 1, "x"))
	require.True(t, res.Sent[0].Queued)
	// Not due yet: an hour of backoff.
	retried, err := n.Retry(t.Context())
	require.NoError(t, err)
	require.Empty(t, retried)
	var wait float64
	require.NoError(t, pool.QueryRow(t.Context(), `SELECT extract(epoch FROM next_attempt_at - now()) FROM ip2a_ops.notifications`).Scan(&wait))
	require.InDelta(t, 3600, wait, 60)

	due := func() {
		_, err := pool.Exec(t.Context(), `UPDATE ip2a_ops.notifications SET next_attempt_at = now() - interval '1 second'`)
		require.NoError(t, err)
	}
	due()
	retried, err = n.Retry(t.Context())
	require.NoError(t, err)
	require.Len(t, retried, 1)
	require.True(t, retried[0].Queued)
	var attempts int
	require.NoError(t, pool.QueryRow(t.Context(), `SELECT attempts, extract(epoch FROM next_attempt_at - now()) FROM ip2a_ops.notifications`).Scan(&attempts, &wait))
	require.Equal(t, 2, attempts)
	require.InDelta(t, 7200, wait, 60, "backoff doubles")

	due()
	retried, err = n.Retry(t.Context())
	require.NoError(t, err)
	require.Len(t, retried, 1)
	require.True(t, retried[0].GaveUp)
	require.Equal(t, map[string]int{"webhook:gave_up": 1}, outboxRows(t, pool))
	require.Len(t, rec.Requests(), 3)

	list, err := List(t.Context(), ListOptions{Pool: pool})
	require.NoError(t, err)
	require.Len(t, list, 1)
	require.Equal(t, "gave_up", list[0].State)
	require.Equal(t, 3, list[0].Attempts)
	require.Contains(t, list[0].LastError, "HTTP 503")
}

func TestRetryLeavesWhatThisProcessCannotSend(t *testing.T) {
	t.Parallel()
	pool := newOutbox(t)
	addr := nettest.FreeAddr(t)
	backup := Config{WebhookURL: "http://" + addr + "/hook"}
	n := &Notifier{Pool: pool, ConfigFunc: func(job string) Config {
		if job == "backup" {
			return backup
		}
		return Config{}
	}, Backoff: time.Millisecond}
	require.True(t, n.Notify(t.Context(), finished("backup", 1, "failed", 1, "x")).Sent[0].Queued)

	// A process without backup's webhook (another Railway service) leaves it.
	other := &Notifier{Pool: pool, ConfigFunc: func(string) Config { return Config{} }}
	require.Eventually(t, func() bool {
		var due bool
		require.NoError(t, pool.QueryRow(t.Context(), `SELECT next_attempt_at <= now() FROM ip2a_ops.notifications`).Scan(&due))
		return due
	}, 5*time.Second, 5*time.Millisecond)
	retried, err := other.Retry(t.Context())
	require.NoError(t, err)
	require.Empty(t, retried)
	var attempts int
	var state string
	var due bool
	require.NoError(t, pool.QueryRow(t.Context(), `SELECT attempts, state, next_attempt_at <= now() FROM ip2a_ops.notifications`).Scan(&attempts, &state, &due))
	require.Equal(t, 1, attempts)
	require.Equal(t, "pending", state)
	require.True(t, due, "handed back at once")

	// Too old: given up.
	_, err = pool.Exec(t.Context(), `UPDATE ip2a_ops.notifications SET created_at = now() - interval '8 days'`)
	require.NoError(t, err)
	_, err = other.Retry(t.Context())
	require.NoError(t, err)
	require.Equal(t, map[string]int{"webhook:gave_up": 1}, outboxRows(t, pool))
}

func TestNewerPingSupersedesQueuedOne(t *testing.T) {
	t.Parallel()
	pool := newOutbox(t)
	addr := nettest.FreeAddr(t)
	cfg := Config{PingURL: "http://" + addr + "/p"}
	n := &Notifier{Pool: pool, ConfigFunc: func(string) Config { return cfg }, Backoff: time.Hour}
	require.True(t, n.Notify(t.Context(), finished("backup", 1, "failed", 1, "x")).Sent[0].Queued)

	rec := &recorder{}
	serveOn(t, addr, rec)
	res := n.Notify(t.Context(), finished("backup", 2, "succeeded", 0, ""))
	require.True(t, res.Sent[0].Delivered)
	require.Empty(t, res.Retried)
	// Run 1's failure ping would now mark a healthy check down: dropped.
	require.Equal(t, map[string]int{"ping:superseded": 1}, outboxRows(t, pool))
	require.Len(t, rec.Requests(), 1)
}

func TestConcurrentRetriesSendEachOnce(t *testing.T) {
	t.Parallel()
	pool := newOutbox(t)
	addr := nettest.FreeAddr(t)
	cfg := Config{WebhookURL: "http://" + addr + "/hook"}
	// An hour's backoff: with a short one each Notify below also retries the
	// rows queued before it (the endpoint is still down), and on a slow
	// machine the first ones reach MaxAttempts and are given up.
	n := &Notifier{Pool: pool, ConfigFunc: func(string) Config { return cfg }, Backoff: time.Hour}
	for i := range 10 {
		require.True(t, n.Notify(t.Context(), finished("integrity-check", int64(i+1), "failed", 1, "x")).Sent[0].Queued)
	}
	var hits atomic.Int32
	serveOn(t, addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		time.Sleep(5 * time.Millisecond) // widen the window for a double send
	}))
	_, err := pool.Exec(t.Context(), `UPDATE ip2a_ops.notifications SET next_attempt_at = now() - interval '1 second'`)
	require.NoError(t, err)
	var wg sync.WaitGroup
	var delivered atomic.Int32
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := n.Retry(context.WithoutCancel(t.Context()))
			require.NoError(t, err)
			for _, d := range out {
				if d.Delivered {
					delivered.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	require.EqualValues(t, 10, hits.Load())
	require.EqualValues(t, 10, delivered.Load())
	require.Equal(t, map[string]int{"webhook:delivered": 10}, outboxRows(t, pool))
}

// TestPaceSpacesBacklogPasses: Notifiers sharing a Pace (a worker's runs)
// take the backlog at most once per Every; one without takes it each time.
func TestPaceSpacesBacklogPasses(t *testing.T) {
	t.Parallel()
	pool := newOutbox(t)
	down := Config{WebhookURL: "http://" + nettest.FreeAddr(t) + "/hook", Timeout: time.Second}
	config := func(job string) Config {
		if job == "backup" {
			return down
		}
		return Config{}
	}
	pace := &Pace{Every: time.Hour}
	notifier := func(pace *Pace) *Notifier {
		// A nanosecond of backoff: a failed notification is due again at once.
		return &Notifier{Pool: pool, ConfigFunc: config, Backoff: time.Nanosecond, MaxBackoff: time.Nanosecond, Pace: pace}
	}
	res := notifier(nil).Notify(t.Context(), finished("backup", 1, "failed", 1, "boom"))
	require.True(t, res.Sent[0].Queued)

	retried := func(n *Notifier, runID int64) int {
		return len(n.Notify(t.Context(), finished("cleanup", runID, "succeeded", 0, "")).Retried)
	}
	require.Equal(t, 1, retried(notifier(pace), 2), "the pace's first pass runs")
	require.Equal(t, 0, retried(notifier(pace), 3), "a second Notifier sharing the pace waits")
	require.Equal(t, 1, retried(notifier(nil), 4), "without a pace every finish takes the backlog")
}
