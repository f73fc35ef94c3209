// Package apptask turns any function of the app into a durable task: the
// task kind "http" POSTs its payload to the app's task endpoint (base URL +
// "/" + task name), signed with HMAC-SHA256, and a worker retries it with
// backoff until the app answers 2xx. The app's side (verifying, idempotency
// by task id, enqueuing in its own transaction) is in docs/tasks.md; Verifier
// is the reference for it.
//
// What the app's answer means:
//
//   - 2xx: done; status and the first bytes of the body are the task's output.
//   - 5xx, 408, 429, a timeout or a connection error: the attempt failed and
//     is retried with the worker's backoff until the task's max attempts.
//   - any other status (4xx, a redirect): no retry can help; the task fails
//     at once (tasks.Permanent) with the response recorded in its output.
package apptask

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ip2a/ip2a-ops/pkg/tasks"
)

// Kind is the task kind.
const Kind = "http"

// ArgsVersion is the version of Args this binary reads.
const ArgsVersion = 1

// Args are an http task's args: {"v": 1, "task": "send_welcome_email",
// "payload": {...}}. Unknown fields and other versions fail the task at
// once.
type Args struct {
	V int `json:"v"`
	// Task names the app's task: the last segment of the endpoint's path.
	Task string `json:"task"`
	// Payload is POSTed as the request body, byte for byte (default {}).
	Payload json.RawMessage `json:"payload,omitempty"`
}

// validTaskName accepts 1 to 128 letters, digits, '_', '.' and '-',
// starting with a letter or digit: a path segment that needs no escaping
// and cannot climb ("..").
func validTaskName(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i, c := range s {
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '_' && c != '.' && c != '-') {
			return false
		}
	}
	return true
}

// Decode reads args strictly; its errors are permanent (tasks.Permanent).
func Decode(raw json.RawMessage) (Args, error) {
	var a Args
	if err := tasks.DecodeArgs(raw, &a); err != nil {
		return a, err
	}
	if a.V != ArgsVersion {
		return a, tasks.Permanent(fmt.Errorf("http task args are version %d, this binary reads version %d", a.V, ArgsVersion))
	}
	if !validTaskName(a.Task) {
		return a, tasks.Permanent(fmt.Errorf("http task name %q: want letters, digits, _ . - (it becomes a path segment)", a.Task))
	}
	if len(bytes.TrimSpace(a.Payload)) == 0 {
		a.Payload = json.RawMessage("{}")
	}
	return a, nil
}

// Options configure the handler. Zero values mean defaults.
type Options struct {
	// BaseURL is the app's task endpoint; task "x" is POSTed to BaseURL+"/x".
	BaseURL string
	// Secret signs every request. Required.
	Secret []byte
	// Timeout bounds one request, connecting to reading the body (default
	// 30 s); a request that takes longer is a failed, retried attempt.
	Timeout time.Duration
	// MaxBody is how many bytes of the response body go into the output
	// (default 2048).
	MaxBody int
	// Transport sends the requests (default: a clone of
	// http.DefaultTransport).
	Transport http.RoundTripper
	// Now is the clock the timestamp is read from (default time.Now).
	Now func() time.Time
}

// Defaults for Options.
const (
	DefaultTimeout = 30 * time.Second
	DefaultMaxBody = 2048
)

// Validate names the first bad field.
func (o Options) Validate() error {
	u, err := url.Parse(o.BaseURL)
	switch {
	case o.BaseURL == "":
		return errors.New("apptask: the app's task URL is required")
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return fmt.Errorf("apptask: task URL %q is not an http(s) URL", redact(o.BaseURL))
	case u.RawQuery != "" || u.Fragment != "":
		return fmt.Errorf("apptask: task URL %q must not have a query or fragment (the task name is appended to its path)", redact(o.BaseURL))
	case len(o.Secret) == 0:
		return errors.New("apptask: a signing secret is required")
	case len(o.Secret) < 16:
		return errors.New("apptask: the signing secret is shorter than 16 bytes")
	case o.Timeout < 0 || o.MaxBody < 0:
		return errors.New("apptask: Timeout and MaxBody must not be negative")
	}
	return nil
}

