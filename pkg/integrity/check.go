package integrity

import (
	"fmt"
	"slices"
	"strings"
)

// need is a table and the columns of it a check reads.
type need struct {
	table string
	cols  []string
}

// label is an enum label a check compares with, looked up (ignoring case)
// among the labels stored in pg_enum, because the app stores Python enum
// names whose case varies by type.
type label struct{ typ, name string }

// check is one entry of the catalogue.
type check struct {
	id, category, description string
	severity                  Severity
	source                    string // "" = builtin
	needs                     []need
	labels                    []label
	// applies returns why the check does not apply to this schema ("" when
	// it does), for requirements needs and labels cannot express.
	applies func(s *schemaInfo) string
	// query returns SQL whose first column is the offending record's id,
	// one row per offending record. It may use @now (timestamp, UTC),
	// @today (date) and the helpers of qctx.
	query  func(q *qctx) string
	files  bool
	repair *repair
}

func (c *check) info() CheckInfo {
	src := c.source
	if src == "" {
		src = "builtin"
	}
	ci := CheckInfo{ID: c.id, Category: c.category, Severity: c.severity, Description: c.description, Source: src, Files: c.files}
	if c.repair != nil {
		ci.Repair = c.repair.description
	}
	return ci
}

// skipReason says why c cannot run on s, or "".
func (c *check) skipReason(s *schemaInfo) string {
	var why []string
	for _, n := range c.needs {
		if m := s.Missing(n.table, n.cols...); m != "" {
			why = append(why, m)
		}
	}
	for _, l := range c.labels {
		if s.EnumLabels(l.typ) == nil {
			if w := "enum type " + l.typ + " does not exist"; !slices.Contains(why, w) {
				why = append(why, w)
			}
		} else if _, ok := s.Label(l.typ, l.name); !ok {
			why = append(why, fmt.Sprintf("enum %s has no label %s", l.typ, l.name))
		}
	}
	if len(why) == 0 && c.applies != nil {
		if w := c.applies(s); w != "" {
			why = append(why, w)
		}
	}
	return strings.Join(why, "; ")
}

// qctx builds a check's SQL for one schema and one run.
type qctx struct {
	s    *schemaInfo
	opts Options
	prog *checkProgress
}

// L returns the stored label of enum typ matching name as a SQL literal.
// Checks declare the labels they use, so a missing one skipped the check
// before its query is built.
func (q *qctx) L(typ, name string) string {
	l, _ := q.s.Label(typ, name)
	return quoteLiteral(l)
}

// ident quotes an identifier.
func ident(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// notDeleted is "AND NOT alias.is_deleted" when table has the column, so
// checks ignore soft-deleted rows on the tables that have them.
func (q *qctx) notDeleted(table, alias string) string {
	if q.s.HasColumns(table, "is_deleted") {
		return " AND NOT " + alias + ".is_deleted"
	}
	return ""
}

// allChecks returns the built-in checks followed by userDir's.
func allChecks(userDir string) ([]*check, error) {
	checks := builtinChecks()
	if userDir == "" {
		return checks, nil
	}
	user, err := loadUserChecks(userDir)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, c := range checks {
		seen[c.id] = true
	}
	for _, u := range user {
		if seen[u.id] {
			return nil, fmt.Errorf("integrity: user check %s (%s): id already used", u.id, u.source)
		}
		seen[u.id] = true
		checks = append(checks, u)
	}
	return checks, nil
}
