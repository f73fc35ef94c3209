package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Notifier sends a run's notifications and keeps what it could not deliver
// in the outbox table for later runs. Zero durations and counts mean the
// defaults in brackets. A Notifier is safe for concurrent use.
type Notifier struct {
	// Pool and Schema locate the outbox (schema.notifications, migration
	// 006). A nil Pool disables the outbox: failures are only logged.
	Pool   *pgxpool.Pool
	Schema string
	// ConfigFunc returns the configuration of job; it is asked again at
	// retry time, so the outbox never holds a target's secret.
	ConfigFunc func(job string) Config
	Logger     *slog.Logger
	// MaxAttempts per notification, the first included [8]; then gave_up.
	MaxAttempts int
	// Backoff before the second attempt [1m], doubling after each failed
	// attempt up to MaxBackoff [6h].
	Backoff    time.Duration
	MaxBackoff time.Duration
	// MaxAge: a pending notification older than this is given up [7 days],
	// e.g. when no process that retries it has its target configured.
	MaxAge time.Duration
	// RetryBudget bounds the time spent on the backlog per run [30s];
	// RetryBatch how many due notifications one run takes [20].
	RetryBudget time.Duration
	RetryBatch  int
	// Pace, when set, spaces the backlog passes of every Notifier sharing
	// it; nil means a pass after every finished run.
	Pace *Pace
}

// Pace allows at most one backlog pass per Every among the Notifiers
// that share it. A process that finishes many short runs (a worker) shares
// one, so its runs do not each query the outbox; the backlog's own backoff
// starts at a minute, so a pass a minute delays nothing. Safe for
// concurrent use.
type Pace struct {
	Every time.Duration

	mu   sync.Mutex
	last time.Time
}

// allow reports whether a pass may run now, and if so counts it.
func (p *Pace) allow(now time.Time) bool {
	if p == nil {
		return true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.last.IsZero() && now.Sub(p.last) < p.Every {
		return false
	}
	p.last = now
	return true
}

// Delivery is the outcome of one notification on one channel.
type Delivery struct {
	ID        int64  `json:"id,omitempty"` // outbox row, when it has one
	Job       string `json:"job"`
	RunID     int64  `json:"run_id"`
	Channel   string `json:"channel"`
	Target    string `json:"target"`
	Delivered bool   `json:"delivered"`
	// Queued: it failed and is kept in the outbox for a later run.
	Queued bool `json:"queued,omitempty"`
	// GaveUp: it failed for the last time (MaxAttempts or MaxAge).
	GaveUp bool   `json:"gave_up,omitempty"`
	Error  string `json:"error,omitempty"`
}

// Result says what one Notify call did: this event's deliveries, then the
// backlog retried after a finish.
type Result struct {
	Sent    []Delivery `json:"sent"`
	Retried []Delivery `json:"retried"`
}

func (n *Notifier) logger() *slog.Logger {
	if n.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return n.Logger
}

func (n *Notifier) table() string {
	s := n.Schema
	if s == "" {
		s = "ip2a_ops"
	}
	return pgx.Identifier{s, "notifications"}.Sanitize()
}

func (n *Notifier) backoff(attempts int) time.Duration {
	b, maxB := n.Backoff, n.MaxBackoff
	if b <= 0 {
		b = time.Minute
	}
	if maxB <= 0 {
		maxB = 6 * time.Hour
	}
	for i := 1; i < attempts && b < maxB; i++ {
		b *= 2
	}
	return min(b, maxB)
}

func (n *Notifier) maxAttempts() int {
	if n.MaxAttempts <= 0 {
		return 8
	}
	return n.MaxAttempts
}

func (n *Notifier) config(job string) Config {
	if n.ConfigFunc == nil {
		return Config{}
	}
	return n.ConfigFunc(job)
}

func configured(c Config, channel string) bool {
	switch channel {
	case ChannelPing:
		return c.PingURL != ""
	case ChannelWebhook:
		return c.WebhookURL != ""
	case ChannelEmail:
		return c.SMTP.Configured()
	}
	return false
}

// Notify sends e on every configured channel that wants it. It never
// returns an error: a failed finish notification is queued in the outbox (a
// failed start ping is only logged: delivered late it would tell the monitor
// a run began that has long ended). After a finish it retries the backlog.
// ctx bounds the whole call; each delivery has its own Config.Timeout.
func (n *Notifier) Notify(ctx context.Context, e Event) Result {
	res := Result{Sent: []Delivery{}, Retried: []Delivery{}}
	var queuedNow []int64
	// The run's logger is made only when there is something to say: a
	// worker's runs are many, and most have no channel configured.
	var runLog *slog.Logger
	log := func() *slog.Logger {
		if runLog == nil {
			runLog = n.logger().With("job", e.Job, "run_id", e.RunID)
		}
		return runLog
	}
	cfg := n.config(e.Job)
	for _, ch := range []string{ChannelPing, ChannelWebhook, ChannelEmail} {
		if !configured(cfg, ch) || !Wants(ch, e) {
			continue
		}
		d := Delivery{Job: e.Job, RunID: e.RunID, Channel: ch, Target: cfg.Describe(ch)}
		err := Deliver(ctx, cfg, ch, e)
		if err == nil {
			d.Delivered = true
			log().Debug("notification sent", "channel", ch, "target", d.Target, "phase", e.Phase)
			if ch == ChannelPing && e.Phase == PhaseFinish {
				n.supersede(ctx, e.Job, e.RunID)
			}
			res.Sent = append(res.Sent, d)
			continue
		}
		d.Error = err.Error()
		if e.Phase == PhaseFinish && n.Pool != nil {
			id, qerr := n.enqueue(ctx, e, ch, d.Target, d.Error)
			if qerr != nil {
				log().Error("notification failed and could not be queued", "channel", ch, "error", d.Error, "queue_error", qerr.Error())
			} else {
				d.ID, d.Queued = id, true
				queuedNow = append(queuedNow, id)
				log().Warn("notification failed; queued for the next run", "channel", ch, "notification_id", id, "error", d.Error)
			}
		} else {
			log().Warn("notification failed", "channel", ch, "phase", e.Phase, "error", d.Error)
		}
		res.Sent = append(res.Sent, d)
	}
	if e.Phase == PhaseFinish && n.Pool != nil && n.Pace.allow(time.Now()) {
		// What failed a moment ago waits for its backoff, even a short one.
		retried, err := n.retry(ctx, queuedNow)
		if err != nil {
			log().Warn("could not retry queued notifications", "error", err.Error())
		}
		res.Retried = append(res.Retried, retried...)
	}
	return res
}

func (n *Notifier) enqueue(ctx context.Context, e Event, channel, target, errText string) (int64, error) {
	ev, err := json.Marshal(e)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	var id int64
	err = n.Pool.QueryRow(ctx, `INSERT INTO `+n.table()+` (job, run_id, channel, target, event, attempts, next_attempt_at, last_error)
		VALUES ($1, $2, $3, $4, $5::jsonb, 1, now() + make_interval(secs => $6), $7) RETURNING id`,
		e.Job, e.RunID, channel, target, string(ev), n.backoff(1).Seconds(), errText).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("queue notification: %w", err)
	}
	return id, nil
}

