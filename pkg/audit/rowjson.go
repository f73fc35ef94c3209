package audit

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// The export reads a month with COPY ... TO STDOUT (FORMAT binary) and
// writes each JSON line in Go, byte for byte what
// row_to_json(SELECT selectList(cols)) writes: building the JSON row by
// row in the server cost about three times the plain COPY. Column types
// whose row_to_json form is not reproduced here (numeric, dates, arrays,
// enums, domains, ...) make the whole export fall back to row_to_json in
// the server, so the lines stay the same whatever the table holds.

// nativeKinds are the types rowEncoder writes itself.
var nativeKinds = map[string]bool{
	"int2": true, "int4": true, "int8": true, "bool": true,
	"text": true, "varchar": true, "bpchar": true,
	"json": true, "jsonb": true, "timestamp": true, "timestamptz": true,
}

// encodable reports whether every column can be written by rowEncoder.
func encodable(cols []Column) bool {
	for _, c := range cols {
		if !nativeKinds[c.kind] {
			return false
		}
	}
	return len(cols) > 0 && cols[0].Name == "id"
}

// copyQuery is the COPY statement that feeds rowEncoder with the rows of
// where (a condition on audit_logs aliased a), in id order. Without
// encodable columns, it selects the id, row_to_json's line and changed_at
// instead.
func copyQuery(cols []Column, where string) string {
	if encodable(cols) {
		names := make([]string, len(cols))
		for i, c := range cols {
			names[i] = "a." + pgx.Identifier{c.Name}.Sanitize()
		}
		return fmt.Sprintf(`COPY (SELECT %s FROM audit_logs a WHERE %s ORDER BY a.id) TO STDOUT (FORMAT binary)`,
			strings.Join(names, ", "), where)
	}
	// The lateral subquery's bare column names are a's.
	return fmt.Sprintf(`COPY (SELECT a.id::bigint, row_to_json(r)::text, a.changed_at FROM audit_logs a CROSS JOIN LATERAL (SELECT %s) r
WHERE %s ORDER BY a.id) TO STDOUT (FORMAT binary)`, selectList(cols), where)
}

// copyHeader starts every binary COPY stream.
var copyHeader = []byte("PGCOPY\n\xff\r\n\x00")

// rowEncoder is an io.Writer for a binary COPY stream: it cuts the stream
// into rows, whatever the chunking, and hands each row's JSON line
// (newline included) and id to emit.
type rowEncoder struct {
	cols   []Column
	native bool
	keys   [][]byte // `{"id":`, `,"table_name":`, ...
	emit   func(line []byte, id int64) error
	// atField is the field holding changed_at (-1: none), at its value in
	// the row being emitted.
	atField int
	at      int64

	pending []byte // bytes of an incomplete row (or header)
	header  bool   // the header has been read
	done    bool   // the trailer has been read
	line    []byte
	fields  [][]byte // the current row's values, pointing into the input
	nulls   []bool
}

func newRowEncoder(cols []Column, emit func(line []byte, id int64) error) *rowEncoder {
	e := &rowEncoder{cols: cols, native: encodable(cols), emit: emit, atField: -1}
	if !e.native {
		e.atField = 2
	}
	for i, c := range cols {
		if e.native && c.Name == "changed_at" && (c.kind == "timestamp" || c.kind == "timestamptz") {
			e.atField = i
		}
		k := []byte{','}
		if i == 0 {
			k = []byte{'{'}
		}
		k = appendJSONString(k, []byte(c.Name))
		e.keys = append(e.keys, append(k, ':'))
	}
	return e
}

var errCopyFormat = errors.New("unexpected binary COPY data")

func (e *rowEncoder) Write(p []byte) (int, error) {
	n := len(p)
	buf := p
	if len(e.pending) > 0 {
		e.pending = append(e.pending, p...)
		buf = e.pending
	}
	used, err := e.consume(buf)
	if err != nil {
		return 0, err
	}
	rest := buf[used:]
	if len(e.pending) > 0 {
		// Shift the remainder to the front of pending, reusing it.
		e.pending = e.pending[:copy(e.pending, rest)]
	} else {
		e.pending = append(e.pending[:0], rest...)
	}
	return n, nil
}

