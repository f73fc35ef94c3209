package cmd

import (
	"context"
	"fmt"
)

// demoIntegrity plants a few anomalies in the demo data, then shows the
// check finding them, a repair dry run, the applied repair, and the
// comparison with the previous run.
func demoIntegrity(ctx context.Context, d *deps, env *demoEnv) error {
	plants := []struct{ what, sql string }{
		{"an expense charged to a grant but bought before the grant started (warning)",
			`INSERT INTO expenses (id, grant_id, item, quantity, unit_price, category, total_price, purchased_at, created_at, updated_at, is_deleted)
			 SELECT 900001, id, 'Demo: bought before the grant started', 1, 120, allowable_categories->>0, 120, start_date - 30,
			        now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC', false
			 FROM grants WHERE NOT is_deleted ORDER BY id LIMIT 1`},
		{"two paid dues bills of the oldest month turned back to DUE (warning, repairable)",
			`UPDATE dues_payments SET status = 'DUE', amount_paid = 0, payment_date = NULL, payment_method = NULL, receipt_number = NULL
			 WHERE id IN (SELECT id FROM dues_payments WHERE period_id = (SELECT min(id) FROM dues_periods) AND status = 'PAID' AND NOT is_deleted ORDER BY id LIMIT 2)`},
		{"a member flagged deleted without a deleted_at (warning, repairable)",
			`UPDATE members SET is_deleted = true, deleted_at = NULL WHERE id = (SELECT min(id) FROM members WHERE is_deleted)`},
	}
	fmt.Fprintln(d.stdout, "    planting anomalies:")
	for _, p := range plants {
		if _, err := env.Pool.Exec(ctx, p.sql); err != nil {
			return fmt.Errorf("plant %s: %w", p.what, err)
		}
		fmt.Fprintf(d.stdout, "    - %s\n", p.what)
	}
	if err := expect(env.run("integrity-check", "--list", "--only", "dues"), 0); err != nil {
		return err
	}
	// Warnings only: exit 0 with the default --fail-on critical (exit 3
	// with --fail-on warning, as a stricter cron line would use).
	if err := expect(env.run("integrity-check", "--sample", "5"), 0); err != nil {
		return err
	}
	if err := expect(env.run("integrity-check", "--only", "dues,soft_delete", "--repair"), 0); err != nil {
		return err
	}
	if err := expect(env.run("integrity-check", "--only", "dues,soft_delete", "--repair", "--apply"), 0); err != nil {
		return err
	}
	return expect(env.run("integrity-check", "--sample", "5", "--compare-last"), 0)
}
