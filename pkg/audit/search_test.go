package audit_test

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/pkg/audit"
	"github.com/ip2a/ip2a-ops/pkg/fixture"
)

// Awkward values, the same in an archived month and in a live one.
const (
	oddActor    = "Zoë \"Q\" O'Brien, Esq."
	oddRecordID = `r-"7",8`
	oddNotes    = "first line, \"quoted\"\nsecond line é 日本"
	oddOld      = `{"notes": "a\nb \"c\", d", "name": "Zoë Ñúñez 日本語 🚀", "n": 1.5, "list": [1, null, true]}`
	oddNew      = `"just a string, with \"quotes\" and é"`
)

// searchEnv archives and deletes 2021-12 .. 2023-10, with one odd row in
// 2023-09 (archived) and one in 2023-12 (live); snap keeps every row as it
// was before the run.
func searchEnv(t *testing.T) (e *env, archivedOdd, liveOdd int64) {
	t.Helper()
	e = newEnv(t, fixture.Newer, 5, 20)
	ctx := t.Context()
	insert := `INSERT INTO audit_logs (table_name, record_id, action, old_values, new_values, changed_fields, changed_by, changed_at, ip_address, user_agent, notes)
VALUES ('members', $1, 'UPDATE', $2::jsonb, $3::jsonb, '["notes", "name"]', $4, $5::timestamp, '2001:db8::1', 'Mozilla/5.0 "x"', $6) RETURNING id::bigint`
	require.NoError(t, e.pool.QueryRow(ctx, insert, oddRecordID, oddOld, oddNew, oddActor, "2023-09-15 10:00:00.123456", oddNotes).Scan(&archivedOdd))
	require.NoError(t, e.pool.QueryRow(ctx, insert, oddRecordID, oddOld, oddNew, oddActor, "2023-12-15 10:00:00", oddNotes).Scan(&liveOdd))
	_, err := e.pool.Exec(ctx, `CREATE TABLE snap AS SELECT * FROM audit_logs`)
	require.NoError(t, err)
	_, err = audit.InstallGuard(ctx, e.cfg)
	require.NoError(t, err)
	res, err := audit.Run(ctx, audit.RunOptions{Config: e.cfg})
	require.NoError(t, err)
	require.Equal(t, 23, res.MonthsDeleted)
	return e, archivedOdd, liveOdd
}

