package cmd

import (
	"context"
	"path/filepath"
)

// demoAudit archives the demo's years of audit rows: a first run without
// the guard (archives and verifies, deletes nothing), install-guard, a
// second run that deletes, then status, verify, a legal hold, a purge dry
// run and a search across archives and the live table.
func demoAudit(ctx context.Context, d *deps, env *demoEnv) error {
	store := "file://" + filepath.Join(env.Dir, "audit-archive")
	steps := [][]string{
		{"audit-archive", "run", "--storage", store},
		{"audit-archive", "install-guard", "--print"},
		{"audit-archive", "install-guard"},
		{"audit-archive", "run", "--storage", store},
		{"audit-archive", "status"},
		{"audit-archive", "verify", "--storage", store},
		{"audit-archive", "hold", monthsAgo(env, 90), "--reason", "demo: NLRB case 19-CA-000000"},
		{"audit-archive", "purge", "--storage", store},
	}
	for _, s := range steps {
		if err := expect(env.run(s...), 0); err != nil {
			return err
		}
	}
	return expect(env.run("audit-archive", "search", "--storage", store, "--from", monthsAgo(env, 48), "--to", monthsAgo(env, 46),
		"--action", "DELETE", "--format", "csv", "--out", filepath.Join(env.Dir, "audit-search.csv")), 0)
}

// monthsAgo is the month n months before the demo's clock, as YYYY-MM.
func monthsAgo(env *demoEnv, n int) string {
	return env.Now.AddDate(0, -n, 0).Format("2006-01")
}
