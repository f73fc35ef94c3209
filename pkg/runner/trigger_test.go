package runner

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDetectTrigger(t *testing.T) {
	t.Parallel()
	chain := func(names ...string) []Process {
		out := make([]Process, len(names))
		for i, n := range names {
			comm, args, _ := strings.Cut(n, " ")
			out[i] = Process{PID: 100 - i, Comm: comm, Args: append([]string{comm}, strings.Fields(args)...)}
		}
		return out
	}
	for _, tc := range []struct {
		name      string
		env       map[string]string
		ancestors []Process
		want      string
	}{
		{"terminal", nil, chain("bash", "sshd", "sshd", "systemd"), "manual"},
		{"cron parent", nil, chain("cron", "systemd"), "cron"},
		{"debian cron through dash", nil, chain("sh", "cron", "cron", "systemd"), "cron"},
		{"cron, sudo and a wrapper script", nil, chain("sudo", "run-ops.sh", "sh", "crond", "systemd"), "cron"},
		{"cron is pid 1 of a container", nil, chain("sh", "supercronic"), "cron"},
		{"busybox crond", nil, chain("sh", "busybox crond -f"), "cron"},
		{"busybox shell", nil, chain("busybox sh", "sshd"), "manual"},
		{"cron wins over a leaked INVOCATION_ID", map[string]string{"INVOCATION_ID": "abc"}, chain("sh", "cron", "systemd"), "cron"},
		{"systemd unit", map[string]string{"INVOCATION_ID": "abc"}, chain("sh", "systemd"), "systemd"},
		{"systemd parent without INVOCATION_ID", nil, chain("systemd"), "systemd"},
		{"systemd further up is not enough", nil, chain("bash", "login", "systemd"), "manual"},
		{"railway", map[string]string{"RAILWAY_ENVIRONMENT": "production", "INVOCATION_ID": "x"}, chain("sh", "cron"), "railway"},
		{"no /proc", nil, nil, "manual"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := DetectTrigger(func(k string) string { return tc.env[k] }, tc.ancestors)
			require.Equal(t, tc.want, got)
		})
	}
}

// TestAncestorsFrom walks a /proc tree: names with spaces and parentheses,
// command lines, the end at pid 1, and a loop or a missing entry ending
// the walk instead of hanging or failing.
func TestAncestorsFrom(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	proc := func(pid int, comm string, ppid int, args ...string) {
		dir := filepath.Join(root, strconv.Itoa(pid))
		require.NoError(t, os.MkdirAll(dir, 0o755))
		stat := fmt.Sprintf("%d (%s) S %d 1 1 0 -1 4194560", pid, comm, ppid)
		require.NoError(t, os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644))
		require.NoError(t, os.WriteFile(filepath.Join(dir, "cmdline"), []byte(strings.Join(args, "\x00")+"\x00"), 0o644))
	}
	proc(1, "systemd", 0, "/sbin/init")
	proc(10, "cron", 1, "/usr/sbin/cron", "-f")
	proc(20, "cron", 10, "/usr/sbin/CRON", "-f")
	proc(30, "sh", 20, "/bin/sh", "-c", "ip2a-ops backup")
	proc(40, "odd) name (x", 30, "odd")
	proc(50, "a", 51)
	proc(51, "b", 50)

	got := ancestorsFrom(root, 40)
	var names []string
	for _, p := range got {
		names = append(names, fmt.Sprint(p.PID, " ", p.Comm))
	}
	require.Equal(t, []string{"40 odd) name (x", "30 sh", "20 cron", "10 cron", "1 systemd"}, names)
	require.Equal(t, []string{"/bin/sh", "-c", "ip2a-ops backup"}, got[1].Args)
	require.Len(t, ancestorsFrom(root, 50), 2, "a loop ends the walk")
	require.Len(t, ancestorsFrom(root, 99), 0, "a process that is gone ends it")
}

func TestRedactArgs(t *testing.T) {
	t.Parallel()
	got := RedactArgs([]string{"backup", "--database-url", "postgres://u:pw@h/db", "--s3-secret-access-key", "KEY", "--webhook-url=https://x/y", "--keep-daily", "7"})
	require.Equal(t, []string{"backup", "--database-url", "postgres://u:xxxxx@h/db", "--s3-secret-access-key", "xxxxx", "--webhook-url=xxxxx", "--keep-daily", "7"}, got)
}
