package audit_test

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/pkg/audit"
	"github.com/ip2a/ip2a-ops/pkg/fixture"
)

// logTo sends e's Info log to a buffer.
func logTo(e *env) *bytes.Buffer {
	var buf bytes.Buffer
	e.cfg.Logger = slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	return &buf
}

// logMessages returns the values of key in the log lines saying msg.
func logMessages(t testing.TB, log *bytes.Buffer, msg, key string) []string {
	t.Helper()
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(log.Bytes()))
	for sc.Scan() {
		var l map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &l))
		if l["msg"] == msg {
			v, _ := l[key].(string)
			out = append(out, v)
		}
	}
	return out
}

// requireArchivesInOrder reads every stored month back: its lines are in
// id order, and every row lies in the month.
func requireArchivesInOrder(t testing.TB, e *env) {
	t.Helper()
	ctx := context.Background()
	for m, rec := range records(t, e) {
		rc, err := e.store.Get(ctx, rec.DataKey)
		require.NoError(t, err)
		zr, err := zstd.NewReader(rc)
		require.NoError(t, err)
		sc := bufio.NewScanner(zr)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		var last, n int64
		for sc.Scan() {
			var r struct {
				ID        int64     `json:"id"`
				ChangedAt time.Time `json:"changed_at"`
			}
			require.NoError(t, json.Unmarshal(sc.Bytes(), &r))
			require.Greater(t, r.ID, last, "%s: ids in order", m)
			require.Equal(t, m, audit.MonthOf(r.ChangedAt), "id %d", r.ID)
			last = r.ID
			n++
		}
		require.NoError(t, sc.Err())
		require.Equal(t, rec.RowCount, n, "%s", m)
		zr.Close()
		rc.Close()
	}
}

// When ids do not follow time (imported or backfilled rows), months go in
// groups: each group is read with one scan and deleted in one transaction
// through heap page ranges. Every row still ends up once, in its month's
// archive, in id order.
func TestRunIDsNotFollowingTime(t *testing.T) {
	t.Parallel()
	// 40 rows a month, 2021-12 .. 2023-10 eligible.
	var pairs []string
	for m := (audit.Month{Year: 2021, Month: time.December}); m.Before(audit.Month{Year: 2023, Month: time.November}); m = m.Next() {
		pairs = append(pairs, m.String())
	}
	tests := []struct {
		name     string
		passRows int64
		// The months of each delete transaction: a group's months in two
		// transactions of about as many rows, at the same time.
		units []string
	}{
		{name: "one group", units: []string{"2021-12..2022-11", "2022-12..2023-10"}},
		// Two months a group (the last one alone): a transaction a month.
		{name: "groups of two months", passRows: 80, units: pairs},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, fixture.Newer, 5, 40)
			ctx := t.Context()
			renumberIDs(t, e, true, 1)
			original := e.ids(t)
			eligible := e.count(t, `SELECT count(*) FROM audit_logs WHERE changed_at < '2023-11-01'`)
			_, err := audit.InstallGuard(ctx, e.cfg)
			require.NoError(t, err)
			log := logTo(e)

			res, err := audit.Run(ctx, audit.RunOptions{Config: e.cfg, PassRows: tt.passRows, DeleteBatch: 100})
			require.NoError(t, err)
			require.Len(t, res.Months, 23)
			require.Equal(t, 23, res.MonthsDeleted)
			require.Equal(t, eligible, res.RowsArchived)
			require.Equal(t, eligible, res.RowsDeleted)
			units := logMessages(t, log, "deleting archived rows", "months")
			slices.Sort(units)
			require.Equal(t, tt.units, units)
			require.Zero(t, e.count(t, `SELECT count(*) FROM audit_logs WHERE changed_at < '2023-11-01'`))
			requireConserved(t, e, e.store, original)
			requireArchivesInOrder(t, e)
			_, err = audit.Verify(ctx, audit.VerifyOptions{Config: e.cfg})
			require.NoError(t, err)
		})
	}
}