// supersede drops pending pings of job older than runID once a newer one
// got through: replayed late, a stale failure would mark a healthy check down.
func (n *Notifier) supersede(ctx context.Context, job string, runID int64) {
	if n.Pool == nil {
		return
	}
	if _, err := n.Pool.Exec(ctx, `UPDATE `+n.table()+` SET state = 'superseded', finished_at = now()
		WHERE state = 'pending' AND channel = 'ping' AND job = $1 AND run_id < $2`, job, runID); err != nil {
		n.logger().Warn("could not mark older pings superseded", "job", job, "error", err.Error())
	}
}

type queued struct {
	id       int64
	job      string
	runID    int64
	channel  string
	event    Event
	attempts int
}

// Retry delivers the outbox's due notifications (oldest first, at most
// RetryBatch, within RetryBudget). Rows are claimed with a short lease in
// one statement, so concurrent runs do not send the same one twice. A row
// whose job has no target configured in this process is left for another.
func (n *Notifier) Retry(ctx context.Context) ([]Delivery, error) {
	return n.retry(ctx, nil)
}

func (n *Notifier) retry(ctx context.Context, exclude []int64) ([]Delivery, error) {
	if exclude == nil {
		exclude = []int64{}
	}
	out := []Delivery{}
	if n.Pool == nil {
		return out, nil
	}
	budget := n.RetryBudget
	if budget <= 0 {
		budget = 30 * time.Second
	}
	batch := n.RetryBatch
	if batch <= 0 {
		batch = 20
	}
	maxAge := n.MaxAge
	if maxAge <= 0 {
		maxAge = 7 * 24 * time.Hour
	}
	ctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	t := n.table()
	if _, err := n.Pool.Exec(ctx, `UPDATE `+t+` SET state = 'gave_up', finished_at = now(),
		last_error = coalesce(last_error, '') || ' (gave up: pending longer than `+maxAge.String()+`)'
		WHERE state = 'pending' AND created_at < now() - make_interval(secs => $1)`, maxAge.Seconds()); err != nil {
		return out, fmt.Errorf("retry notifications: %w", err)
	}
	lease := budget + time.Minute
	rows, err := n.Pool.Query(ctx, `UPDATE `+t+` SET next_attempt_at = now() + make_interval(secs => $2)
		WHERE id IN (SELECT id FROM `+t+` WHERE state = 'pending' AND next_attempt_at <= now() AND id <> ALL($3)
			ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
		RETURNING id, job, coalesce(run_id, 0), channel, event, attempts`, batch, lease.Seconds(), exclude)
	if err != nil {
		return out, fmt.Errorf("retry notifications: claim: %w", err)
	}
	var due []queued
	for rows.Next() {
		var q queued
		var ev []byte
		if err := rows.Scan(&q.id, &q.job, &q.runID, &q.channel, &ev, &q.attempts); err != nil {
			rows.Close()
			return out, fmt.Errorf("retry notifications: %w", err)
		}
		_ = json.Unmarshal(ev, &q.event)
		due = append(due, q)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return out, fmt.Errorf("retry notifications: claim: %w", err)
	}
	sort.Slice(due, func(i, j int) bool { return due[i].id < due[j].id })
	// Rows are finished with a context of their own so a budget that runs
	// out mid-delivery still records the attempt.
	bg := context.WithoutCancel(ctx)
	for _, q := range due {
		cfg := n.config(q.job)
		d := Delivery{ID: q.id, Job: q.job, RunID: q.runID, Channel: q.channel, Target: cfg.Describe(q.channel)}
		if !configured(cfg, q.channel) || ctx.Err() != nil {
			// Not ours to send (or out of time): hand it back at once.
			_, _ = n.Pool.Exec(bg, `UPDATE `+t+` SET next_attempt_at = now() WHERE id = $1 AND state = 'pending'`, q.id)
			continue
		}
		err := Deliver(ctx, cfg, q.channel, q.event)
		if err == nil {
			d.Delivered = true
			if _, uerr := n.Pool.Exec(bg, `UPDATE `+t+` SET state = 'delivered', finished_at = now(), attempts = attempts + 1 WHERE id = $1`, q.id); uerr != nil {
				return out, fmt.Errorf("retry notifications: %w", uerr)
			}
			if q.channel == ChannelPing {
				n.supersede(bg, q.job, q.runID)
			}
			out = append(out, d)
			continue
		}
		d.Error = err.Error()
		attempts := q.attempts + 1
		if attempts >= n.maxAttempts() {
			d.GaveUp = true
			_, err = n.Pool.Exec(bg, `UPDATE `+t+` SET state = 'gave_up', finished_at = now(), attempts = $2, last_error = $3 WHERE id = $1`, q.id, attempts, d.Error)
			n.logger().Error("notification given up", "notification_id", q.id, "job", q.job, "run_id", q.runID, "channel", q.channel, "attempts", attempts, "error", d.Error)
		} else {
			d.Queued = true
			_, err = n.Pool.Exec(bg, `UPDATE `+t+` SET attempts = $2, last_error = $3, next_attempt_at = now() + make_interval(secs => $4) WHERE id = $1`,
				q.id, attempts, d.Error, n.backoff(attempts).Seconds())
		}
		if err != nil {
			return out, fmt.Errorf("retry notifications: %w", err)
		}
		out = append(out, d)
	}
	return out, nil
}

