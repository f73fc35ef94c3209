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
		{"a grant that ends before it starts (critical)",
			`INSERT INTO grants (id, name, grant_number, total_amount, start_date, end_date, created_at, updated_at)
			 VALUES (900001, 'Demo grant with swapped dates', 'DEMO-1', 5000, '2026-01-01', '2025-06-30', now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC')`},
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
	// A critical finding: exit 3.
	if err := expect(env.run("integrity-check", "--sample", "5"), 3); err != nil {
		return err
	}
	if err := expect(env.run("integrity-check", "--only", "dues,soft_delete", "--repair"), 0, 3); err != nil {
		return err
	}
	if err := expect(env.run("integrity-check", "--only", "dues,soft_delete", "--repair", "--apply"), 0, 3); err != nil {
		return err
	}
	return expect(env.run("integrity-check", "--sample", "5", "--compare-last"), 3)
}
