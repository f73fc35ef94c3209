package scheduler

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Overlap is what an entry does when its slot comes while its job runs.
type Overlap string

const (
	// OverlapSkip (default): the slot is started anyway, the runner finds
	// the job busy and records a skipped run (exit 4), counted in metrics.
	OverlapSkip Overlap = "skip"
	// OverlapQueue: the slot waits for the running job and then runs; one
	// slot at most waits, later ones are skipped.
	OverlapQueue Overlap = "queue"
)

// CatchUp says whether a missed slot (daemon down, machine asleep) runs
// late. Only the latest missed slot is ever considered: never a flood.
type CatchUp struct {
	// Once: the latest missed slot runs however late it is.
	Once bool
	// Window: the latest missed slot runs if it is at most this late.
	// Zero (and not Once) means missed slots are not run.
	Window time.Duration
}

// Allows reports whether a slot this late may still run.
func (c CatchUp) Allows(late time.Duration) bool {
	return c.Once || (c.Window > 0 && late <= c.Window)
}

// String is the option's syntax: once, none or a duration.
func (c CatchUp) String() string {
	switch {
	case c.Once:
		return "once"
	case c.Window > 0:
		return formatDuration(c.Window)
	}
	return "none"
}

// Resolver names the ledger job a command line (the ip2a-ops arguments
// after the program name) runs, and that job's catch-up policy when its
// entry names none. An error rejects the line. The command line's own
// command tree resolves, so the crontab is read by the same parser as a
// person's command.
type Resolver func(args []string) (job string, catchUp CatchUp, err error)

// Entry is one scheduled command of a crontab.
type Entry struct {
	Line int    `json:"line"`
	Text string `json:"text"`
	// Spec is the schedule as written: five fields or a descriptor.
	Spec     string   `json:"spec"`
	Zone     string   `json:"zone"`
	Schedule Schedule `json:"-"`
	// Args are the ip2a-ops arguments after the program name.
	Args []string `json:"args"`
	// Env holds the crontab's NAME=value lines above the entry.
	Env map[string]string `json:"env,omitempty"`
	// Job is the ledger job the command runs (as the Resolver names it),
	// or the job= option.
	Job string `json:"job"`
	// Key identifies the entry in the claims table: name= or
	// job-<hash of zone, spec and args>, the same on every replica reading
	// the same line.
	Key     string  `json:"key"`
	Overlap Overlap `json:"overlap"`
	CatchUp CatchUp `json:"-"`
	// Enqueue is the enqueue= option: true hands the entry's slots to the
	// task queue (a worker runs them) instead of running them in the
	// daemon, false runs them in the daemon; nil leaves it to the daemon.
	Enqueue *bool `json:"enqueue,omitempty"`
}

// Crontab is a parsed crontab file.
type Crontab struct {
	Entries []Entry
}

// LineError is one rejected line.
type LineError struct {
	Line   int
	Text   string
	Reason string
}

func (e *LineError) Error() string {
	return fmt.Sprintf("line %d: %s: %s", e.Line, e.Reason, e.Text)
}

// ParseError lists every rejected line of a crontab.
type ParseError struct {
	Lines []*LineError
}

func (e *ParseError) Error() string {
	parts := make([]string, len(e.Lines))
	for i, l := range e.Lines {
		parts[i] = l.Error()
	}
	return "crontab: " + strings.Join(parts, "; ")
}

