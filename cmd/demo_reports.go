package cmd

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
)

// demoReports writes the membership report of the sample data's year so
// far and the dues report of its dues periods, as a person would.
func demoReports(ctx context.Context, d *deps, env *demoEnv) error {
	var first, last string
	if err := env.Pool.QueryRow(ctx, `SELECT to_char(min(make_date(period_year, period_month, 1)), 'YYYY-MM'),
		to_char(max(make_date(period_year, period_month, 1)), 'YYYY-MM') FROM dues_periods`).Scan(&first, &last); err != nil {
		return fmt.Errorf("pick the demo's dues periods: %w", err)
	}
	out := filepath.Join(env.Dir, "reports")
	if err := os.MkdirAll(out, 0o700); err != nil {
		return err
	}
	year := env.Now.UTC().Format("2006")
	if err := expect(env.run("membership-report", "--from", year+"-01-01", "--out", out), 0); err != nil {
		return err
	}
	return expect(env.run("dues-report", "--from", first, "--to", last, "--out", out), 0)
}
