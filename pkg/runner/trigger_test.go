package runner

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDetectTrigger(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		env    map[string]string
		parent string
		want   string
	}{
		{"terminal", nil, "bash", "manual"},
		{"cron", nil, "cron", "cron"},
		{"systemd", map[string]string{"INVOCATION_ID": "abc"}, "systemd", "systemd"},
		{"railway", map[string]string{"RAILWAY_ENVIRONMENT": "production", "INVOCATION_ID": "x"}, "", "railway"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := DetectTrigger(func(k string) string { return tc.env[k] }, tc.parent)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestRedactArgs(t *testing.T) {
	t.Parallel()
	got := RedactArgs([]string{"backup", "--database-url", "postgres://u:pw@h/db", "--s3-secret-access-key", "KEY", "--webhook-url=https://x/y", "--keep-daily", "7"})
	require.Equal(t, []string{"backup", "--database-url", "postgres://u:xxxxx@h/db", "--s3-secret-access-key", "xxxxx", "--webhook-url=xxxxx", "--keep-daily", "7"}, got)
}
