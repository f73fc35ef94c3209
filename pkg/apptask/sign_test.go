package apptask_test

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/pkg/apptask"
)

func TestVerifier(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	body := []byte(`{"member_id": 42}`)
	headers := func(key []byte, at time.Time, id, task string, body []byte) http.Header {
		h := http.Header{}
		h.Set(apptask.HeaderIdempotencyKey, id)
		h.Set(apptask.HeaderTimestamp, strconv.FormatInt(at.Unix(), 10))
		h.Set(apptask.HeaderAttempt, "2")
		h.Set(apptask.HeaderSignature, apptask.Sign(key, at.Unix(), id, task, body))
		return h
	}
	old := []byte("the-previous-secret-before-rotation")
	v := apptask.Verifier{Secrets: [][]byte{secret, old}, Now: func() time.Time { return now }}
	for _, tt := range []struct {
		name    string
		h       http.Header
		task    string
		body    []byte
		wantErr error
	}{
		{"valid", headers(secret, now.Add(-time.Minute), "17", "send_welcome_email", body), "send_welcome_email", body, nil},
		{"the previous secret, while rotating", headers(old, now, "17", "send_welcome_email", body), "send_welcome_email", body, nil},
		{"forged: another secret", headers([]byte("guessed-secret-0123456789"), now, "17", "send_welcome_email", body), "send_welcome_email", body, apptask.ErrBadSignature},
		{"body changed", headers(secret, now, "17", "send_welcome_email", body), "send_welcome_email", []byte(`{"member_id": 43}`), apptask.ErrBadSignature},
		{"another task's endpoint", headers(secret, now, "17", "send_welcome_email", body), "delete_member", body, apptask.ErrBadSignature},
		{"replayed after the window", headers(secret, now.Add(-6*time.Minute), "17", "send_welcome_email", body), "send_welcome_email", body, apptask.ErrStale},
		{"from the future", headers(secret, now.Add(6*time.Minute), "17", "send_welcome_email", body), "send_welcome_email", body, apptask.ErrStale},
		{"no headers", http.Header{}, "send_welcome_email", body, apptask.ErrMissingHeaders},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d, err := v.Verify(tt.h, tt.task, tt.body)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, "17", d.TaskID)
			require.Equal(t, 2, d.Attempt)
		})
	}

	t.Run("timestamp changed after signing", func(t *testing.T) {
		h := headers(secret, now.Add(-10*time.Minute), "17", "send_welcome_email", body)
		h.Set(apptask.HeaderTimestamp, strconv.FormatInt(now.Unix(), 10)) // freshened by a replayer
		_, err := v.Verify(h, "send_welcome_email", body)
		require.ErrorIs(t, err, apptask.ErrBadSignature)
	})
	t.Run("task id changed after signing", func(t *testing.T) {
		h := headers(secret, now, "17", "send_welcome_email", body)
		h.Set(apptask.HeaderIdempotencyKey, "18")
		_, err := v.Verify(h, "send_welcome_email", body)
		require.ErrorIs(t, err, apptask.ErrBadSignature)
	})
}

// TestSignatureIsPinned fixes the signed string against a value computed
// outside this package, so a change of the scheme cannot pass unnoticed
// (the app's verifier would refuse every delivery).
func TestSignatureIsPinned(t *testing.T) {
	got := apptask.Sign([]byte("test-secret-0123456789abcdef"), 1767225600, "17", "send_welcome_email", []byte(`{"member_id": 42}`))
	require.Equal(t, pinnedSignature, got)
}

// pinnedSignature was computed with Python's hmac module, not with Sign.
const pinnedSignature = "v1=d7c52b4ce74f655dd5a4a8293977a44e9d6bae9bf93ee3091ba6ae00fcf65593"
