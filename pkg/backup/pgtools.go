package backup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ip2a/ip2a-ops/pkg/dbconn"
)

// ErrToolMissing is wrapped when pg_dump or pg_restore cannot be found or is
// too old for the server; it is a usage error (exit 2) naming what to
// install.
var ErrToolMissing = errors.New("PostgreSQL client tool missing or too old")

var versionRE = regexp.MustCompile(`\(PostgreSQL\) (\d+)(?:\.(\d+))?`)

// ToolError says a PostgreSQL client tool (pg_dump, pg_restore) is missing
// or older than MinMajor. It wraps ErrToolMissing.
type ToolError struct {
	Err      error
	Tool     string
	MinMajor int
}

func (e *ToolError) Error() string { return e.Err.Error() }
func (e *ToolError) Unwrap() error { return e.Err }

// toolVersion runs "<bin> --version" and returns the text and major version.
func toolVersion(ctx context.Context, bin string) (string, int, error) {
	out, err := exec.CommandContext(ctx, bin, "--version").Output()
	if err != nil {
		return "", 0, fmt.Errorf("%s --version: %w", bin, err)
	}
	text := strings.TrimSpace(string(out))
	m := versionRE.FindStringSubmatch(text)
	if m == nil {
		return "", 0, fmt.Errorf("%s --version: unexpected output %q", bin, text)
	}
	major, _ := strconv.Atoi(m[1])
	return text, major, nil
}

// findTool returns a usable binary (pg_dump or pg_restore) whose major
// version is at least minMajor: the given path when set (checked), else the
// newest of /usr/lib/postgresql/*/bin and PATH. The error is a *ToolError.
func findTool(ctx context.Context, name, given string, minMajor int) (path, version string, err error) {
	toolErr := func(err error) error { return &ToolError{Err: err, Tool: name, MinMajor: minMajor} }
	if given != "" {
		v, major, err := toolVersion(ctx, given)
		if err != nil {
			return "", "", toolErr(fmt.Errorf("%w: %s: %v", ErrToolMissing, name, err))
		}
		if major < minMajor {
			return "", "", toolErr(fmt.Errorf("%w: %s is version %d, older than the server (%d)", ErrToolMissing, given, major, minMajor))
		}
		return given, v, nil
	}
	var candidates []string
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	for _, d := range dirs {
		candidates = append(candidates, filepath.Join(d, name))
	}
	if p, err := exec.LookPath(name); err == nil {
		candidates = append(candidates, p)
	}
	type found struct {
		path, version string
		major         int
	}
	var best *found
	var seen []string
	for _, c := range candidates {
		if st, err := os.Stat(c); err != nil || st.IsDir() {
			continue
		}
		v, major, err := toolVersion(ctx, c)
		if err != nil {
			continue
		}
		seen = append(seen, fmt.Sprintf("%s (%d)", c, major))
		if major >= minMajor && (best == nil || major > best.major) {
			best = &found{c, v, major}
		}
	}
	if best == nil {
		if len(seen) == 0 {
			return "", "", toolErr(fmt.Errorf("%w: %s not found on PATH or under /usr/lib/postgresql/*/bin", ErrToolMissing, name))
		}
		sort.Strings(seen)
		return "", "", toolErr(fmt.Errorf("%w: %s must be version %d or newer for this server; found %s", ErrToolMissing, name, minMajor, strings.Join(seen, ", ")))
	}
	return best.path, best.version, nil
}

// siblingTool returns name beside bin (pg_restore next to the chosen
// pg_dump) when it exists, else "" so the caller searches.
func siblingTool(bin, name string) string {
	if bin == "" {
		return ""
	}
	p := filepath.Join(filepath.Dir(bin), name)
	if st, err := os.Stat(p); err == nil && !st.IsDir() {
		return p
	}
	return ""
}

// serverInfo identifies a database: its server and the cluster it lives in.
type serverInfo struct {
	Version          string
	Major            int
	Database         string
	SystemIdentifier string
}

func readServerInfo(ctx context.Context, conn *pgx.Conn) (serverInfo, error) {
	var s serverInfo
	var num int
	err := conn.QueryRow(ctx, `SELECT current_setting('server_version'), current_setting('server_version_num')::int,
		current_database(), (SELECT system_identifier FROM pg_control_system())::text`).Scan(&s.Version, &num, &s.Database, &s.SystemIdentifier)
	if err != nil {
		return s, fmt.Errorf("read server identity: %w", err)
	}
	s.Major = num / 10000
	return s, nil
}

// connectInfo connects to url and reads its identity.
func connectInfo(ctx context.Context, dbURL string) (serverInfo, error) {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return serverInfo{}, fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(ctx)
	return readServerInfo(ctx, conn)
}

// toolEnv returns the environment and connection argument for a libpq tool:
// pgx's own parameters (default_query_exec_mode, pool_*, ...), which libpq
// refuses, are dropped, and the password moves from the URL into
// PGPASSWORD, so it never shows in the process list.
func toolEnv(dbURL, appName string) (conn string, env []string) {
	env = append(os.Environ(), "PGAPPNAME="+appName, "LC_ALL=C")
	dbURL = dbconn.ForLibpq(dbURL)
	u, err := url.Parse(dbURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.User == nil {
		return dbURL, env
	}
	if pw, ok := u.User.Password(); ok {
		env = append(env, "PGPASSWORD="+pw)
		u.User = url.User(u.User.Username())
	}
	return u.String(), env
}

// tailBuffer keeps the last n bytes written: a tool's stderr for the error
// message, bounded whatever the tool prints.
type tailBuffer struct {
	mu  sync.Mutex
	n   int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.n {
		t.buf = t.buf[len(t.buf)-t.n:]
	}
	return len(p), nil
}

// lastError returns the tool's most telling line: the last "error:" line,
// else the last line, on one line.
func (t *tailBuffer) lastError() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := strings.Split(strings.TrimSpace(string(bytes.ToValidUTF8(t.buf, nil))), "\n")
	pick := ""
	for _, l := range lines {
		if strings.Contains(l, "error:") || strings.Contains(l, "FATAL:") || strings.Contains(l, "ERROR:") {
			pick = l
		}
	}
	if pick == "" && len(lines) > 0 {
		pick = lines[len(lines)-1]
	}
	return strings.Join(strings.Fields(pick), " ")
}

// toolError is a PostgreSQL tool that failed: how it exited and its most
// telling stderr line.
type toolError struct {
	exit string
	msg  string
}

func (e *toolError) Error() string { return "(" + e.exit + "): " + e.msg }

// runTool runs a PostgreSQL client tool with env (nil: the process's), its
// stderr kept for the error. A cancelled ctx is returned as ctx's error.
func runTool(ctx context.Context, env []string, bin string, args ...string) error {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	stderr := &tailBuffer{n: 8 << 10}
	cmd.Stderr = stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		msg := stderr.lastError()
		if msg == "" {
			msg = err.Error()
		}
		return &toolError{exit: exitText(err), msg: msg}
	}
	return nil
}

// decodeArchive turns a custom-format archive into a script thrown away:
// that reads and decodes every entry, table data included.
func decodeArchive(ctx context.Context, pgRestore, archive string) error {
	if err := runTool(ctx, nil, pgRestore, "--file=/dev/null", archive); err != nil {
		return fmt.Errorf("decode archive: pg_restore failed %w", err)
	}
	return nil
}
