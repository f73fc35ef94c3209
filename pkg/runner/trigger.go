package runner

import (
	"os"
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

// DetectTrigger guesses what started this process: Railway sets RAILWAY_*
// variables, systemd sets INVOCATION_ID for its units, and cron is the
// parent process's name. Anything else is a person: "manual".
func DetectTrigger(getenv func(string) string, parentName string) string {
	switch {
	case getenv("RAILWAY_ENVIRONMENT") != "" || getenv("RAILWAY_PROJECT_ID") != "" || getenv("RAILWAY_SERVICE_ID") != "":
		return "railway"
	case getenv("INVOCATION_ID") != "":
		return "systemd"
	}
	switch strings.TrimSpace(parentName) {
	case "cron", "crond", "anacron", "busybox", "supercronic":
		return "cron"
	}
	return "manual"
}

// ParentName returns the command name of the parent process ("" if unknown).
func ParentName() string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(os.Getppid()) + "/comm")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
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
