package audit

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/internal/pgtest"
)

// rowToJSONLines is the reference: the lines row_to_json writes for the
// month, as the export wrote them before it built them in Go.
func rowToJSONLines(t *testing.T, pool *pgxpool.Pool, cols []Column, p monthPlan) []byte {
	t.Helper()
	rows, err := pool.Query(t.Context(), `SELECT row_to_json(r)::text FROM (SELECT `+selectList(cols)+` FROM audit_logs
WHERE id >= $1::bigint AND id <= $2::bigint AND changed_at >= $3::timestamp AND changed_at < $4::timestamp) r ORDER BY r.id`,
		p.MinID, p.MaxID, pgTimestamp(p.Month.Start()), pgTimestamp(p.Month.End()))
	require.NoError(t, err)
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return []byte(strings.Join(lines, "\n") + "\n")
}

// TestCopyRowsMatchesRowToJSON pins byte compatibility with archives
// written by row_to_json: the Go encoder must write the same bytes for
// every value the server can hold, and a column type it does not know must
// send the export back to row_to_json.
func TestCopyRowsMatchesRowToJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		extra  string // extra column definition
		native bool
	}{
		{name: "native types", extra: "flag boolean, small smallint, big bigint, at timestamptz, doc json", native: true},
		{name: "unknown type falls back to row_to_json", extra: "flag boolean, amount numeric, day date", native: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			pool, err := pgxpool.New(ctx, pgtest.NewDatabase(t))
			require.NoError(t, err)
			t.Cleanup(pool.Close)
			// A session zone other than UTC must not shift timestamptz.
			_, err = pool.Exec(ctx, `DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET timezone = %L', current_database(), 'America/New_York'); END $$`)
			require.NoError(t, err)
			pool.Reset()
			_, err = pool.Exec(ctx, `CREATE TABLE audit_logs (id serial PRIMARY KEY, table_name varchar(100) NOT NULL, code char(4),
  old_values jsonb, notes text, changed_at timestamp NOT NULL, `+tt.extra+`)`)
			require.NoError(t, err)
			strs := []string{"plain", `quote " and \ backslash`, "ctl \b\f\n\r\t \x01\x1f\x7f end", "ünïcödé ✓ 🎉 \u2028 </script>&<", "", "'single'"}
			jsons := []string{`{"a": 1, "b": [true, null, "x\"y\\z\n"]}`, `"just a string \u00e9 \u0001"`, `[]`, `null`, `12.50`, `{"é": "\ud83c\udf89"}`}
			stamps := []string{"2019-03-01 00:00:00", "2019-03-15 12:34:56.000001", "2019-03-31 23:59:59.999999", "2019-03-10 02:30:00.5"}
			for i := range 40 {
				sql := `INSERT INTO audit_logs (table_name, code, old_values, notes, changed_at, flag, small, big, at, doc)
VALUES ($1, $2, $3, $4, $5::timestamp, $6 > 0, -32768 + $6, -9223372036854775807 + $6, $5::timestamptz, $7::json)`
				if !tt.native {
					sql = `INSERT INTO audit_logs (table_name, code, old_values, notes, changed_at, flag, amount, day)
VALUES ($1, $2, $3, $4, $5::timestamp, $6 > 0, $6 * 1.10, $5::date + $6) RETURNING $7::text`
				}
				code := []rune(strs[(i+1)%len(strs)])
				_, err := pool.Exec(ctx, sql, strs[i%len(strs)], nilIf(i%7 == 0, string(code[:min(4, len(code))])),
					nilIf(i%5 == 0, jsons[i%len(jsons)]), nilIf(i%3 == 0, strs[(i+2)%len(strs)]), stamps[i%len(stamps)], i%3,
					jsons[(i+3)%len(jsons)])
				require.NoError(t, err)
			}
			// Rows outside the month (before and after) stay out.
			_, err = pool.Exec(ctx, `INSERT INTO audit_logs (table_name, changed_at) VALUES ('before', '2019-02-28 23:59:59.999999'), ('after', '2019-04-01')`)
			require.NoError(t, err)
			cols, err := tableColumns(ctx, pool)
			require.NoError(t, err)
			require.Equal(t, tt.native, encodable(cols))

			p := monthPlan{Month: Month{2019, time.March}, MinID: 1, MaxID: 42}
			want := rowToJSONLines(t, pool, cols, p)
			var got bytes.Buffer
			m := Manifest{MinID: -1}
			require.NoError(t, copyRows(ctx, Config{Pool: pool}, cols, p, &got, &m))
			require.Equal(t, string(want), got.String())
			require.Equal(t, int64(40), m.RowCount)
			require.Equal(t, int64(1), m.MinID)
			require.Equal(t, int64(40), m.MaxID)
			require.Equal(t, int64(40*41/2), m.IDSum)
		})
	}
}

