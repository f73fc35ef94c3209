package integrity

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/pkg/fixture"
)

// A dry run counts and changes nothing; --apply changes exactly the
// planted rows, one audit_logs entry each (changed_by ip2a-ops, old and new
// values, changed_at in UTC), and leaves for a person what is not safe.
func TestRepairDryRunThenApply(t *testing.T) {
	t.Parallel()
	pool, _ := cloneDB(t, fixture.Newer)
	exec(t, pool,
		member(900001, "INACTIVE"),
		employment(900001, 900001, 1, true, "2020-01-01", "'2021-01-01'", "30"),
		// A future end date: not safe to flip, so left alone.
		employment(900002, 900001, 2, true, "2020-01-01", "'2099-01-01'", "30"),
		payment(900001, 900001, oldestPeriod, "DUE", "50", "0"),
		memberWith(900002, "T2", "B", "INACTIVE", "NULL", "true", "NULL"),
	)
	ctx := t.Context()
	auditCount := func() int64 {
		var n int64
		require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM audit_logs WHERE changed_by = 'ip2a-ops'`).Scan(&n))
		return n
	}
	before := auditCount()

	dry, err := Run(ctx, Options{Pool: pool, Repair: true})
	require.NoError(t, err)
	reps := map[string]RepairResult{}
	for _, r := range dry.Repairs {
		reps[r.ID] = r
	}
	require.Len(t, reps, 3)
	require.Equal(t, RepairResult{ID: "employment_current_with_end_date", Description: reps["employment_current_with_end_date"].Description,
		Rows: 1, SampleIDs: []string{"900001"}, Remaining: 1}, reps["employment_current_with_end_date"])
	require.Equal(t, int64(1), reps["dues_unpaid_not_overdue"].Rows)
	require.Equal(t, []string{"members:900002"}, reps["soft_delete_flag_without_timestamp"].SampleIDs)
	require.Equal(t, before, auditCount())
	var current bool
	require.NoError(t, pool.QueryRow(ctx, `SELECT is_current FROM member_employments WHERE id = 900001`).Scan(&current))
	require.True(t, current)
	// Findings of a dry run still fail the run.
	require.Len(t, dry.Failing(Warning), 4)

	applied, err := Run(ctx, Options{Pool: pool, Repair: true, Apply: true})
	require.NoError(t, err)
	require.Empty(t, applied.Errors())
	for _, r := range applied.Repairs {
		require.True(t, r.Applied, r.ID)
		require.Equal(t, r.Rows, r.AuditEntries, r.ID)
	}
	// The employment check kept one row a person must look at.
	failing := applied.Failing(Warning)
	require.Len(t, failing, 2)
	require.Equal(t, "employment_current_with_end_date", failing[0].ID)

	var status string
	var deletedAt, updatedAt time.Time
	require.NoError(t, pool.QueryRow(ctx, `SELECT is_current FROM member_employments WHERE id = 900001`).Scan(&current))
	require.False(t, current)
	require.NoError(t, pool.QueryRow(ctx, `SELECT is_current FROM member_employments WHERE id = 900002`).Scan(&current))
	require.True(t, current)
	require.NoError(t, pool.QueryRow(ctx, `SELECT status::text FROM dues_payments WHERE id = 900001`).Scan(&status))
	require.Equal(t, "OVERDUE", status)
	require.NoError(t, pool.QueryRow(ctx, `SELECT deleted_at FROM members WHERE id = 900002`).Scan(&deletedAt))
	require.Equal(t, time.Date(2024, 1, 2, 0, 0, 0, 0, time.UTC), deletedAt.UTC())
	require.NoError(t, pool.QueryRow(ctx, `SELECT updated_at FROM members WHERE id = 900002`).Scan(&updatedAt))
	require.WithinDuration(t, time.Now().UTC(), updatedAt.UTC(), time.Minute)

	type entry struct {
		Table, Record, Action, Old, New, Fields, Notes string
		At                                             time.Time
	}
	rows, err := pool.Query(ctx, `SELECT table_name, record_id, action, old_values::text, new_values::text, changed_fields::text, notes, changed_at
		FROM audit_logs WHERE changed_by = 'ip2a-ops' AND notes LIKE 'integrity-check%' ORDER BY table_name`)
	require.NoError(t, err)
	var all []entry
	for rows.Next() {
		var e entry
		if err := rows.Scan(&e.Table, &e.Record, &e.Action, &e.Old, &e.New, &e.Fields, &e.Notes, &e.At); err != nil {
			rows.Close()
			require.NoError(t, err)
		}
		all = append(all, e)
	}
	require.NoError(t, rows.Err())
	var got []entry
	for _, e := range all {
		require.WithinDuration(t, time.Now().UTC(), e.At.UTC(), time.Minute, "changed_at is UTC")
		require.Contains(t, e.Notes, "integrity-check repair")
		e.At, e.Notes = time.Time{}, ""
		got = append(got, e)
	}
	require.Equal(t, []entry{
		{Table: "dues_payments", Record: "900001", Action: "UPDATE", Old: `{"status": "DUE"}`, New: `{"status": "OVERDUE"}`, Fields: `["status"]`},
		{Table: "member_employments", Record: "900001", Action: "UPDATE", Old: `{"is_current": true}`, New: `{"is_current": false}`, Fields: `["is_current"]`},
		{Table: "members", Record: "900002", Action: "UPDATE", Old: `{"deleted_at": null}`, New: `{"deleted_at": "2024-01-02T00:00:00"}`, Fields: `["deleted_at"]`},
	}, got)
	require.Equal(t, before+3, auditCount())

	// The ledger summary carries the repairs.
	b, err := json.Marshal(applied)
	require.NoError(t, err)
	require.Contains(t, string(b), `"repairs":[{"id":"employment_current_with_end_date"`)

	// Nothing left to repair.
	again, err := Run(ctx, Options{Pool: pool, Repair: true, Apply: true})
	require.NoError(t, err)
	require.Len(t, again.Repairs, 1)
	require.Equal(t, int64(0), again.Repairs[0].Rows)
	require.Equal(t, before+3, auditCount())
}

// member_notes (newer generation) keeps its times as timestamptz and may
// have no updated_at: the soft-delete repair takes created_at then, and
// stamps updated_at with the instant itself, whatever the session's time
// zone, instead of a UTC wall-clock time read in that zone.
func TestSoftDeleteRepairOnTimestamptzTable(t *testing.T) {
	t.Parallel()
	pool, _ := cloneDB(t, fixture.Newer)
	ctx := t.Context()
	var db string
	require.NoError(t, pool.QueryRow(ctx, `SELECT current_database()`).Scan(&db))
	exec(t, pool,
		`ALTER DATABASE `+db+` SET TimeZone = 'America/Los_Angeles'`,
		`INSERT INTO member_notes (id, member_id, note_text, visibility, is_deleted, deleted_at, created_at, updated_at)
			VALUES (900001, (SELECT min(id) FROM members), 'planted', 'staff_only', true, NULL, '2024-03-01 10:00:00+00', NULL)`)
	pool.Reset() // new sessions take the database's time zone

	res, err := Run(ctx, Options{Pool: pool, Only: []string{"soft_delete"}, Repair: true, Apply: true})
	require.NoError(t, err)
	require.Len(t, res.Repairs, 1)
	require.Equal(t, int64(1), res.Repairs[0].Rows)
	require.Equal(t, []string{"member_notes:900001"}, res.Repairs[0].SampleIDs)

	var deletedAt, updatedAt time.Time
	require.NoError(t, pool.QueryRow(ctx, `SELECT deleted_at, updated_at FROM member_notes WHERE id = 900001`).Scan(&deletedAt, &updatedAt))
	require.Equal(t, time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC), deletedAt.UTC())
	require.WithinDuration(t, time.Now(), updatedAt, time.Minute)

	again, err := Run(ctx, Options{Pool: pool, Only: []string{"soft_delete"}})
	require.NoError(t, err)
	require.Empty(t, findings(again), "the repair left nothing behind")
}