func TestSearch(t *testing.T) {
	t.Parallel()
	e, archivedOdd, liveOdd := searchEnv(t)
	ctx := t.Context()
	day := func(s string) time.Time {
		v, err := time.Parse(time.DateTime, s)
		require.NoError(t, err)
		return v
	}
	// A record id and actor that occur on both sides of the boundary.
	var rid, actor string
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT record_id FROM snap WHERE table_name = 'members' AND record_id IS NOT NULL
  AND changed_at >= '2023-08-01' AND changed_at < '2024-02-01' GROUP BY record_id
  HAVING bool_or(changed_at < '2023-11-01') AND bool_or(changed_at >= '2023-11-01') ORDER BY count(*) DESC, 1 LIMIT 1`).Scan(&rid))
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT changed_by FROM snap WHERE changed_at >= '2023-08-01' AND changed_at < '2024-02-01'
  GROUP BY 1 HAVING bool_or(changed_at < '2023-11-01') AND bool_or(changed_at >= '2023-11-01') ORDER BY count(*), 1 LIMIT 1`).Scan(&actor))

	tests := []struct {
		name                               string
		from, to                           string
		table, recordID, changedBy, action string
	}{
		{name: "everything across the boundary", from: "2023-08-01 00:00:00", to: "2024-02-01 00:00:00"},
		{name: "bounds inside months", from: "2023-09-15 10:00:00.123456", to: "2023-12-15 10:00:00"},
		{name: "table", from: "2023-08-01 00:00:00", to: "2024-02-01 00:00:00", table: "students"},
		{name: "record id", from: "2023-08-01 00:00:00", to: "2024-02-01 00:00:00", table: "members", recordID: rid},
		{name: "changed by", from: "2023-08-01 00:00:00", to: "2024-02-01 00:00:00", changedBy: actor},
		{name: "action", from: "2023-08-01 00:00:00", to: "2024-02-01 00:00:00", action: "DELETE"},
		{name: "odd values", from: "2021-01-01 00:00:00", to: "2027-01-01 00:00:00", recordID: oddRecordID, changedBy: oddActor},
		{name: "all filters", from: "2021-01-01 00:00:00", to: "2027-01-01 00:00:00", table: "members", recordID: oddRecordID, changedBy: oddActor, action: "UPDATE"},
		{name: "nothing matches", from: "2023-08-01 00:00:00", to: "2024-02-01 00:00:00", action: "NO_SUCH"},
		{name: "archives only", from: "2022-01-01 00:00:00", to: "2022-03-01 00:00:00", table: "members"},
		{name: "live only", from: "2024-01-01 00:00:00", to: "2024-03-01 00:00:00", table: "members"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var archived, live []int64
			rows, err := e.pool.Query(ctx, `SELECT id::bigint, changed_at < '2023-11-01' FROM snap
WHERE changed_at >= $1::timestamp AND changed_at < $2::timestamp AND ($3 = '' OR table_name = $3) AND ($4 = '' OR record_id = $4)
  AND ($5 = '' OR changed_by = $5) AND ($6 = '' OR action = $6) ORDER BY id`, tt.from, tt.to, tt.table, tt.recordID, tt.changedBy, tt.action)
			require.NoError(t, err)
			var id int64
			var old bool
			_, err = pgx.ForEachRow(rows, []any{&id, &old}, func() error {
				if old {
					archived = append(archived, id)
				} else {
					live = append(live, id)
				}
				return nil
			})
			require.NoError(t, err)
			want := slices.Sorted(slices.Values(append(slices.Clone(archived), live...)))

			var out bytes.Buffer
			res, err := audit.Search(ctx, audit.SearchOptions{Config: e.cfg, From: day(tt.from), To: day(tt.to),
				Table: tt.table, RecordID: tt.recordID, ChangedBy: tt.changedBy, Action: tt.action, Out: &out})
			require.NoError(t, err)
			got := jsonlIDs(t, out.Bytes())
			require.Len(t, got, len(want), "rows written")
			sorted := slices.Sorted(slices.Values(got))
			require.Equal(t, len(sorted), len(slices.Compact(slices.Clone(sorted))), "a row appeared twice")
			require.Equal(t, nilIfEmpty(want), nilIfEmpty(sorted))
			require.Equal(t, int64(len(archived)), res.FromArchives)
			require.Equal(t, int64(len(live)), res.FromLive)
			require.Equal(t, res.FromArchives+res.FromLive, res.Rows)
		})
	}

	// The odd rows come back as stored, from the archive and from the table.
	var out bytes.Buffer
	_, err := audit.Search(ctx, audit.SearchOptions{Config: e.cfg, From: day("2021-01-01 00:00:00"), To: day("2027-01-01 00:00:00"),
		ChangedBy: oddActor, Out: &out})
	require.NoError(t, err)
	lines := bytes.Split(bytes.TrimSuffix(out.Bytes(), []byte("\n")), []byte("\n"))
	require.Len(t, lines, 2)
	wantAt := map[int64]string{archivedOdd: "2023-09-15T10:00:00.123456Z", liveOdd: "2023-12-15T10:00:00.000000Z"}
	for _, line := range lines {
		var r map[string]any
		require.NoError(t, json.Unmarshal(line, &r), "%s", line)
		id := int64(r["id"].(float64))
		require.Equal(t, wantAt[id], r["changed_at"])
		require.Equal(t, oddNotes, r["notes"])
		require.Equal(t, oddActor, r["changed_by"])
		require.Equal(t, oddRecordID, r["record_id"])
		require.Equal(t, jsonValue(t, oddOld), r["old_values"])
		require.Equal(t, jsonValue(t, oddNew), r["new_values"])
		require.Equal(t, []any{"notes", "name"}, r["changed_fields"])
	}
}