// consume handles every complete piece of buf and returns how many bytes
// it used.
func (e *rowEncoder) consume(buf []byte) (int, error) {
	off := 0
	if !e.header {
		// Signature, flags, header extension length, extension.
		if len(buf) < len(copyHeader)+8 {
			return 0, nil
		}
		if string(buf[:len(copyHeader)]) != string(copyHeader) {
			return 0, fmt.Errorf("%w: bad header", errCopyFormat)
		}
		ext := int(binary.BigEndian.Uint32(buf[len(copyHeader)+4:]))
		if len(buf) < len(copyHeader)+8+ext {
			return 0, nil
		}
		off = len(copyHeader) + 8 + ext
		e.header = true
	}
	for off < len(buf) {
		if e.done {
			return 0, fmt.Errorf("%w: data after the trailer", errCopyFormat)
		}
		n, err := e.row(buf[off:])
		if err != nil || n == 0 {
			return off, err
		}
		off += n
	}
	return off, nil
}

// row writes one row from the front of b and returns its length, or 0 when
// b does not hold the whole row yet.
func (e *rowEncoder) row(b []byte) (int, error) {
	if len(b) < 2 {
		return 0, nil
	}
	nf := int(int16(binary.BigEndian.Uint16(b)))
	if nf == -1 {
		e.done = true
		return 2, nil
	}
	want := len(e.cols)
	if !e.native {
		want = 3
	}
	if nf != want {
		return 0, fmt.Errorf("%w: row of %d fields, want %d", errCopyFormat, nf, want)
	}
	// Find the row's fields first, so an incomplete row writes nothing.
	// The slices are reused: zeroing fresh ones per row showed in profiles.
	if len(e.fields) != nf {
		e.fields, e.nulls = make([][]byte, nf), make([]bool, nf)
	}
	fs, ns := e.fields, e.nulls
	off := 2
	for i := range nf {
		if len(b) < off+4 {
			return 0, nil
		}
		l := int(int32(binary.BigEndian.Uint32(b[off:])))
		off += 4
		ns[i] = l < 0
		if l < 0 {
			fs[i] = nil
			continue
		}
		if len(b) < off+l {
			return 0, nil
		}
		fs[i] = b[off : off+l]
		off += l
	}
	if ns[0] {
		return 0, fmt.Errorf("%w: row without id", errCopyFormat)
	}
	id, err := binaryInt(fs[0])
	if err != nil {
		return 0, err
	}
	e.at = 0
	if e.atField >= 0 && !ns[e.atField] {
		if len(fs[e.atField]) != 8 {
			return 0, fmt.Errorf("%w: changed_at of %d bytes", errCopyFormat, len(fs[e.atField]))
		}
		e.at = int64(binary.BigEndian.Uint64(fs[e.atField]))
	}
	line := e.line[:0]
	if e.native {
		for i, c := range e.cols {
			line = append(line, e.keys[i]...)
			if ns[i] {
				line = append(line, "null"...)
				continue
			}
			if line, err = appendValue(line, c.kind, fs[i]); err != nil {
				return 0, fmt.Errorf("column %s: %w", c.Name, err)
			}
		}
		line = append(line, '}', '\n')
	} else {
		if ns[1] {
			return 0, fmt.Errorf("%w: row %d without JSON", errCopyFormat, id)
		}
		line = append(append(line, fs[1]...), '\n')
	}
	e.line = line
	if err := e.emit(line, id); err != nil {
		return 0, err
	}
	return off, nil
}

// finish reports a stream that ended early.
func (e *rowEncoder) finish() error {
	if !e.done || len(e.pending) > 0 {
		return fmt.Errorf("%w: stream ended without its trailer", errCopyFormat)
	}
	return nil
}

