package runner

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/ip2a/ip2a-ops/pkg/dbconn"
)

// Triggers a run can have.
var Triggers = []string{"manual", "cron", "systemd", "railway", "daemon", "queue"}

// ValidTrigger reports whether t is one of Triggers.
func ValidTrigger(t string) bool {
	for _, v := range Triggers {
		if v == t {
			return true
		}
	}
	return false
}

// Process is one process that ip2a-ops descends from.
type Process struct {
	PID int
	// Comm is the kernel's name for the process: the file name it was
	// started from (a script's own name, not its interpreter's), at most
	// 15 bytes.
	Comm string
	// Args is its command line (empty when unreadable).
	Args []string
}

// cronNames are the process names of cron implementations: Debian's and
// cronie (cron, crond), anacron, fcron, dcron, supercronic and busybox's
// crond applet when started through its own name.
var cronNames = map[string]bool{"cron": true, "crond": true, "anacron": true, "fcron": true, "dcron": true, "supercronic": true}

// isCron reports whether p is a cron daemon, including "busybox crond".
func (p Process) isCron() bool {
	if cronNames[p.Comm] {
		return true
	}
	return p.Comm == "busybox" && len(p.Args) > 1 && p.Args[1] == "crond"
}

// DetectTrigger guesses what started this process from its environment and
// its ancestors (nearest first, as Ancestors returns them): Railway sets
// RAILWAY_* variables; a cron daemon anywhere up the chain means cron (cron
// runs a line through /bin/sh, which may or may not exec the command, and
// sudo, flock or a wrapper script may sit in between); systemd sets
// INVOCATION_ID for the processes of its units, and a process whose parent
// is systemd itself is a unit's. Anything else is a person: "manual".
func DetectTrigger(getenv func(string) string, ancestors []Process) string {
	if getenv("RAILWAY_ENVIRONMENT") != "" || getenv("RAILWAY_PROJECT_ID") != "" || getenv("RAILWAY_SERVICE_ID") != "" {
		return "railway"
	}
	for _, p := range ancestors {
		if p.isCron() {
			return "cron"
		}
	}
	if getenv("INVOCATION_ID") != "" || (len(ancestors) > 0 && ancestors[0].Comm == "systemd") {
		return "systemd"
	}
	return "manual"
}

// maxAncestors bounds the walk up the process tree.
const maxAncestors = 64

// Ancestors returns the processes this one descends from, its parent
// first, up to and including pid 1, read from /proc. Where /proc is not
// mounted (macOS, some sandboxes) it returns what it could read, possibly
// nothing. In a container the chain ends at the container's pid 1.
func Ancestors() []Process {
	return ancestorsFrom("/proc", os.Getppid())
}

// ancestorsFrom walks the /proc tree under root from pid upwards.
func ancestorsFrom(root string, pid int) []Process {
	var out []Process
	seen := map[int]bool{}
	for pid > 0 && !seen[pid] && len(out) < maxAncestors {
		seen[pid] = true
		dir := filepath.Join(root, strconv.Itoa(pid))
		stat, err := os.ReadFile(filepath.Join(dir, "stat"))
		if err != nil {
			break
		}
		comm, ppid, ok := parseStat(string(stat))
		if !ok {
			break
		}
		p := Process{PID: pid, Comm: comm}
		if b, err := os.ReadFile(filepath.Join(dir, "cmdline")); err == nil {
			p.Args = strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		}
		out = append(out, p)
		pid = ppid
	}
	return out
}

// parseStat reads the name and parent pid from /proc/<pid>/stat:
// "pid (comm) state ppid ...", where comm may itself hold spaces and
// parentheses, so it ends at the last ')'.
func parseStat(s string) (comm string, ppid int, ok bool) {
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return "", 0, false
	}
	f := strings.Fields(s[end+1:])
	if len(f) < 2 {
		return "", 0, false
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return "", 0, false
	}
	return s[open+1 : end], ppid, true
}

// secretFlag reports whether a flag's value is a secret by its name.
func secretFlag(name string) bool {
	n := strings.ToLower(strings.TrimLeft(name, "-"))
	for _, w := range []string{"password", "secret", "token", "access-key", "identity", "passphrase", "webhook", "ping-url", "dsn"} {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

// RedactArgs returns args with the values of secret flags replaced and
// passwords in connection strings blanked, for the ledger and logs.
func RedactArgs(args []string) []string {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		if strings.HasPrefix(a, "-") {
			name, _, hasValue := strings.Cut(a, "=")
			if secretFlag(name) {
				if hasValue {
					out = append(out, name+"=xxxxx")
				} else {
					out = append(out, a)
					if i+1 < len(args) {
						out = append(out, "xxxxx")
						i++
					}
				}
				continue
			}
		}
		out = append(out, dbconn.Redact(a))
	}
	return out
}
