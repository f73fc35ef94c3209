package notify

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/smtp"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// WebhookPayload is the JSON body POSTed to the webhook on failure. Its
// fields are a documented contract and are only added to. Text is a one-line
// summary so Slack- and Mattermost-style incoming webhooks show something
// without a template.
type WebhookPayload struct {
	Event      string     `json:"event"` // "run.failed"
	Job        string     `json:"job"`
	RunID      int64      `json:"run_id"`
	State      string     `json:"state"`
	ExitCode   int        `json:"exit_code"`
	Error      string     `json:"error"`
	Host       string     `json:"host"`
	Trigger    string     `json:"trigger,omitempty"`
	StartedAt  time.Time  `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at"`
	Seconds    float64    `json:"duration_seconds"`
	Text       string     `json:"text"`
}

// Summary is the one-line description of e used in webhooks, mail subjects
// and ping bodies.
func (e Event) Summary() string {
	if e.Phase == PhaseStart {
		return fmt.Sprintf("ip2a-ops %s started (run %d on %s)", e.Job, e.RunID, e.Host)
	}
	s := fmt.Sprintf("ip2a-ops %s %s, exit %d (run %d on %s, %.1fs)", e.Job, e.State, e.ExitCode, e.RunID, e.Host, e.Seconds)
	if e.Error != "" {
		s += ": " + oneLine(e.Error, 300)
	}
	return s
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n-3] + "..."
	}
	return s
}

// Wants reports whether channel sends something for e: pings for every
// start and finish, webhook and email only for failures.
func Wants(channel string, e Event) bool {
	if channel == ChannelPing {
		return true
	}
	return e.Failed()
}

// Deliver sends e on one channel of cfg, once, within cfg.Timeout. The
// error never contains the URL's token or the SMTP password.
func Deliver(ctx context.Context, cfg Config, channel string, e Event) error {
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var err error
	switch channel {
	case ChannelPing:
		err = ping(ctx, cfg.PingURL, e)
	case ChannelWebhook:
		err = webhook(ctx, cfg.WebhookURL, e)
	case ChannelEmail:
		err = sendMail(ctx, cfg.SMTP, e)
	default:
		err = fmt.Errorf("unknown channel %q", channel)
	}
	if err != nil {
		return fmt.Errorf("%s to %s: %w", channel, cfg.Describe(channel), err)
	}
	return nil
}

// PingURLFor is where e's ping goes: base+"/start", base, or base+"/<exit>",
// with ?rid=<RunUUID>.
func PingURLFor(base string, e Event) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", errors.New("unparseable ping URL")
	}
	suffix := ""
	switch {
	case e.Phase == PhaseStart:
		suffix = "/start"
	case e.ExitCode != 0:
		suffix = "/" + strconv.Itoa(e.ExitCode)
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + suffix
	if u.RawPath != "" {
		u.RawPath = strings.TrimSuffix(u.RawPath, "/") + suffix
	}
	q := u.Query()
	q.Set("rid", RunUUID(e.Job, e.RunID))
	u.RawQuery = q.Encode()
	return u.String(), nil
}

func ping(ctx context.Context, base string, e Event) error {
	target, err := PingURLFor(base, e)
	if err != nil {
		return err
	}
	// healthchecks.io keeps the body (up to 100 kB) as the event's log.
	body := fmt.Sprintf("%s\nrun_id=%d job=%s state=%s exit_code=%d host=%s\n", e.Summary(), e.RunID, e.Job, e.State, e.ExitCode, e.Host)
	return post(ctx, target, "text/plain; charset=utf-8", []byte(body))
}

func webhook(ctx context.Context, target string, e Event) error {
	p := WebhookPayload{Event: "run.failed", Job: e.Job, RunID: e.RunID, State: e.State, ExitCode: e.ExitCode, Error: e.Error,
		Host: e.Host, Trigger: e.Trigger, StartedAt: e.StartedAt, FinishedAt: e.FinishedAt, Seconds: e.Seconds, Text: e.Summary()}
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	return post(ctx, target, "application/json", b)
}

func post(ctx context.Context, target, contentType string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return errors.New("bad request URL")
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("User-Agent", "ip2a-ops")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		// *url.Error repeats the full URL (with its token); keep the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			return ue.Err
		}
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("HTTP %s", resp.Status)
	}
	return nil
}

func sendMail(ctx context.Context, s SMTP, e Event) error {
	if !s.Configured() {
		return errors.New("SMTP address, From and To are required")
	}
	return SendMail(ctx, s, Envelope{From: s.From, To: s.To, Data: Message(s, e)})
}

// Envelope is one message for SendMail: the SMTP envelope's sender and
// recipients, and the RFC 5322 message (CRLF line ends).
type Envelope struct {
	From string
	To   []string
	Data []byte
}

// ReplyError is an SMTP server's refusal: its reply code and text.
type ReplyError struct {
	Code int
	Msg  string
}

func (e *ReplyError) Error() string { return fmt.Sprintf("%d %s", e.Code, e.Msg) }