func binaryInt(b []byte) (int64, error) {
	switch len(b) {
	case 2:
		return int64(int16(binary.BigEndian.Uint16(b))), nil
	case 4:
		return int64(int32(binary.BigEndian.Uint32(b))), nil
	case 8:
		return int64(binary.BigEndian.Uint64(b)), nil
	}
	return 0, fmt.Errorf("%w: integer of %d bytes", errCopyFormat, len(b))
}

// appendValue writes one non-NULL value as row_to_json does.
func appendValue(dst []byte, kind string, v []byte) ([]byte, error) {
	switch kind {
	case "int2", "int4", "int8":
		n, err := binaryInt(v)
		if err != nil {
			return dst, err
		}
		return strconv.AppendInt(dst, n, 10), nil
	case "bool":
		if len(v) != 1 {
			return dst, fmt.Errorf("%w: boolean of %d bytes", errCopyFormat, len(v))
		}
		if v[0] != 0 {
			return append(dst, "true"...), nil
		}
		return append(dst, "false"...), nil
	case "json":
		return append(dst, v...), nil
	case "jsonb":
		// Version byte 1, then jsonb's text form, as jsonb_out writes it.
		if len(v) == 0 || v[0] != 1 {
			return dst, fmt.Errorf("%w: unknown jsonb version", errCopyFormat)
		}
		return append(dst, v[1:]...), nil
	case "timestamp", "timestamptz":
		if len(v) != 8 {
			return dst, fmt.Errorf("%w: timestamp of %d bytes", errCopyFormat, len(v))
		}
		return appendTimestamp(dst, int64(binary.BigEndian.Uint64(v))), nil
	}
	return appendJSONString(dst, v), nil
}

// pgEpoch is PostgreSQL's timestamp zero, in Unix seconds.
const pgEpoch = 946684800

// appendTimestamp writes microseconds since 2000-01-01 UTC as
// to_char(ts, 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') does, quoted; to_char
// gives NULL for ±infinity. Years before 1 AD are written as to_char's
// YYYY writes them, without an era.
func appendTimestamp(dst []byte, us int64) []byte {
	if us == 1<<63-1 || us == -1<<63 {
		return append(dst, "null"...)
	}
	sec, frac := us/1e6, us%1e6
	if frac < 0 {
		sec, frac = sec-1, frac+1e6
	}
	t := time.Unix(sec+pgEpoch, 0).UTC()
	year := t.Year()
	if year <= 0 {
		year = 1 - year
	}
	dst = append(dst, '"')
	dst = appendPadded(dst, int64(year), 4)
	dst = append(dst, '-')
	dst = appendPadded(dst, int64(t.Month()), 2)
	dst = append(dst, '-')
	dst = appendPadded(dst, int64(t.Day()), 2)
	dst = append(dst, 'T')
	dst = appendPadded(dst, int64(t.Hour()), 2)
	dst = append(dst, ':')
	dst = appendPadded(dst, int64(t.Minute()), 2)
	dst = append(dst, ':')
	dst = appendPadded(dst, int64(t.Second()), 2)
	dst = append(dst, '.')
	dst = appendPadded(dst, frac, 6)
	return append(dst, 'Z', '"')
}

// appendPadded writes a non-negative n with at least width digits.
func appendPadded(dst []byte, n int64, width int) []byte {
	var b [20]byte
	s := strconv.AppendInt(b[:0], n, 10)
	for i := len(s); i < width; i++ {
		dst = append(dst, '0')
	}
	return append(dst, s...)
}

// appendJSONString quotes s as PostgreSQL's escape_json does: only ", \
// and control characters are escaped (\b \f \n \r \t, others \u00xx in
// lower-case hex); everything else, non-ASCII included, is copied.
func appendJSONString(dst, s []byte) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"':
			dst = append(dst, '\\', '"')
		case '\\':
			dst = append(dst, '\\', '\\')
		case '\b':
			dst = append(dst, '\\', 'b')
		case '\f':
			dst = append(dst, '\\', 'f')
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			const hex = "0123456789abcdef"
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		start = i + 1
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