func TestSearchCSV(t *testing.T) {
	t.Parallel()
	e, archivedOdd, liveOdd := searchEnv(t)
	ctx := t.Context()
	var header []string
	rows, err := e.pool.Query(ctx, `SELECT attname FROM pg_attribute WHERE attrelid = 'audit_logs'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`)
	require.NoError(t, err)
	header, err = pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	col := func(name string) int { return slices.Index(header, name) }

	search := func(from, to string) map[int64][]string {
		t.Helper()
		var out bytes.Buffer
		f, _ := time.Parse(time.DateOnly, from)
		u, _ := time.Parse(time.DateOnly, to)
		res, err := audit.Search(ctx, audit.SearchOptions{Config: e.cfg, From: f, To: u, Format: "csv", Out: &out})
		require.NoError(t, err)
		recs, err := csv.NewReader(&out).ReadAll()
		require.NoError(t, err)
		require.Equal(t, header, recs[0])
		require.Len(t, recs, int(res.Rows)+1)
		byID := map[int64][]string{}
		for _, r := range recs[1:] {
			var id int64
			_, err := fmt.Sscan(r[col("id")], &id)
			require.NoError(t, err)
			require.NotContains(t, byID, id, "row %d twice", id)
			byID[id] = r
		}
		require.Equal(t, e.count(t, `SELECT count(*) FROM snap WHERE changed_at >= $1::date AND changed_at < $2::date`, from, to), int64(len(byID)))
		return byID
	}
	mixed := search("2023-09-01", "2024-01-01")
	liveOnly := search("2023-12-01", "2024-01-01")
	a, l := mixed[archivedOdd], mixed[liveOdd]
	require.NotNil(t, a)
	require.NotNil(t, l)

	// The same values give the same cells from an archive and from the
	// table, whichever source the search read first.
	for i, name := range header {
		if name == "id" || name == "changed_at" {
			continue
		}
		require.Equal(t, a[i], l[i], "column %s: archive and table disagree", name)
		require.Equal(t, liveOnly[liveOdd][i], l[i], "column %s: depends on the range searched", name)
	}
	require.Equal(t, "2023-09-15T10:00:00.123456Z", a[col("changed_at")])
	require.Equal(t, oddNotes, a[col("notes")])
	require.Equal(t, oddActor, a[col("changed_by")])
	require.Equal(t, oddRecordID, a[col("record_id")])
	require.Equal(t, "Mozilla/5.0 \"x\"", a[col("user_agent")])
	// jsonb cells hold JSON, so a JSON string stays distinguishable.
	for _, c := range []string{"old_values", "new_values", "changed_fields"} {
		require.True(t, json.Valid([]byte(a[col(c)])), "%s cell %q is not JSON", c, a[col(c)])
	}
	require.Equal(t, jsonValue(t, oddOld), jsonValue(t, a[col("old_values")]))
	require.Equal(t, jsonValue(t, oddNew), jsonValue(t, a[col("new_values")]))
	// NULL is an empty cell.
	for id, r := range mixed {
		if id != archivedOdd && id != liveOdd && r[col("old_values")] == "" {
			return
		}
	}
	t.Fatal("no row with a NULL old_values came out as an empty cell")
}

