package tasks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Builtin returns the kinds every worker runs whatever jobs it knows:
//
//   - noop: does nothing and returns {} (checks a deployment end to end,
//     measures the queue's own cost). Args: {} (anything is ignored).
//   - test.sleep: waits {"seconds": N} (default 1), or until cancelled.
//   - test.fail: fails with {"message": "..."}; with "permanent": true it
//     fails at once, without retries.
func Builtin() Handlers {
	return Handlers{
		"noop": func(ctx context.Context, t Task) (json.RawMessage, error) {
			return json.RawMessage(`{}`), nil
		},
		"test.sleep": func(ctx context.Context, t Task) (json.RawMessage, error) {
			args := struct {
				Seconds *float64 `json:"seconds"`
			}{}
			if err := DecodeArgs(t.Args, &args); err != nil {
				return nil, err
			}
			d := time.Second
			if args.Seconds != nil {
				d = time.Duration(*args.Seconds * float64(time.Second))
			}
			start := time.Now()
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			return json.RawMessage(fmt.Sprintf(`{"slept_seconds":%.3f}`, time.Since(start).Seconds())), nil
		},
		"test.fail": func(ctx context.Context, t Task) (json.RawMessage, error) {
			args := struct {
				Message   string `json:"message"`
				Permanent bool   `json:"permanent"`
			}{Message: "failed on purpose"}
			if err := DecodeArgs(t.Args, &args); err != nil {
				return nil, err
			}
			err := fmt.Errorf("%s (attempt %d of %d)", args.Message, t.Attempt, t.MaxAttempts)
			if args.Permanent {
				return nil, Permanent(err)
			}
			return nil, err
		},
	}
}

// DecodeArgs decodes a task's args into v, refusing unknown fields and
// trailing data; its error is permanent (no retry can fix the args).
func DecodeArgs(raw json.RawMessage, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return Permanent(fmt.Errorf("args do not parse: %w", err))
	}
	if dec.More() {
		return Permanent(errors.New("args do not parse: trailing data"))
	}
	return nil
}