var (
	envLine   = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$`)
	optPrefix = "# ip2a-ops:"
	// Shell redirections cron lines end with; the daemon logs to its own stderr.
	redirect    = regexp.MustCompile(`^(\d?>>?|&>>?)(.*)$`)
	dupRedirect = regexp.MustCompile(`^\d?>&\d$`)
)

// Parse reads a crontab in the format system cron reads:
//
//   - blank lines and lines starting with # are ignored;
//   - CRON_TZ=Zone sets the zone of the entries below it (UTC until then);
//   - NAME=value lines set environment variables for the entries below;
//   - an entry is five cron fields or a descriptor (@yearly, @annually,
//     @monthly, @weekly, @daily, @midnight, @hourly; @every D is daemon-only,
//     meant for tests and the demo), then the command: ip2a-ops (or a path
//     ending in /ip2a-ops) and its arguments, with '...' and "..." quoting;
//   - trailing output redirections (>> /var/log/x.log 2>&1) are dropped;
//   - a trailing "# ip2a-ops: overlap=queue catchup=24h name=x job=y
//     enqueue=true" comment sets the entry's options (cron's shell ignores
//     it).
//
// Other shell syntax (pipes, ;, &&, $VAR, backquotes, cd) is rejected: the
// daemon runs the command in-process, not through a shell. Every bad line
// is reported in a *ParseError.
func Parse(r io.Reader, resolve Resolver) (*Crontab, error) {
	if resolve == nil {
		return nil, errors.New("crontab: no Resolver")
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	ct := &Crontab{}
	perr := &ParseError{}
	loc, zone := time.UTC, "UTC"
	env := map[string]string{}
	n := 0
	for sc.Scan() {
		n++
		raw := sc.Text()
		line := strings.TrimSpace(raw)
		if line == "" || (strings.HasPrefix(line, "#") && !strings.HasPrefix(line, optPrefix)) {
			continue
		}
		if strings.HasPrefix(line, optPrefix) {
			perr.Lines = append(perr.Lines, &LineError{n, line, "an options comment must end an entry's line"})
			continue
		}
		if m := envLine.FindStringSubmatch(line); m != nil {
			val := unquote(strings.TrimSpace(m[2]))
			if m[1] == "CRON_TZ" {
				l, err := time.LoadLocation(val)
				if err != nil || val == "" {
					perr.Lines = append(perr.Lines, &LineError{n, line, fmt.Sprintf("unknown time zone %q", val)})
					continue
				}
				loc, zone = l, val
				continue
			}
			env[m[1]] = val
			continue
		}
		e, err := parseEntry(line, loc, zone, resolve)
		if err != nil {
			perr.Lines = append(perr.Lines, &LineError{n, line, err.Error()})
			continue
		}
		e.Line = n
		if len(env) > 0 {
			e.Env = make(map[string]string, len(env))
			for k, v := range env {
				e.Env[k] = v
			}
		}
		ct.Entries = append(ct.Entries, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read crontab: %w", err)
	}
	seen := map[string]int{}
	for _, e := range ct.Entries {
		if prev, ok := seen[e.Key]; ok {
			perr.Lines = append(perr.Lines, &LineError{e.Line, e.Text, fmt.Sprintf("same entry as line %d (give one a name= option)", prev)})
		}
		seen[e.Key] = e.Line
	}
	if len(perr.Lines) > 0 {
		return ct, perr
	}
	return ct, nil
}

func parseEntry(line string, loc *time.Location, zone string, resolve Resolver) (Entry, error) {
	e := Entry{Text: line, Zone: zone, Overlap: OverlapSkip}
	body, opts := line, ""
	if i := strings.Index(line, optPrefix); i >= 0 {
		body, opts = strings.TrimSpace(line[:i]), strings.TrimSpace(line[i+len(optPrefix):])
	}
	fields := strings.Fields(body)
	var nspec int
	switch {
	case len(fields) == 0:
		return e, errors.New("empty entry")
	case fields[0] == "@every":
		nspec = 2
	case strings.HasPrefix(fields[0], "@"):
		nspec = 1
	default:
		nspec = 5
	}
	if len(fields) <= nspec {
		return e, errors.New("expected a schedule (five fields or @daily-style) and then a command")
	}
	// Cut the spec off the original text so quoting in the command survives.
	rest := body
	for i := 0; i < nspec; i++ {
		rest = strings.TrimLeft(rest, " \t")
		rest = rest[len(fields[i]):]
	}
	e.Spec = strings.Join(fields[:nspec], " ")
	sched, err := ParseSchedule(e.Spec, loc)
	if err != nil {
		return e, err
	}
	e.Schedule = sched
	if sched.Every() > 0 {
		e.Zone = "UTC"
	}
	ws, err := shellWords(strings.TrimSpace(rest))
	if err != nil {
		return e, err
	}
	ws = dropRedirections(ws)
	if len(ws) == 0 {
		return e, errors.New("no command")
	}
	if ws[0].s == "cd" {
		return e, errors.New("cd is not supported: the daemon runs jobs in-process; use absolute paths")
	}
	words := make([]string, len(ws))
	for i, w := range ws {
		if w.meta {
			return e, fmt.Errorf("shell syntax %q is not supported: one ip2a-ops command per line, output redirections only at the end", w.s)
		}
		words[i] = w.s
	}
	if words[0] != "ip2a-ops" && path.Base(words[0]) != "ip2a-ops" {
		return e, fmt.Errorf("command must be ip2a-ops (or a path ending in /ip2a-ops), not %q", words[0])
	}
	e.Args = words[1:]
	if e.Job, e.CatchUp, err = resolve(e.Args); err != nil {
		return e, err
	}
	name := ""
	for _, o := range strings.Fields(opts) {
		k, v, ok := strings.Cut(o, "=")
		if !ok {
			return e, fmt.Errorf("option %q: want key=value", o)
		}
		switch k {
		case "overlap":
			if v != string(OverlapSkip) && v != string(OverlapQueue) {
				return e, fmt.Errorf("overlap=%s: want skip or queue", v)
			}
			e.Overlap = Overlap(v)
		case "catchup":
			c, err := parseCatchUp(v)
			if err != nil {
				return e, err
			}
			e.CatchUp = c
		case "name":
			if !regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`).MatchString(v) {
				return e, fmt.Errorf("name=%s: use letters, digits, . _ - (at most 64)", v)
			}
			name = v
		case "job":
			if v == "" {
				return e, errors.New("job= needs a name")
			}
			e.Job = v
		case "enqueue":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return e, fmt.Errorf("enqueue=%s: want true or false", v)
			}
			e.Enqueue = &b
		default:
			return e, fmt.Errorf("unknown option %q (overlap, catchup, name, job, enqueue)", k)
		}
	}
	if name != "" {
		e.Key = name
	} else {
		h := sha256.Sum256([]byte(e.Zone + "\x00" + e.Spec + "\x00" + strings.Join(e.Args, "\x00")))
		e.Key = e.Job + "-" + hex.EncodeToString(h[:4])
	}
	return e, nil
}

