package cmd

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
)

// demoGrantReport writes one grant's workbook for a quarter, then every
// active grant's workbook for last month, as the monthly cron line would.
func demoGrantReport(ctx context.Context, d *deps, env *demoEnv) error {
	number, err := demoGrant(ctx, env)
	if err != nil {
		return err
	}
	out := filepath.Join(env.Dir, "reports")
	if err := os.MkdirAll(out, 0o700); err != nil {
		return err
	}
	if err := expect(env.run("grant-report", "--grant", number, "--out", out), 0); err != nil {
		return err
	}
	return expect(env.run("grant-report", "--all-active", "--last-month", "--out", out), 0)
}

// demoGrant is the number of the grant the demo reports on.
func demoGrant(ctx context.Context, env *demoEnv) (string, error) {
	var number string
	if err := env.Pool.QueryRow(ctx, `SELECT grant_number FROM grants WHERE NOT is_deleted ORDER BY id LIMIT 1`).Scan(&number); err != nil {
		return "", fmt.Errorf("pick a demo grant: %w", err)
	}
	return number, nil
}
