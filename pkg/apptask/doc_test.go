package apptask_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/pkg/apptask"
)

// pythonHarness feeds the doc's verify_task the cases on stdin and prints,
// for each, the task id it returned or "refused".
const pythonHarness = `
import json, sys
out = []
for c in json.load(sys.stdin):
    headers = {k.lower(): v for k, v in c["headers"].items()}
    try:
        out.append(verify_task([s.encode() for s in c["secrets"]], headers, c["task"], c["body"].encode(), now=c["now"]))
    except TaskSignatureError:
        out.append("refused")
print(json.dumps(out))
`

// TestPythonVerifierInDocs runs the Python verifier printed in
// docs/tasks.md against deliveries signed by this package, and checks it
// decides each one as Verifier does: the app's side as documented accepts
// what ip2a-ops sends and refuses forgeries and replays.
func TestPythonVerifierInDocs(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("python3 is needed to test the documented verifier (CI installs it)")
		}
		t.Skip("python3 not installed")
	}
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "tasks.md"))
	require.NoError(t, err)
	code := pythonBlock(t, string(doc), "# ip2a-ops: reference verifier")
	script := filepath.Join(t.TempDir(), "verify.py")
	require.NoError(t, os.WriteFile(script, []byte(code+"\n"+pythonHarness), 0o600))

	now := time.Now()
	body := `{"member_id": 42, "name": "Zoë"}`
	type tcase struct {
		Headers map[string]string `json:"headers"`
		Secrets []string          `json:"secrets"`
		Task    string            `json:"task"`
		Body    string            `json:"body"`
		Now     int64             `json:"now"`
	}
	mk := func(key string, at time.Time, task, sentBody string) tcase {
		return tcase{Headers: map[string]string{
			apptask.HeaderIdempotencyKey: "17",
			apptask.HeaderTimestamp:      strconv.FormatInt(at.Unix(), 10),
			apptask.HeaderSignature:      apptask.Sign([]byte(key), at.Unix(), "17", "send_welcome_email", []byte(body)),
		}, Secrets: []string{string(secret), "previous-secret-0123456789"}, Task: task, Body: sentBody, Now: now.Unix()}
	}
	cases := []tcase{
		mk(string(secret), now, "send_welcome_email", body),
		mk("previous-secret-0123456789", now.Add(-time.Minute), "send_welcome_email", body),
		mk("forged-secret-0123456789ab", now, "send_welcome_email", body),
		mk(string(secret), now.Add(-10*time.Minute), "send_welcome_email", body),
		mk(string(secret), now, "delete_member", body),
		mk(string(secret), now, "send_welcome_email", `{"member_id": 43, "name": "Zoë"}`),
		{Headers: map[string]string{}, Secrets: []string{string(secret)}, Task: "x", Body: body, Now: now.Unix()},
	}
	in, err := json.Marshal(cases)
	require.NoError(t, err)
	cmd := exec.Command(python, script)
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "python: %s", stderr.String())
	var got []string
	require.NoError(t, json.Unmarshal(out, &got), "python printed %s", out)

	var want []string
	for _, c := range cases {
		h := http.Header{}
		for k, v := range c.Headers {
			h.Set(k, v)
		}
		var keys [][]byte
		for _, s := range c.Secrets {
			keys = append(keys, []byte(s))
		}
		v := apptask.Verifier{Secrets: keys, Now: func() time.Time { return time.Unix(c.Now, 0) }}
		d, err := v.Verify(h, c.Task, []byte(c.Body))
		switch {
		case err == nil:
			want = append(want, d.TaskID)
		case errors.Is(err, apptask.ErrBadSignature), errors.Is(err, apptask.ErrStale), errors.Is(err, apptask.ErrMissingHeaders):
			want = append(want, "refused")
		default:
			t.Fatalf("unexpected error %v", err)
		}
	}
	require.Equal(t, []string{"17", "17", "refused", "refused", "refused", "refused", "refused"}, want)
	require.Equal(t, want, got, "the documented Python verifier decides as the Go one")
}

// pythonBlock returns the ```python block of doc that contains marker.
func pythonBlock(t *testing.T, doc, marker string) string {
	t.Helper()
	for _, part := range strings.Split(doc, "```python\n")[1:] {
		block, _, ok := strings.Cut(part, "\n```")
		if ok && strings.Contains(block, marker) {
			return block
		}
	}
	t.Fatalf("docs/tasks.md has no python block with %q", marker)
	return ""
}
