package integrity

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// UserCheckCategory is the category of user checks without one.
const UserCheckCategory = "user"

var idPattern = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)

// loadUserChecks reads every *.sql file of dir, sorted by name. A file
// starts with "-- key: value" header lines:
//
//	-- id: member_without_email
//	-- severity: info
//	-- description: live members without an email address
//	-- category: members        (optional; default "user")
//	SELECT id FROM members WHERE email IS NULL AND NOT is_deleted
//
// and the rest is one query whose first column is the offending record's
// id. It may use @now (timestamp, UTC) and @today (date).
func loadUserChecks(dir string) ([]*check, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.sql"))
	if err != nil {
		return nil, fmt.Errorf("integrity: user checks in %s: %w", dir, err)
	}
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("integrity: user checks: %w", err)
	}
	sort.Strings(files)
	var out []*check
	for _, f := range files {
		c, err := parseUserCheck(f)
		if err != nil {
			return nil, fmt.Errorf("integrity: user check %s: %w", f, err)
		}
		out = append(out, c)
	}
	return out, nil
}

func parseUserCheck(path string) (*check, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c := &check{source: path, category: UserCheckCategory}
	var body strings.Builder
	inHeader := true
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	line := 0
	for sc.Scan() {
		line++
		text := sc.Text()
		trimmed := strings.TrimSpace(text)
		if inHeader {
			if trimmed == "" {
				continue
			}
			if strings.HasPrefix(trimmed, "--") {
				key, val, ok := strings.Cut(strings.TrimSpace(strings.TrimPrefix(trimmed, "--")), ":")
				if !ok {
					continue // a plain comment
				}
				val = strings.TrimSpace(val)
				switch strings.ToLower(strings.TrimSpace(key)) {
				case "id":
					c.id = val
				case "severity":
					sev, err := ParseSeverity(val)
					if err != nil {
						return nil, fmt.Errorf("line %d: %w", line, err)
					}
					c.severity = sev
				case "description":
					c.description = val
				case "category":
					c.category = val
				}
				continue
			}
			inHeader = false
		}
		body.WriteString(text)
		body.WriteByte('\n')
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	sql := strings.TrimRight(strings.TrimSpace(body.String()), ";")
	switch {
	case !idPattern.MatchString(c.id):
		return nil, fmt.Errorf("header: id %q: want lowercase letters, digits and _ (e.g. -- id: member_without_email)", c.id)
	case c.severity == "":
		return nil, fmt.Errorf("header: severity missing (-- severity: critical|warning|info)")
	case c.description == "":
		return nil, fmt.Errorf("header: description missing (-- description: ...)")
	case !idPattern.MatchString(c.category):
		return nil, fmt.Errorf("header: category %q: want lowercase letters, digits and _", c.category)
	case sql == "":
		return nil, fmt.Errorf("no query after the header")
	case strings.Contains(sql, ";"):
		// One statement only: the query runs wrapped as a subquery.
		return nil, fmt.Errorf("more than one statement (a ';' before the end)")
	}
	c.query = func(*qctx) string { return sql }
	return c, nil
}