// Notification is one outbox row.
type Notification struct {
	ID            int64      `json:"id"`
	Job           string     `json:"job"`
	RunID         int64      `json:"run_id"`
	Channel       string     `json:"channel"`
	Target        string     `json:"target"`
	State         string     `json:"state"`
	Attempts      int        `json:"attempts"`
	CreatedAt     time.Time  `json:"created_at"`
	NextAttemptAt time.Time  `json:"next_attempt_at"`
	FinishedAt    *time.Time `json:"finished_at"`
	LastError     string     `json:"last_error,omitempty"`
}

// ListOptions filter List. Zero values: every state, 50 rows.
type ListOptions struct {
	Pool   *pgxpool.Pool
	Schema string
	State  string
	Limit  int
}

// List returns outbox rows, newest first.
func List(ctx context.Context, o ListOptions) ([]Notification, error) {
	if o.Pool == nil {
		return nil, errors.New("list notifications: Pool: required")
	}
	if o.Limit <= 0 {
		o.Limit = 50
	}
	n := Notifier{Schema: o.Schema}
	rows, err := o.Pool.Query(ctx, `SELECT id, job, coalesce(run_id, 0), channel, target, state, attempts, created_at, next_attempt_at, finished_at, coalesce(last_error, '')
		FROM `+n.table()+` WHERE ($1 = '' OR state = $1) ORDER BY id DESC LIMIT $2`, o.State, o.Limit)
	if err != nil {
		return nil, fmt.Errorf("list notifications: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Notification, error) {
		var x Notification
		err := r.Scan(&x.ID, &x.Job, &x.RunID, &x.Channel, &x.Target, &x.State, &x.Attempts, &x.CreatedAt, &x.NextAttemptAt, &x.FinishedAt, &x.LastError)
		return x, err
	})
	if err != nil {
		return nil, fmt.Errorf("list notifications: %w", err)
	}
	return out, nil
}
