package integrity

import (
	"context"
	"fmt"
	"sort"

	"github.com/ip2a/ip2a-ops/pkg/dbschema"
)

// schemaInfo is what the checks need to know of the app's schema: tables,
// columns and enum labels (pkg/dbschema) plus functions and triggers, read
// inside the snapshot so the checks and the schema they were built for agree.
type schemaInfo struct {
	*dbschema.Info
	functions map[string]bool
	tables    []string
	// triggers: table -> trigger name -> enabled (tgenabled <> 'D').
	triggers map[string]map[string]bool
}

func inspect(ctx context.Context, q dbschema.Querier, schema string) (*schemaInfo, error) {
	in, err := dbschema.Inspect(ctx, q, schema)
	if err != nil {
		return nil, err
	}
	s := &schemaInfo{Info: in, functions: map[string]bool{}, triggers: map[string]map[string]bool{}}
	rows, err := q.Query(ctx, `SELECT 'f', p.proname::text, '', true FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = $1
		UNION ALL
		SELECT 'r', c.relname::text, '', true FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')
		UNION ALL
		SELECT 't', t.tgname::text, c.relname::text, t.tgenabled <> 'D' FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
		JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND NOT t.tgisinternal`, schema)
	if err != nil {
		return nil, fmt.Errorf("inspect triggers: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var kind, name, table string
		var enabled bool
		if err := rows.Scan(&kind, &name, &table, &enabled); err != nil {
			return nil, fmt.Errorf("inspect triggers: %w", err)
		}
		switch kind {
		case "f":
			s.functions[name] = true
			continue
		case "r":
			s.tables = append(s.tables, name)
			continue
		}
		if s.triggers[table] == nil {
			s.triggers[table] = map[string]bool{}
		}
		s.triggers[table][name] = enabled
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("inspect triggers: %w", err)
	}
	return s, nil
}

// tablesWith returns, sorted, every table that has all of cols.
func (s *schemaInfo) tablesWith(cols ...string) []string {
	var out []string
	for _, t := range s.tables {
		if s.HasColumns(t, cols...) {
			out = append(out, t)
		}
	}
	sort.Strings(out)
	return out
}