func nilIf(cond bool, v string) any {
	if cond {
		return nil
	}
	return v
}

// TestAppendTimestampMatchesToChar checks the edges of the timestamp
// format against to_char itself: BC years, years past 9999, infinity.
func TestAppendTimestampMatchesToChar(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, pgtest.NewDatabase(t))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(ctx) })
	for _, ts := range []string{"2000-01-01 00:00:00", "1999-12-31 23:59:59.999999", "0001-01-01 00:00:00", "0044-03-15 12:00:00 BC",
		"4713-01-01 00:00:00 BC", "9999-12-31 23:59:59.999999", "12345-06-07 08:09:10.11", "294276-12-31 23:59:59.999999",
		"1970-01-01 00:00:00", "1969-12-31 23:59:59.5", "2024-02-29 13:14:15.161718", "infinity", "-infinity"} {
		t.Run(ts, func(t *testing.T) {
			var want *string
			var us int64
			// The binary form of a timestamp is microseconds since 2000-01-01.
			err := conn.QueryRow(ctx, `SELECT to_json(to_char(v, 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))::text,
  CASE WHEN v = 'infinity' THEN 9223372036854775807 WHEN v = '-infinity' THEN -9223372036854775808
       ELSE (extract(epoch FROM v - '2000-01-01') * 1000000)::bigint END
  FROM (SELECT $1::timestamp AS v) s`, ts).Scan(&want, &us)
			require.NoError(t, err)
			w := "null"
			if want != nil {
				w = *want
			}
			require.Equal(t, w, string(appendTimestamp(nil, us)))
		})
	}
}

// TestRowEncoderChunking feeds one COPY stream in pieces of every size:
// rows split across writes must come out whole and the same.
func TestRowEncoderChunking(t *testing.T) {
	t.Parallel()
	cols := []Column{{Name: "id", kind: "int4"}, {Name: "note", kind: "text"}, {Name: "doc", kind: "jsonb"}}
	var stream []byte
	stream = append(stream, copyHeader...)
	stream = append(stream, 0, 0, 0, 0, 0, 0, 0, 0)
	field := func(b []byte) {
		if b == nil {
			stream = append(stream, 0xff, 0xff, 0xff, 0xff)
			return
		}
		stream = append(stream, byte(len(b)>>24), byte(len(b)>>16), byte(len(b)>>8), byte(len(b)))
		stream = append(stream, b...)
	}
	for id := 1; id <= 3; id++ {
		stream = append(stream, 0, 3)
		field([]byte{0, 0, 0, byte(id)})
		field([]byte("a\"b\n"))
		if id == 2 {
			field(nil)
		} else {
			field(append([]byte{1}, `{"k": 1}`...))
		}
	}
	stream = append(stream, 0xff, 0xff)
	want := `{"id":1,"note":"a\"b\n","doc":{"k": 1}}` + "\n" + `{"id":2,"note":"a\"b\n","doc":null}` + "\n" + `{"id":3,"note":"a\"b\n","doc":{"k": 1}}` + "\n"
	for size := 1; size <= len(stream); size++ {
		var got bytes.Buffer
		var ids []int64
		e := newRowEncoder(cols, func(line []byte, id int64) error {
			got.Write(line)
			ids = append(ids, id)
			return nil
		})
		for off := 0; off < len(stream); off += size {
			n, err := e.Write(stream[off:min(off+size, len(stream))])
			require.NoError(t, err)
			require.Equal(t, min(size, len(stream)-off), n)
		}
		require.NoError(t, e.finish(), "size %d", size)
		require.Equal(t, want, got.String(), "size %d", size)
		require.Equal(t, []int64{1, 2, 3}, ids)
	}
	t.Run("truncated stream is an error", func(t *testing.T) {
		e := newRowEncoder(cols, func([]byte, int64) error { return nil })
		_, err := e.Write(stream[:len(stream)-5])
		require.NoError(t, err)
		require.ErrorIs(t, e.finish(), errCopyFormat)
	})
}
