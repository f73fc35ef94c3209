package apptask

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The headers of a delivery. The idempotency key is the task's id: every
// attempt of one task carries the same key, so the app can do the work once
// however often it is delivered.
const (
	HeaderIdempotencyKey = "Idempotency-Key"
	HeaderTimestamp      = "X-Ip2a-Timestamp"
	HeaderSignature      = "X-Ip2a-Signature"
	HeaderAttempt        = "X-Ip2a-Attempt"
)

// signatureScheme prefixes the signature header's value, so a later scheme
// can be told apart.
const signatureScheme = "v1="

// Sign returns the signature header's value for a delivery: "v1=" and the
// hex HMAC-SHA256, under secret, of "v1:" + timestamp (Unix seconds) + ":" +
// task id + ":" + task name + ":" + body. The task name is signed too, so a
// captured delivery cannot be replayed to another task's endpoint.
func Sign(secret []byte, timestamp int64, taskID, task string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	fmt.Fprintf(m, "v1:%d:%s:%s:", timestamp, taskID, task)
	m.Write(body)
	return signatureScheme + hex.EncodeToString(m.Sum(nil))
}

// Delivery is what a verified request says about itself.
type Delivery struct {
	TaskID    string
	Attempt   int
	Timestamp time.Time
}

// Verification errors, for the app's endpoint to answer 401 with.
var (
	ErrMissingHeaders = errors.New("apptask: missing signature headers")
	ErrBadSignature   = errors.New("apptask: signature does not match")
	ErrStale          = errors.New("apptask: timestamp outside the allowed window")
)

// DefaultWindow is how far a delivery's timestamp may be from the
// verifier's clock.
const DefaultWindow = 5 * time.Minute

// Verifier checks deliveries the way the app's endpoint must (docs/tasks.md
// has the same in Python). It is the reference the tests hold the sender to.
type Verifier struct {
	// Secrets accepted, the current one first; a second one lets the
	// secret be rotated without refusing deliveries signed with the old.
	Secrets [][]byte
	// Window bounds |now - timestamp| (default DefaultWindow): a captured
	// delivery replayed later than this is refused. Within it, replays are
	// the idempotency key's job.
	Window time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Verify checks a delivery of task with these headers and body: the
// signature must match one of the secrets (constant-time) and the timestamp
// lie within the window. It returns ErrMissingHeaders, ErrBadSignature or
// ErrStale (wrapped).
func (v Verifier) Verify(h http.Header, task string, body []byte) (Delivery, error) {
	id, ts, sig := h.Get(HeaderIdempotencyKey), h.Get(HeaderTimestamp), h.Get(HeaderSignature)
	if id == "" || ts == "" || sig == "" {
		return Delivery{}, ErrMissingHeaders
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return Delivery{}, fmt.Errorf("%w: timestamp %q is not Unix seconds", ErrBadSignature, ts)
	}
	ok := false
	for _, s := range v.Secrets {
		if len(s) > 0 && hmac.Equal([]byte(sig), []byte(Sign(s, sec, id, task, body))) {
			ok = true
		}
	}
	if !ok {
		return Delivery{}, ErrBadSignature
	}
	window, now := v.Window, time.Now
	if window <= 0 {
		window = DefaultWindow
	}
	if v.Now != nil {
		now = v.Now
	}
	at := time.Unix(sec, 0)
	if d := now().Sub(at); d > window || d < -window {
		return Delivery{}, fmt.Errorf("%w: signed at %s, %s from now", ErrStale, at.UTC().Format(time.RFC3339), d.Round(time.Second))
	}
	attempt, _ := strconv.Atoi(strings.TrimSpace(h.Get(HeaderAttempt)))
	return Delivery{TaskID: id, Attempt: attempt, Timestamp: at}, nil
}
