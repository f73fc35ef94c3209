package audit

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/klauspost/compress/zstd"

	"github.com/ip2a/ip2a-ops/pkg/migrate"
)

// SearchOptions configure Search.
type SearchOptions struct {
	Config
	// From (inclusive) and To (exclusive) bound changed_at, read as UTC.
	From, To time.Time
	// Filters; empty matches everything.
	Table, RecordID, ChangedBy, Action string
	// Format: "jsonl" (default: the archive's own lines) or "csv".
	Format string
	// Out receives the rows.
	Out io.Writer
}

// Validate names the first bad field.
func (o SearchOptions) Validate() error {
	if err := o.Config.validate(true); err != nil {
		return err
	}
	switch {
	case o.From.IsZero() || o.To.IsZero():
		return errors.New("From, To: both required")
	case !o.From.Before(o.To):
		return fmt.Errorf("To: %s is not after From %s", o.To.Format(time.DateOnly), o.From.Format(time.DateOnly))
	case o.Format != "" && o.Format != "jsonl" && o.Format != "csv":
		return fmt.Errorf("Format: %q is not jsonl or csv", o.Format)
	case o.Out == nil:
		return errors.New("Out: required")
	}
	return nil
}

// SearchResult counts what Search wrote.
type SearchResult struct {
	Rows         int64   `json:"rows"`
	FromArchives int64   `json:"from_archives"`
	FromLive     int64   `json:"from_live"`
	Archives     []Month `json:"archives_read"`
	// Purged lists months in range whose archives were purged: their rows
	// no longer exist anywhere.
	Purged []Month `json:"purged,omitempty"`
}

type searchRow struct {
	TableName string  `json:"table_name"`
	RecordID  *string `json:"record_id"`
	Action    string  `json:"action"`
	ChangedBy *string `json:"changed_by"`
	ChangedAt string  `json:"changed_at"`
}

// Search streams the rows matching the filters from the archives of months
// whose rows were deleted and from audit_logs, without restoring anything.
// A month is read from exactly one place (its archive once its rows are
// deleted, the table before), so no row appears twice. An archive whose
// bytes do not match its record is reported (ErrMismatch) after its rows.
func Search(ctx context.Context, o SearchOptions) (SearchResult, error) {
	if err := o.Validate(); err != nil {
		return SearchResult{}, err
	}
	c := o.Config.withDefaults()
	res := SearchResult{Archives: []Month{}}
	var cols []Column
	recs, err := records(ctx, c)
	if err != nil {
		return res, err
	}
	w := newRowWriter(o.Out, o.Format)
	from, to := o.From.UTC(), o.To.UTC()
	fromS, toS := from.Format("2006-01-02T15:04:05.000000Z"), to.Format("2006-01-02T15:04:05.000000Z")
	match := func(r searchRow) bool {
		return r.ChangedAt >= fromS && r.ChangedAt < toS && (o.Table == "" || r.TableName == o.Table) &&
			(o.Action == "" || r.Action == o.Action) && (o.RecordID == "" || (r.RecordID != nil && *r.RecordID == o.RecordID)) &&
			(o.ChangedBy == "" || (r.ChangedBy != nil && *r.ChangedBy == o.ChangedBy))
	}
	var mismatch error
	for _, rec := range recs {
		if !rec.Month.End().After(from) || !rec.Month.Start().Before(to) {
			continue
		}
		if rec.State == StatePurged {
			res.Purged = append(res.Purged, rec.Month)
			continue
		}
		if rec.State != StateDeleted {
			continue // still online: read from the table below
		}
		m, _, _, err := readManifest(ctx, c.Store, rec.ManifestKey)
		if err != nil {
			return res, fmt.Errorf("search %s: %w", rec.Month, err)
		}
		if cols == nil {
			cols = m.Columns
		}
		w.header(m.Columns)
		n, sum, err := scanArchive(ctx, c, rec, func(line []byte) error {
			var r searchRow
			if err := json.Unmarshal(line, &r); err != nil {
				return fmt.Errorf("%w: %s: bad line: %v", ErrMismatch, rec.Month, err)
			}
			if !match(r) {
				return nil
			}
			res.FromArchives++
			return w.write(line)
		})
		if err != nil {
			return res, fmt.Errorf("search %s: %w", rec.Month, err)
		}
		if n != rec.RowCount || sum != rec.CompressedSHA256 {
			mismatch = fmt.Errorf("%w: %s: archive read back with %d rows and SHA-256 %s, recorded %d and %s", ErrMismatch, rec.Month, n, sum, rec.RowCount, rec.CompressedSHA256)
		}
		res.Archives = append(res.Archives, rec.Month)
	}
	live, err := tableColumns(ctx, c.Pool)
	if err != nil && !errors.Is(err, ErrNoAuditTable) {
		return res, err
	}
	if err == nil {
		w.header(live)
		n, err := searchLive(ctx, c, o, live, w)
		res.FromLive = n
		if err != nil {
			return res, err
		}
	}
	res.Rows = res.FromArchives + res.FromLive
	if err := w.flush(); err != nil {
		return res, err
	}
	return res, mismatch
}

