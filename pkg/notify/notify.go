// Package notify tells people and monitors about runs: a healthchecks.io
// style ping URL (start, success, failure with the exit code and run id), a
// JSON webhook and an email on failure. Sending never fails a job: what
// cannot be delivered is kept in the ip2a_ops.notifications table and
// retried, with backoff and a bounded number of attempts, by the next run of
// any job. Targets are looked up from the configuration at send time, so no
// URL token or password is ever stored in the database or printed.
package notify

import (
	"crypto/sha1"
	"crypto/x509"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Event is one run's start or end, as the runner sees it.
type Event struct {
	// Phase is PhaseStart or PhaseFinish.
	Phase      string     `json:"phase"`
	Job        string     `json:"job"`
	RunID      int64      `json:"run_id"`
	State      string     `json:"state"`
	ExitCode   int        `json:"exit_code"`
	Error      string     `json:"error,omitempty"`
	Host       string     `json:"host"`
	Trigger    string     `json:"trigger,omitempty"`
	StartedAt  time.Time  `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	Seconds    float64    `json:"duration_seconds"`
}

// Phases of an Event.
const (
	PhaseStart  = "start"
	PhaseFinish = "finish"
)

// Failed reports whether the event is the end of a run that did not exit 0.
// Exit 3 (ran and found problems) counts: someone has to look at it. A
// skipped run (exit 4) never gets here, the runner does not notify it.
func (e Event) Failed() bool { return e.Phase == PhaseFinish && e.ExitCode != 0 }

// Channels.
const (
	ChannelPing    = "ping"
	ChannelWebhook = "webhook"
	ChannelEmail   = "email"
)

// SMTP configures email on failure (and the email task kind). Addr is
// host:port. Username/Password enable AUTH PLAIN, which net/smtp only sends
// over TLS or to a loopback server.
type SMTP struct {
	Addr     string
	From     string
	To       []string
	Username string
	Password string
	// TLS is TLSAuto (or ""): implicit TLS on port 465, otherwise STARTTLS
	// whenever the server offers it; TLSImplicit: TLS from the first byte
	// on any port; TLSStartTLS: STARTTLS, refusing a server without it.
	TLS string
	// RootCAs verifies the server's certificate (nil: the system's roots).
	RootCAs *x509.CertPool
}

// The SMTP.TLS modes (IP2A_OPS_SMTP_TLS).
const (
	TLSAuto     = "auto"
	TLSImplicit = "implicit"
	TLSStartTLS = "starttls"
)

// Configured reports whether email can be sent.
func (s SMTP) Configured() bool { return s.Addr != "" && s.From != "" && len(s.To) > 0 }

// Config says where one job's notifications go. Empty fields are off.
type Config struct {
	// PingURL is a healthchecks.io-style check URL: PingURL+"/start" at
	// start, PingURL on success, PingURL+"/<exit code>" on failure, each
	// with ?rid=<run UUID> and the run described in the POST body.
	PingURL string
	// WebhookURL receives a JSON POST (see WebhookPayload) on failure.
	WebhookURL string
	SMTP       SMTP
	// Timeout bounds each delivery attempt (default 10s).
	Timeout time.Duration
}

// Any reports whether any channel is configured.
func (c Config) Any() bool { return c.PingURL != "" || c.WebhookURL != "" || c.SMTP.Configured() }

// Validate names the first bad field.
func (c Config) Validate() error {
	for _, u := range []struct{ name, v string }{{"PingURL", c.PingURL}, {"WebhookURL", c.WebhookURL}} {
		if u.v == "" {
			continue
		}
		p, err := url.Parse(u.v)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return fmt.Errorf("%s: %q is not an http(s) URL", u.name, RedactURL(u.v))
		}
	}
	s := c.SMTP
	if s.Addr != "" || s.From != "" || len(s.To) > 0 {
		switch {
		case s.Addr == "" || !strings.Contains(s.Addr, ":"):
			return fmt.Errorf("SMTP.Addr: %q must be host:port", s.Addr)
		case s.From == "":
			return fmt.Errorf("SMTP.From: required when email is configured")
		case len(s.To) == 0:
			return fmt.Errorf("SMTP.To: required when email is configured")
		}
		if s.TLS != "" && s.TLS != TLSAuto && s.TLS != TLSImplicit && s.TLS != TLSStartTLS {
			return fmt.Errorf("SMTP.TLS: %q is not auto, implicit or starttls", s.TLS)
		}
		for _, a := range append([]string{s.From}, s.To...) {
			if strings.ContainsAny(a, "\r\n<>") || !strings.Contains(a, "@") {
				return fmt.Errorf("SMTP: %q is not a plain email address", a)
			}
		}
	}
	if c.Timeout < 0 {
		return fmt.Errorf("Timeout: %s is negative", c.Timeout)
	}
	return nil
}

// envJob turns a job name into an environment suffix: "audit-archive" ->
// "AUDIT_ARCHIVE".
func envJob(job string) string {
	return strings.ToUpper(envJobReplacer.Replace(job))
}

// envJobReplacer is built once: a worker asks for it twice per run.
var envJobReplacer = strings.NewReplacer("-", "_", ".", "_", " ", "_")

// ConfigFromEnv reads job's configuration: each setting from its per-job
// variable (suffix _<JOB>, e.g. IP2A_OPS_PING_URL_AUDIT_ARCHIVE), else the
// shared one. In the shared IP2A_OPS_PING_URL, "{job}" is replaced by the
// job name (healthchecks.io slug URLs: https://hc-ping.com/KEY/{job}).
//
//	IP2A_OPS_PING_URL[_JOB]      IP2A_OPS_WEBHOOK_URL[_JOB]
//	IP2A_OPS_SMTP_ADDR           IP2A_OPS_SMTP_FROM      IP2A_OPS_SMTP_TO[_JOB] (comma-separated)
//	IP2A_OPS_SMTP_USERNAME       IP2A_OPS_SMTP_PASSWORD  IP2A_OPS_NOTIFY_TIMEOUT (Go duration)
//	IP2A_OPS_SMTP_TLS (auto, implicit, starttls)
func ConfigFromEnv(getenv func(string) string, job string) Config {
	pick := func(name string) string {
		if v := strings.TrimSpace(getenv(name + "_" + envJob(job))); v != "" {
			return v
		}
		return strings.TrimSpace(getenv(name))
	}
	c := Config{
		PingURL:    strings.ReplaceAll(pick("IP2A_OPS_PING_URL"), "{job}", url.PathEscape(job)),
		WebhookURL: pick("IP2A_OPS_WEBHOOK_URL"),
		SMTP: SMTP{
			Addr:     pick("IP2A_OPS_SMTP_ADDR"),
			From:     pick("IP2A_OPS_SMTP_FROM"),
			To:       SplitList(pick("IP2A_OPS_SMTP_TO")),
			Username: pick("IP2A_OPS_SMTP_USERNAME"),
			Password: pick("IP2A_OPS_SMTP_PASSWORD"),
			TLS:      strings.ToLower(strings.TrimSpace(getenv("IP2A_OPS_SMTP_TLS"))),
		},
	}
	if d, err := time.ParseDuration(strings.TrimSpace(getenv("IP2A_OPS_NOTIFY_TIMEOUT"))); err == nil && d > 0 {
		c.Timeout = d
	}
	return c
}

// SplitList splits a comma- or space-separated list, dropping empties.
func SplitList(s string) []string {
	var out []string
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == ';' }) {
		out = append(out, f)
	}
	return out
}

// RedactURL describes a notification URL without its secrets. Ping and
// webhook URLs carry their token in the path (hc-ping.com/<uuid>,
// hooks.slack.com/services/T/B/XXX), so only scheme and host are kept:
// "https://hc-ping.com/...".
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(unparseable URL)"
	}
	s := u.Scheme + "://" + u.Host
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" {
		s += "/..."
	}
	return s
}

// Describe is the redacted target of channel in c, for output and the outbox.
func (c Config) Describe(channel string) string {
	switch channel {
	case ChannelPing:
		return RedactURL(c.PingURL)
	case ChannelWebhook:
		return RedactURL(c.WebhookURL)
	case ChannelEmail:
		return "smtp://" + c.SMTP.Addr + " to " + strings.Join(c.SMTP.To, ",")
	}
	return channel
}

// RunUUID is the run's id as healthchecks.io wants it in ?rid= (a UUID): a
// name-based (version 5 style) UUID of job and run id, so start and finish
// of one run carry the same rid.
func RunUUID(job string, runID int64) string {
	h := sha1.Sum([]byte(fmt.Sprintf("ip2a-ops/%s/%d", job, runID)))
	b := h[:16]
	b[6] = (b[6] & 0x0f) | 0x50
	b[8] = (b[8] & 0x3f) | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