// Permanent reports a 5xx reply: sending again will be refused again.
// A 4xx reply is a temporary refusal.
func (e *ReplyError) Permanent() bool { return e.Code >= 500 && e.Code <= 599 }

// SendMail delivers env through the relay s names (s.To is not used) under
// ctx's deadline: implicit TLS or STARTTLS as s.TLS says, AUTH PLAIN when a
// username is set. A refusal by the server is returned as a wrapped
// *ReplyError, so callers can tell a permanent 5xx refusal from a
// transient 4xx one or a connection error.
func SendMail(ctx context.Context, s SMTP, env Envelope) error {
	err := sendMailOnce(ctx, s, env)
	var te *textproto.Error
	if errors.As(err, &te) {
		re := &ReplyError{Code: te.Code, Msg: te.Msg}
		return fmt.Errorf("%s%w", strings.TrimSuffix(err.Error(), te.Error()), re)
	}
	return err
}

func sendMailOnce(ctx context.Context, s SMTP, env Envelope) error {
	if s.Addr == "" || env.From == "" || len(env.To) == 0 {
		return errors.New("SMTP address, sender and recipients are required")
	}
	host, port, err := net.SplitHostPort(s.Addr)
	if err != nil {
		return fmt.Errorf("SMTP address %q: %w", s.Addr, err)
	}
	mode := s.TLS
	if mode == "" || mode == TLSAuto {
		mode = TLSAuto
		if port == "465" {
			mode = TLSImplicit
		}
	}
	tlsConfig := &tls.Config{ServerName: host, RootCAs: s.RootCAs}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", s.Addr)
	if err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	if mode == TLSImplicit {
		tc := tls.Client(conn, tlsConfig)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = conn.Close()
			return fmt.Errorf("TLS: %w", err)
		}
		conn = tc
	}
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		_ = conn.Close()
		return err
	}
	defer c.Close()
	if err := c.Hello("ip2a-ops"); err != nil {
		return err
	}
	if mode != TLSImplicit {
		ok, _ := c.Extension("STARTTLS")
		if !ok && mode == TLSStartTLS {
			return errors.New("the server does not offer STARTTLS (IP2A_OPS_SMTP_TLS=starttls requires it)")
		}
		if ok {
			if err := c.StartTLS(tlsConfig); err != nil {
				return fmt.Errorf("STARTTLS: %w", err)
			}
		}
	}
	if s.Username != "" {
		if err := c.Auth(smtp.PlainAuth("", s.Username, s.Password, host)); err != nil {
			return fmt.Errorf("auth as %s: %w", s.Username, err)
		}
	}
	if err := c.Mail(env.From); err != nil {
		return fmt.Errorf("sender %s: %w", env.From, err)
	}
	for _, to := range env.To {
		if err := c.Rcpt(to); err != nil {
			return fmt.Errorf("recipient %s: %w", to, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(env.Data); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("message refused: %w", err)
	}
	return c.Quit()
}

// Message is the RFC 5322 email sent for a failed run.
func Message(s SMTP, e Event) []byte {
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	domain := "ip2a-ops.invalid"
	if i := strings.LastIndex(s.From, "@"); i >= 0 {
		domain = s.From[i+1:]
	}
	var b strings.Builder
	hdr := func(k, v string) {
		fmt.Fprintf(&b, "%s: %s\r\n", k, strings.NewReplacer("\r", " ", "\n", " ").Replace(v))
	}
	hdr("From", s.From)
	hdr("To", strings.Join(s.To, ", "))
	hdr("Subject", fmt.Sprintf("[ip2a-ops] %s %s (exit %d) on %s", e.Job, e.State, e.ExitCode, e.Host))
	hdr("Date", time.Now().Format(time.RFC1123Z))
	hdr("Message-ID", fmt.Sprintf("<%s.%d.%s@%s>", e.Job, e.RunID, hex.EncodeToString(rnd[:]), domain))
	hdr("MIME-Version", "1.0")
	hdr("Content-Type", "text/plain; charset=utf-8")
	hdr("Content-Transfer-Encoding", "8bit")
	b.WriteString("\r\n")
	fin := "-"
	if e.FinishedAt != nil {
		fin = e.FinishedAt.UTC().Format(time.RFC3339)
	}
	fmt.Fprintf(&b, "The ip2a-ops job %q did not succeed.\r\n\r\n", e.Job)
	fmt.Fprintf(&b, "run:       %d\r\nstate:     %s\r\nexit code: %d\r\nhost:      %s\r\ntrigger:   %s\r\nstarted:   %s\r\nfinished:  %s\r\nduration:  %.1fs\r\n",
		e.RunID, e.State, e.ExitCode, e.Host, e.Trigger, e.StartedAt.UTC().Format(time.RFC3339), fin, e.Seconds)
	if e.Error != "" {
		fmt.Fprintf(&b, "error:     %s\r\n", strings.ReplaceAll(strings.ReplaceAll(e.Error, "\r\n", "\n"), "\n", "\r\n           "))
	}
	fmt.Fprintf(&b, "\r\nDetails: ip2a-ops jobs show %d\r\n", e.RunID)
	return []byte(b.String())
}