// Output is what an http task records, whatever the outcome of an attempt
// that reached the app.
type Output struct {
	Task   string `json:"task"`
	Status int    `json:"status"`
	// Body is the first MaxBody bytes of the response (invalid UTF-8
	// replaced); Truncated says there was more.
	Body       string `json:"body"`
	Truncated  bool   `json:"truncated"`
	DurationMS int64  `json:"duration_ms"`
}

// NewHandler returns the http kind's handler. It refuses options without a
// URL or secret, so a worker is never started that sends unsigned requests.
func NewHandler(o Options) (tasks.Handler, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MaxBody == 0 {
		o.MaxBody = DefaultMaxBody
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Transport == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = 32
		o.Transport = t
	}
	base := strings.TrimRight(o.BaseURL, "/")
	client := &http.Client{
		Transport: o.Transport,
		// A redirect means a misconfigured URL; following it would send
		// the signed payload somewhere else.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return func(ctx context.Context, t tasks.Task) (json.RawMessage, error) {
		a, err := Decode(t.Args)
		if err != nil {
			return nil, err
		}
		return deliver(ctx, client, o, base, t, a)
	}, nil
}

func deliver(ctx context.Context, client *http.Client, o Options, base string, t tasks.Task, a Args) (json.RawMessage, error) {
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	id := t.ID.String()
	ts := o.Now().Unix()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/"+a.Task, bytes.NewReader(a.Payload))
	if err != nil {
		return nil, tasks.Permanent(fmt.Errorf("app task %s: build request: %w", a.Task, err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "ip2a-ops")
	req.Header.Set(HeaderIdempotencyKey, id)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderAttempt, strconv.Itoa(t.Attempt))
	req.Header.Set(HeaderSignature, Sign(o.Secret, ts, id, a.Task, a.Payload))
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("app task %s: %w", a.Task, transportError(err, o.Timeout))
	}
	defer resp.Body.Close()
	body, readErr := io.ReadAll(io.LimitReader(resp.Body, int64(o.MaxBody)+1))
	// Drain a little more so the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 256<<10))
	out := Output{Task: a.Task, Status: resp.StatusCode, Truncated: len(body) > o.MaxBody,
		DurationMS: time.Since(start).Milliseconds()}
	body = body[:min(len(body), o.MaxBody)]
	if !utf8.Valid(body) {
		body = []byte(strings.ToValidUTF8(string(body), "\uFFFD"))
	}
	out.Body = string(body)
	raw, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("app task %s: encode output: %w", a.Task, err)
	}
	code := resp.StatusCode
	switch {
	case code >= 200 && code <= 299:
		if readErr != nil {
			return raw, fmt.Errorf("app task %s: HTTP %d, reading the response: %w", a.Task, code, transportError(readErr, o.Timeout))
		}
		return raw, nil
	case code >= 500 || code == http.StatusRequestTimeout || code == http.StatusTooManyRequests:
		return raw, fmt.Errorf("app task %s: HTTP %s%s", a.Task, resp.Status, excerpt(body))
	default:
		return raw, tasks.Permanent(fmt.Errorf("app task %s: HTTP %s (not retried)%s", a.Task, resp.Status, excerpt(body)))
	}
}

// transportError describes a failed request without the URL (which
// *url.Error repeats).
func transportError(err error, timeout time.Duration) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return fmt.Errorf("no answer within %s: %w", timeout, err)
	}
	return err
}

func excerpt(body []byte) string {
	s := strings.Join(strings.Fields(string(body)), " ")
	if s == "" {
		return ""
	}
	if len(s) > 200 {
		s = strings.ToValidUTF8(s[:200], "") + "..."
	}
	return ": " + s
}

// redact keeps scheme and host of a URL.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(unparseable URL)"
	}
	return u.Scheme + "://" + u.Host + "/..."
}