func parseCatchUp(v string) (CatchUp, error) {
	switch v {
	case "once":
		return CatchUp{Once: true}, nil
	case "none", "0":
		return CatchUp{}, nil
	}
	d, err := parseDuration(v)
	if err != nil || d <= 0 {
		return CatchUp{}, fmt.Errorf("catchup=%s: want none, once or a duration such as 24h or 7d", v)
	}
	return CatchUp{Window: d}, nil
}

// parseDuration is time.ParseDuration plus a whole-day suffix (7d).
func parseDuration(v string) (time.Duration, error) {
	if strings.HasSuffix(v, "d") {
		var n int
		if _, err := fmt.Sscanf(v, "%dd", &n); err == nil && fmt.Sprintf("%dd", n) == v {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	}
	return time.ParseDuration(v)
}

func formatDuration(d time.Duration) string {
	if d%(24*time.Hour) == 0 && d >= 48*time.Hour {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	s := d.String()
	s = strings.TrimSuffix(s, "0s")
	return strings.TrimSuffix(s, "0m")
}

func unquote(s string) string {
	if len(s) >= 2 && (s[0] == '"' && s[len(s)-1] == '"' || s[0] == '\'' && s[len(s)-1] == '\'') {
		return s[1 : len(s)-1]
	}
	return s
}

// word is one shell word; meta says it holds unquoted shell operators.
type word struct {
	s    string
	meta bool
}

// shellWords splits a command line with sh's quoting: '...' literal,
// "..." with \ escapes, \ outside quotes. $ and backquotes outside single
// quotes are rejected because the daemon has no shell to expand them; so is
// an unescaped %, which cron turns into a newline. A # starting a word ends
// the line, as in sh.
func shellWords(s string) ([]word, error) {
	var words []word
	var cur strings.Builder
	inWord, meta := false, false
	expansion := func(c byte) error {
		return fmt.Errorf("shell expansion %q is not supported (no shell): write the value, or set it on a NAME=value line", string(c))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, word{cur.String(), meta})
				cur.Reset()
				inWord, meta = false, false
			}
		case c == '#' && !inWord:
			return words, nil
		case c == '%':
			return nil, errors.New(`cron turns an unescaped % into a newline: write \%`)
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, errors.New("unterminated ' quote")
			}
			if strings.Contains(s[i+1:i+1+j], "%") {
				return nil, errors.New(`cron turns an unescaped % into a newline: write \%`)
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				switch s[i] {
				case '$', '`':
					return nil, expansion(s[i])
				case '%':
					return nil, errors.New(`cron turns an unescaped % into a newline: write \%`)
				case '\\':
					if i+1 < len(s) {
						i++
					}
				}
				cur.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, errors.New(`unterminated " quote`)
			}
			inWord = true
		case c == '\\':
			if i+1 < len(s) {
				i++
				cur.WriteByte(s[i])
			}
			inWord = true
		case c == '$' || c == '`':
			return nil, expansion(c)
		default:
			if strings.IndexByte("|;&<>()", c) >= 0 {
				meta = true
			}
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, word{cur.String(), meta})
	}
	return words, nil
}

// dropRedirections removes trailing redirections such as
// ">> /var/log/ip2a-ops.log 2>&1" or ">/dev/null".
func dropRedirections(words []word) []word {
	for {
		n := len(words)
		if n == 0 {
			return words
		}
		last := words[n-1]
		if last.meta && dupRedirect.MatchString(last.s) {
			words = words[:n-1]
			continue
		}
		if m := redirect.FindStringSubmatch(last.s); last.meta && m != nil && m[2] != "" && !strings.HasPrefix(m[2], "&") {
			words = words[:n-1]
			continue
		}
		if n >= 2 && words[n-2].meta && !last.meta {
			if m := redirect.FindStringSubmatch(words[n-2].s); m != nil && m[2] == "" {
				words = words[:n-2]
				continue
			}
		}
		return words
	}
}