// scanArchive calls fn with each line of rec's archive and returns the
// line count and the SHA-256 of the compressed bytes read.
func scanArchive(ctx context.Context, c Config, rec Record, fn func(line []byte) error) (int64, string, error) {
	rc, err := c.Store.Get(ctx, rec.DataKey)
	if err != nil {
		return 0, "", err
	}
	defer rc.Close()
	h := &countingHash{h: sha256.New()}
	tr := io.TeeReader(bufio.NewReaderSize(rc, 1<<20), h)
	zr, err := zstd.NewReader(tr, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true))
	if err != nil {
		return 0, "", err
	}
	defer zr.Close()
	sc := bufio.NewScanner(zr)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	var n int64
	for sc.Scan() {
		n++
		if err := fn(sc.Bytes()); err != nil {
			return n, "", err
		}
		if n%65536 == 0 && ctx.Err() != nil {
			return n, "", ctx.Err()
		}
	}
	if err := sc.Err(); err != nil {
		return n, "", fmt.Errorf("%w: decompress: %v", ErrMismatch, err)
	}
	if _, err := io.Copy(io.Discard, tr); err != nil {
		return n, "", err
	}
	return n, h.sum(), nil
}

func searchLive(ctx context.Context, c Config, o SearchOptions, cols []Column, w *rowWriter) (int64, error) {
	where := []string{"id > $1::bigint", "changed_at >= $2::timestamp", "changed_at < $3::timestamp"}
	args := []any{int64(-1 << 62), o.From.UTC().Format("2006-01-02 15:04:05.999999"), o.To.UTC().Format("2006-01-02 15:04:05.999999")}
	add := func(col, v string) {
		if v != "" {
			args = append(args, v)
			where = append(where, fmt.Sprintf("%s = $%d", col, len(args)))
		}
	}
	add("table_name", o.Table)
	add("record_id", o.RecordID)
	add("changed_by", o.ChangedBy)
	add("action", o.Action)
	query := fmt.Sprintf(`SELECT r.id::bigint, row_to_json(r)::text FROM (SELECT %s FROM audit_logs WHERE %s ORDER BY id LIMIT %d) r ORDER BY r.id`,
		selectList(cols), strings.Join(where, " AND "), pageRows)
	var total int64
	for {
		rows, err := c.Pool.Query(ctx, query, append([]any{pgx.QueryExecModeExec}, args...)...)
		if err != nil {
			return total, fmt.Errorf("search audit_logs: %w", err)
		}
		n := 0
		for rows.Next() {
			v := rows.RawValues()
			id, err := rawInt8(v[0])
			if err == nil {
				err = w.write(v[1])
			}
			if err != nil {
				rows.Close()
				return total, err
			}
			args[0] = id
			n++
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return total, fmt.Errorf("search audit_logs: %w", err)
		}
		total += int64(n)
		if n < pageRows {
			return total, nil
		}
	}
}

// rowWriter writes archive lines as JSON Lines or CSV.
type rowWriter struct {
	bw   *bufio.Writer
	csv  *csv.Writer
	cols []Column
}

func newRowWriter(w io.Writer, format string) *rowWriter {
	rw := &rowWriter{bw: bufio.NewWriterSize(w, 64<<10)}
	if format == "csv" {
		rw.csv = csv.NewWriter(rw.bw)
	}
	return rw
}

// header fixes the CSV columns from the first source that has them.
func (w *rowWriter) header(cols []Column) {
	if w.cols != nil || w.csv == nil {
		return
	}
	w.cols = cols
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = c.Name
	}
	_ = w.csv.Write(names)
}