func TestRestore(t *testing.T) {
	t.Parallel()
	e, archivedOdd, _ := searchEnv(t)
	ctx := t.Context()
	month := audit.Month{Year: 2023, Month: 9}
	inMonth := `changed_at >= '2023-09-01' AND changed_at < '2023-10-01'`
	want := e.count(t, `SELECT count(*) FROM snap WHERE `+inMonth)
	total := e.count(t, `SELECT count(*) FROM audit_logs`)

	res, err := audit.Restore(ctx, audit.RestoreOptions{Config: e.cfg, Month: month, Into: "restored_2023_09"})
	require.NoError(t, err)
	require.True(t, res.Created)
	require.Equal(t, want, res.Rows)
	// Every column of every row, exactly: both differences are empty.
	require.Zero(t, e.count(t, `SELECT count(*) FROM (SELECT * FROM snap WHERE `+inMonth+` EXCEPT ALL SELECT * FROM restored_2023_09) d`))
	require.Zero(t, e.count(t, `SELECT count(*) FROM (SELECT * FROM restored_2023_09 EXCEPT ALL SELECT * FROM snap WHERE `+inMonth+`) d`))
	require.Equal(t, int64(1), e.count(t, `SELECT count(*) FROM restored_2023_09 WHERE id = $1 AND notes = $2 AND new_values = $3::jsonb`, archivedOdd, oddNotes, oddNew))
	require.Equal(t, total, e.count(t, `SELECT count(*) FROM audit_logs`), "audit_logs untouched")

	// Into a schema-qualified table; again into the same table is refused.
	_, err = e.pool.Exec(ctx, `CREATE SCHEMA legal`)
	require.NoError(t, err)
	res, err = audit.Restore(ctx, audit.RestoreOptions{Config: e.cfg, Month: month, Into: "legal.case_19"})
	require.NoError(t, err)
	require.Equal(t, want, res.Rows)
	require.Equal(t, want, e.count(t, `SELECT count(*) FROM legal.case_19`))
	_, err = audit.Restore(ctx, audit.RestoreOptions{Config: e.cfg, Month: month, Into: "legal.case_19"})
	require.ErrorContains(t, err, "already holds ids")
	require.Equal(t, want, e.count(t, `SELECT count(*) FROM legal.case_19`))

	for _, tt := range []struct {
		name  string
		month audit.Month
		into  string
		is    error
		msg   string
	}{
		{name: "audit_logs itself", month: month, into: "audit_logs", msg: "not audit_logs itself"},
		{name: "audit_logs schema-qualified", month: month, into: "public.audit_logs", msg: "not audit_logs itself"},
		{name: "month still online", month: audit.Month{Year: 2024, Month: 5}, into: "r_2024_05", is: audit.ErrNotArchived},
		{name: "month never had rows", month: audit.Month{Year: 2010, Month: 1}, into: "r_2010_01", is: audit.ErrNotArchived},
		{name: "no month", into: "r_none", msg: "Month"},
		{name: "bad table name", month: month, into: "Robert'); DROP TABLE snap;--", msg: "Into"},
	} {
		_, err := audit.Restore(ctx, audit.RestoreOptions{Config: e.cfg, Month: tt.month, Into: tt.into})
		require.Error(t, err, tt.name)
		if tt.is != nil {
			require.ErrorIs(t, err, tt.is, tt.name)
		} else {
			require.ErrorContains(t, err, tt.msg, tt.name)
		}
	}
	require.Equal(t, total, e.count(t, `SELECT count(*) FROM audit_logs`))
	require.Zero(t, e.count(t, `SELECT count(*) FROM pg_class WHERE relname IN ('r_2024_05', 'r_2010_01', 'r_none')`))
}

func jsonlIDs(t testing.TB, b []byte) []int64 {
	t.Helper()
	var ids []int64
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var r struct {
			ID *int64 `json:"id"`
		}
		require.NoError(t, json.Unmarshal(sc.Bytes(), &r), "%s", sc.Bytes())
		require.NotNil(t, r.ID)
		ids = append(ids, *r.ID)
	}
	require.NoError(t, sc.Err())
	return ids
}

func jsonValue(t testing.TB, s string) any {
	t.Helper()
	var v any
	require.NoError(t, json.Unmarshal([]byte(s), &v), "%s", s)
	return v
}

func nilIfEmpty(s []int64) []int64 {
	if len(s) == 0 {
		return nil
	}
	return s
}