// A row written into a verified month's id range after the archive was
// made: the delete finds one row more than the archive holds, so that
// month is rolled back and left whole, and every other month is deleted,
// whether months go one by one (ids follow time) or in a group.
func TestDeleteMismatchLeavesOnlyThatMonth(t *testing.T) {
	t.Parallel()
	for _, shuffled := range []bool{false, true} {
		name := map[bool]string{false: "ids follow time", true: "ids shuffled"}[shuffled]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, fixture.Newer, 5, 30)
			ctx := t.Context()
			renumberIDs(t, e, shuffled, 2)
			res, err := audit.Run(ctx, audit.RunOptions{Config: e.cfg, KeepOnline: true})
			require.NoError(t, err)
			require.Len(t, res.Months, 23)

			victim := audit.Month{Year: 2022, Month: time.June}
			rec := records(t, e)[victim]
			var free int64
			require.NoError(t, e.pool.QueryRow(ctx, `SELECT min(id) + 1 FROM audit_logs WHERE id > $1::bigint AND id < $2::bigint`,
				rec.MinID, rec.MaxID).Scan(&free))
			_, err = e.pool.Exec(ctx, `INSERT INTO audit_logs (id, table_name, record_id, action, changed_by, changed_at)
VALUES ($1, 'members', '1', 'READ', 'late@example.org', '2022-06-15 12:00:00')`, free)
			require.NoError(t, err)
			original := e.ids(t)

			_, err = audit.InstallGuard(ctx, e.cfg)
			require.NoError(t, err)
			res, err = audit.Run(ctx, audit.RunOptions{Config: e.cfg, DeleteBatch: 50})
			require.ErrorIs(t, err, audit.ErrMismatch)
			require.Equal(t, 22, res.MonthsDeleted)
			require.Len(t, res.Problems, 1)
			// Found by the month's own transaction, or, in a group, by
			// counting the group's months again after the rollback.
			require.Regexp(t, `2022-06: (the delete of 2022-06 matched 31 rows|audit_logs holds 31 rows)`, res.Problems[0])
			require.Equal(t, rec.RowCount+1, e.count(t, `SELECT count(*) FROM audit_logs WHERE changed_at >= '2022-06-01' AND changed_at < '2022-07-01'`))
			require.Equal(t, audit.StateVerified, records(t, e)[victim].State)
			require.Equal(t, rec.RowCount+1, e.count(t, `SELECT count(*) FROM audit_logs WHERE changed_at < '2023-11-01'`))
			requireConserved(t, e, e.store, original)
		})
	}
}

//go:embed testdata/guard-v1.sql
var guardV1 string

// A guard installed by an earlier release (version 1) takes one month per
// statement: Run still deletes everything, month by month, and says how
// to upgrade; install-guard upgrades it.
func TestRunWithGuardV1(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fixture.Newer, 5, 20)
	ctx := t.Context()
	renumberIDs(t, e, true, 1)
	original := e.ids(t)
	conn, err := e.pool.Acquire(ctx)
	require.NoError(t, err)
	_, err = conn.Conn().PgConn().Exec(ctx, guardV1).ReadAll()
	conn.Release()
	require.NoError(t, err)
	st, err := audit.Guard(ctx, e.cfg)
	require.NoError(t, err)
	require.True(t, st.Installed, "missing: %v", st.Missing)
	require.Equal(t, 1, st.Version)
	log := logTo(e)

	res, err := audit.Run(ctx, audit.RunOptions{Config: e.cfg})
	require.NoError(t, err)
	require.Equal(t, 23, res.MonthsDeleted)
	deletes := logMessages(t, log, "deleting archived rows", "months")
	require.Len(t, deletes, 23)
	require.Equal(t, "2021-12", deletes[0])
	require.Contains(t, log.String(), "install-guard")
	require.Zero(t, e.count(t, `SELECT count(*) FROM audit_logs WHERE changed_at < '2023-11-01'`))
	requireConserved(t, e, e.store, original)

	st, err = audit.InstallGuard(ctx, e.cfg)
	require.NoError(t, err)
	require.Equal(t, 2, st.Version)
}
