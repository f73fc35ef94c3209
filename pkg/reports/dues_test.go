package reports

import (
	"errors"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/xuri/excelize/v2"

	"github.com/ip2a/ip2a-ops/internal/fixturetest"
	"github.com/ip2a/ip2a-ops/internal/pgtest"
	"github.com/ip2a/ip2a-ops/internal/readertest"
	"github.com/ip2a/ip2a-ops/pkg/fixture"
)

// TestDuesReportMatchesSQL writes the dues report of every fixture period
// on both generations and checks each total, to the cent, against SQL
// written here another way (CASE sums over the payments, in numeric).
func TestDuesReportMatchesSQL(t *testing.T) {
	t.Parallel()
	for _, gen := range []fixture.Generation{fixture.Newer, fixture.Older} {
		t.Run(string(gen), func(t *testing.T) {
			t.Parallel()
			url := fixturetest.NewTestDB(t, gen, fixture.Options{Seed: 5, Now: frozenNow, SoftDeletedPercent: 10, Members: 300})
			pool := pgtest.Pool(t, url)
			// A row paid short while PAID, so "other difference" is not zero,
			// and a pending adjustment.
			mustExec(t, pool, `UPDATE dues_payments SET amount_paid = amount_paid - 0.01 WHERE id = (SELECT min(id) FROM dues_payments
				WHERE status = 'PAID' AND amount_paid > 0 AND NOT is_deleted AND deleted_at IS NULL)`)
			mustExec(t, pool, `INSERT INTO dues_adjustments (member_id, payment_id, adjustment_type, amount, reason, status, created_at, updated_at)
				SELECT member_id, id, 'HARDSHIP', 12.34, 'test', 'PENDING', now(), now() FROM dues_payments
				WHERE NOT is_deleted AND deleted_at IS NULL ORDER BY id DESC LIMIT 1`)
			from, to := day("2026-01-01"), day("2026-12-01")
			dir := t.TempDir()
			res, err := DuesReport(t.Context(), DuesOptions{Output: Output{Pool: pool, Out: dir, Now: frozenNow, ToolVersion: "test", Format: FormatBoth}, From: from, To: to})
			require.NoError(t, err)
			f, err := excelize.OpenFile(res.Files[0].Path)
			require.NoError(t, err)
			defer f.Close()
			sv := summaryValues(t, f)

			const live = ` FROM dues_payments p JOIN dues_periods d ON d.id = p.period_id
				WHERE p.is_deleted = false AND p.deleted_at IS NULL AND d.period_year = 2026`
			var billed, paid, outstanding, waived, written, rows int64
			require.NoError(t, pool.QueryRow(t.Context(), `SELECT (sum(amount_due)*100)::bigint, (sum(amount_paid)*100)::bigint,
				(sum(CASE WHEN status::text IN ('PENDING','DUE','PARTIAL','OVERDUE') THEN amount_due - amount_paid ELSE 0 END)*100)::bigint,
				(sum(CASE WHEN status::text = 'WAIVED' THEN amount_due - amount_paid ELSE 0 END)*100)::bigint,
				(sum(CASE WHEN status::text = 'WRITTEN_OFF' THEN amount_due - amount_paid ELSE 0 END)*100)::bigint, count(*)`+live).
				Scan(&billed, &paid, &outstanding, &waived, &written, &rows))
			require.Equal(t, billed, res.BilledCents)
			require.Equal(t, paid, res.PaidCents)
			require.Equal(t, outstanding, res.OutstandingCents)
			require.Equal(t, waived, res.WaivedCents)
			require.Equal(t, written, res.WrittenOffCents)
			require.Equal(t, int64(1), res.OtherDifferenceCents, "the row paid a cent short")
			require.Equal(t, rows, res.Payments)
			text := pdfText(t, res.Files[1].Path)
			require.Empty(t, readertest.Overprinted(readertest.Words(t, res.Files[1].Path)), "text printed over text")
			for label, want := range map[string]int64{"Billed": billed, "Paid": paid, "Outstanding": outstanding, "Waived": waived,
				"Written off": written, "Other difference (paid rows)": 1} {
				require.Equal(t, want, cents(t, sv[label]), label)
				require.Regexp(t, `(?m)^\s*`+regexp.QuoteMeta(label)+`\s+`+regexp.QuoteMeta(formatCents(want))+`\s*$`, text, "PDF: %s", label)
			}
			// The PDF's total rows (by period, by classification) carry the same sums.
			require.Regexp(t, `(?m)^\s*Total\s+`+intText(rows)+`\s+`+regexp.QuoteMeta(formatCents(billed))+`\s+`+regexp.QuoteMeta(formatCents(paid)), text)
			// The period and classification sheets add up to the same cents.
			for sh, col := range map[string]int{DuesSheetPeriods: 2, DuesSheetClasses: 3} {
				sum, n := columnCents(t, f, sh, col)
				require.Equal(t, 2*billed, sum, "%s: rows plus the total row", sh)
				require.Greater(t, n, 2)
			}
			// Every payment method the database defines is listed; the paid
			// amounts add up.
			labels := scalar[[]string](t, pool, `SELECT array_agg(enumlabel::text ORDER BY enumsortorder) FROM pg_enum e
				JOIN pg_type t ON t.oid = e.enumtypid WHERE t.typname = 'duespaymentmethod'`)
			methods, err := f.GetRows(DuesSheetMethods, excelizeRawOpts())
			require.NoError(t, err)
			var listed []string
			for _, r := range methods[1:] {
				if len(r) > 1 && r[1] != "" {
					listed = append(listed, r[1])
				}
			}
			require.Equal(t, labels, listed)
			sum, _ := columnCents(t, f, DuesSheetMethods, 3)
			require.Equal(t, 2*paid, sum)
			if gen == fixture.Newer {
				require.Contains(t, listed, "stripe_card")
				stripe := scalar[int64](t, pool, `SELECT (sum(amount_paid)*100)::bigint`+live+` AND p.payment_method::text LIKE 'stripe%'`)
				require.Positive(t, stripe)
				require.Empty(t, res.Notes)
			} else {
				require.NotContains(t, listed, "stripe_card")
				require.Contains(t, res.Notes, noStripeNote)
			}

			// Overdue: open rows past the grace period, counted to Now.
			var overdueMembers, overdueCents int64
			require.NoError(t, pool.QueryRow(t.Context(), `SELECT count(DISTINCT member_id), coalesce((sum(amount_due - amount_paid)*100)::bigint, 0)`+live+`
				AND status::text IN ('PENDING','DUE','PARTIAL','OVERDUE') AND amount_due > amount_paid AND d.grace_period_end < $1::date`,
				frozenNow).Scan(&overdueMembers, &overdueCents))
			require.Positive(t, overdueMembers)
			require.Equal(t, overdueMembers, res.OverdueMembers)
			require.Equal(t, overdueCents, res.OverdueCents)
			require.Equal(t, int(overdueMembers)+3, sheetRows(t, f, DuesSheetOverdue), "header, members, blank, total")

			require.Equal(t, int64(1), res.PendingAdjustments)
			require.Equal(t, int64(1234), res.PendingAdjustmentsCents)

			// Months without periods are an error, not an empty report.
			_, err = DuesReport(t.Context(), DuesOptions{Output: Output{Pool: pool, Out: dir, Now: frozenNow}, From: day("2001-01-01"), To: day("2001-02-01")})
			require.True(t, errors.Is(err, ErrNoPeriods), "%v", err)
		})
	}
}