func (w *rowWriter) write(line []byte) error {
	if w.csv == nil {
		if _, err := w.bw.Write(line); err != nil {
			return err
		}
		return w.bw.WriteByte('\n')
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(line, &m); err != nil {
		return err
	}
	rec := make([]string, len(w.cols))
	for i, c := range w.cols {
		v := m[c.Name]
		switch {
		case len(v) == 0 || bytes.Equal(v, []byte("null")):
		// Columns from a manifest carry only Type (kind is not stored), so
		// both decide whether a JSON string is a json value to keep quoted.
		case v[0] == '"' && c.kind != "jsonb" && c.kind != "json" && c.Type != "jsonb" && c.Type != "json":
			var s string
			_ = json.Unmarshal(v, &s)
			rec[i] = s
		default:
			rec[i] = string(v)
		}
	}
	return w.csv.Write(rec)
}

func (w *rowWriter) flush() error {
	if w.csv != nil {
		w.csv.Flush()
		if err := w.csv.Error(); err != nil {
			return err
		}
	}
	return w.bw.Flush()
}

// RestoreOptions configure Restore.
type RestoreOptions struct {
	Config
	Month Month
	// Into is the table to load the rows into ("schema.table" or "table");
	// created from the manifest's columns when missing. Never audit_logs.
	Into string
}

// Validate names the first bad field.
func (o RestoreOptions) Validate() error {
	if err := o.Config.validate(true); err != nil {
		return err
	}
	if o.Month.IsZero() {
		return errors.New("Month: required")
	}
	return CheckTable(o.Into)
}

// CheckTable validates a restore target: "table" or "schema.table", plain
// lower-case identifiers, never audit_logs itself.
func CheckTable(into string) error {
	parts := strings.Split(into, ".")
	if into == "" || len(parts) > 2 {
		return fmt.Errorf("Into: %q: want table or schema.table", into)
	}
	for _, p := range parts {
		if !migrate.ValidIdentifier(p) {
			return fmt.Errorf("Into: %q: use lower-case identifiers", into)
		}
	}
	if parts[len(parts)-1] == Table {
		return errors.New("Into: not audit_logs itself; restore into another table and compare")
	}
	return nil
}

// RestoreResult says what Restore loaded.
type RestoreResult struct {
	Month   Month  `json:"month"`
	Into    string `json:"into"`
	Rows    int64  `json:"rows"`
	Created bool   `json:"created"`
}

// Restore verifies month's archive, then loads its rows into o.Into in one
// transaction. A target that already holds ids of the month is refused.
func Restore(ctx context.Context, o RestoreOptions) (RestoreResult, error) {
	if err := o.Validate(); err != nil {
		return RestoreResult{}, err
	}
	c := o.Config.withDefaults()
	res := RestoreResult{Month: o.Month, Into: o.Into}
	row := c.Pool.QueryRow(ctx, `SELECT `+recordCols+` FROM `+c.q()+`.audit_archive_months WHERE month = $1`, o.Month.Start())
	rec, err := scanRecord(row)
	if errors.Is(err, pgx.ErrNoRows) {
		return res, fmt.Errorf("restore %s: %w", o.Month, ErrNotArchived)
	}
	if err != nil {
		return res, fmt.Errorf("restore %s: %w", o.Month, err)
	}
	if rec.State == StatePurged {
		return res, fmt.Errorf("restore %s: the archive was purged past retention: %w", o.Month, ErrNotArchived)
	}
	m, err := checkStored(ctx, c.Store, rec)
	if err != nil {
		return res, fmt.Errorf("restore %s: %w", o.Month, err)
	}
	target := pgx.Identifier(strings.Split(o.Into, ".")).Sanitize()
	err = pgx.BeginFunc(ctx, c.Pool, func(tx pgx.Tx) error {
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, target).Scan(&exists); err != nil {
			return err
		}
		if !exists {
			defs := make([]string, len(m.Columns))
			for i, col := range m.Columns {
				defs[i] = pgx.Identifier{col.Name}.Sanitize() + " " + col.Type
			}
			if _, err := tx.Exec(ctx, `CREATE TABLE `+target+` (`+strings.Join(defs, ", ")+`)`); err != nil {
				return err
			}
			res.Created = true
		} else {
			var clash bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM `+target+` WHERE id BETWEEN $1 AND $2)`, rec.MinID, rec.MaxID).Scan(&clash); err != nil {
				return err
			}
			if clash {
				return fmt.Errorf("%s already holds ids of %s (%d-%d)", o.Into, o.Month, rec.MinID, rec.MaxID)
			}
		}
		insert := `INSERT INTO ` + target + ` SELECT * FROM json_populate_recordset(NULL::` + target + `, $1::json)`
		var batch bytes.Buffer
		flushBatch := func() error {
			if batch.Len() == 0 {
				return nil
			}
			batch.WriteByte(']')
			tag, err := tx.Exec(ctx, insert, batch.String())
			res.Rows += tag.RowsAffected()
			batch.Reset()
			return err
		}
		_, _, err := scanArchive(ctx, c, rec, func(line []byte) error {
			if batch.Len() == 0 {
				batch.WriteByte('[')
			} else {
				batch.WriteByte(',')
			}
			batch.Write(line)
			if batch.Len() > 4<<20 {
				return flushBatch()
			}
			return nil
		})
		if err != nil {
			return err
		}
		if err := flushBatch(); err != nil {
			return err
		}
		if res.Rows != rec.RowCount {
			return fmt.Errorf("%w: loaded %d rows, the archive holds %d", ErrMismatch, res.Rows, rec.RowCount)
		}
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("restore %s into %s: %w", o.Month, o.Into, err)
	}
	return res, nil
}

// ErrNotArchived: the month has no archive (never archived, or purged).
var ErrNotArchived = errors.New("month has no archive")
