package audit

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/ip2a/ip2a-ops/pkg/storage"
)

// FormatVersion names the archive format in every manifest.
const FormatVersion = "ip2a-ops audit archive v1"

// Manifest describes one month's archive. It is stored as JSON next to the
// data, and its SHA-256 is written into the next month's manifest.
type Manifest struct {
	Format string `json:"format"`
	Table  string `json:"table"`
	Month  Month  `json:"month"`
	// ChangedAtFrom and ChangedAtTo bound changed_at (from inclusive, to
	// exclusive), in UTC.
	ChangedAtFrom string `json:"changed_at_from"`
	ChangedAtTo   string `json:"changed_at_to"`
	RowCount      int64  `json:"row_count"`
	MinID         int64  `json:"min_id"`
	MaxID         int64  `json:"max_id"`
	// IDSum is the sum of every id: with the count it pins the exact set
	// of rows deleted.
	IDSum int64 `json:"id_sum"`
	// DataKey is the object holding the rows: JSON Lines, zstd.
	DataKey          string `json:"data_key"`
	DataFormat       string `json:"data_format"`
	RawSHA256        string `json:"raw_sha256"`
	RawBytes         int64  `json:"raw_bytes"`
	CompressedSHA256 string `json:"compressed_sha256"`
	CompressedBytes  int64  `json:"compressed_bytes"`
	// PreviousMonth is the archived month before this one (empty for the
	// first), and PreviousManifestSHA256 the SHA-256 of its manifest file:
	// the chain that shows a replaced or removed archive.
	PreviousMonth          Month     `json:"previous_month"`
	PreviousManifestSHA256 string    `json:"previous_manifest_sha256"`
	Columns                []Column  `json:"columns"`
	ReadWith               string    `json:"read_with"`
	ArchivedAt             time.Time `json:"archived_at"`
}

// link is the tip of the chain a new manifest points back to.
type link struct {
	month Month
	sha   string
}

// monthPlan is one month's rows as the database holds them now.
type monthPlan struct {
	Month              Month
	Rows, MinID, MaxID int64
	IDSum              int64
}

// exported is what writing one archive produced.
type exported struct {
	manifest    Manifest
	manifestRaw []byte
	manifestSHA string
}

type countingHash struct {
	h hash.Hash
	n int64
}

func (c *countingHash) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return c.h.Write(p)
}

func (c *countingHash) sum() string { return hex.EncodeToString(c.h.Sum(nil)) }

// pageRows is the keyset page size of search: big enough to amortise a
// round trip, small enough that a page is a few MB.
const pageRows = 20000

// copyRows streams month p's rows, in id order, as JSON lines into out with
// one COPY, and counts them into m. Memory stays at a row plus buffers: the
// COPY is read as it arrives.
func copyRows(ctx context.Context, c Config, cols []Column, p monthPlan, out io.Writer, m *Manifest) error {
	conn, err := c.Pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	where := fmt.Sprintf(`id >= %d AND id <= %d AND changed_at >= '%s'::timestamp AND changed_at < '%s'::timestamp`,
		p.MinID, p.MaxID, pgTimestamp(p.Month.Start()), pgTimestamp(p.Month.End()))
	enc := newRowEncoder(cols, func(line []byte, id int64) error {
		if m.MinID < 0 {
			m.MinID = id
		}
		m.MaxID, m.IDSum = id, m.IDSum+id
		m.RowCount++
		_, err := out.Write(line)
		return err
	})
	if _, err := conn.Conn().PgConn().CopyTo(ctx, enc, copyQuery(cols, where)); err != nil {
		return err
	}
	return enc.finish()
}

// exportMonth streams month p from the database into a zstd temp file,
// hashing raw and compressed bytes, then stores data and manifest under
// their fixed keys. Memory stays at a row plus the encoder's window.
func exportMonth(ctx context.Context, c Config, cols []Column, p monthPlan, prev link, retainUntil time.Time) (exported, error) {
	tmp, err := os.CreateTemp(c.TempDir, "ip2a-audit-"+p.Month.String()+"-*.zst")
	if err != nil {
		return exported{}, fmt.Errorf("archive %s: %w", p.Month, err)
	}
	defer func() { _ = tmp.Close(); _ = os.Remove(tmp.Name()) }()

	comp := &countingHash{h: sha256.New()}
	fileBuf := bufio.NewWriterSize(io.MultiWriter(tmp, comp), 1<<20)
	zw, err := zstd.NewWriter(fileBuf, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return exported{}, err
	}
	raw := &countingHash{h: sha256.New()}
	out := bufio.NewWriterSize(io.MultiWriter(zw, raw), 256<<10)

	m := Manifest{Format: FormatVersion, Table: Table, Month: p.Month,
		ChangedAtFrom: p.Month.Start().Format(time.RFC3339), ChangedAtTo: p.Month.End().Format(time.RFC3339),
		MinID: -1, DataKey: DataKey(c.Prefix, p.Month),
		DataFormat:    "JSON Lines (one JSON object per row, every column, in id order), compressed with zstd",
		PreviousMonth: prev.month, PreviousManifestSHA256: prev.sha, Columns: cols,
		ReadWith: fmt.Sprintf("zstdcat %s.jsonl.zst | jq -c 'select(.table_name == \"members\")'", p.Month),
	}
	if err := copyRows(ctx, c, cols, p, out, &m); err != nil {
		return exported{}, fmt.Errorf("archive %s: read rows: %w", p.Month, err)
	}
	if m.RowCount == 0 {
		return exported{}, fmt.Errorf("archive %s: no rows left to archive", p.Month)
	}
	if err := out.Flush(); err != nil {
		return exported{}, fmt.Errorf("archive %s: write: %w", p.Month, err)
	}
	if err := zw.Close(); err != nil {
		return exported{}, fmt.Errorf("archive %s: compress: %w", p.Month, err)
	}
	if err := fileBuf.Flush(); err != nil {
		return exported{}, fmt.Errorf("archive %s: write: %w", p.Month, err)
	}
	m.RawSHA256, m.RawBytes = raw.sum(), raw.n
	m.CompressedSHA256, m.CompressedBytes = comp.sum(), comp.n
	m.ArchivedAt = c.Now().UTC().Truncate(time.Second)

	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return exported{}, err
	}
	if _, err := c.Store.Put(ctx, m.DataKey, tmp, storage.PutOptions{SHA256: m.CompressedSHA256, Size: m.CompressedBytes,
		RetainUntil: retainUntil, ContentType: "application/zstd"}); err != nil {
		return exported{}, fmt.Errorf("archive %s: upload %s: %w", p.Month, m.DataKey, err)
	}
	body, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return exported{}, err
	}
	body = append(body, '\n')
	sum := sha256.Sum256(body)
	e := exported{manifest: m, manifestRaw: body, manifestSHA: hex.EncodeToString(sum[:])}
	if _, err := c.Store.Put(ctx, ManifestKey(c.Prefix, p.Month), bytes.NewReader(body), storage.PutOptions{SHA256: e.manifestSHA,
		Size: int64(len(body)), RetainUntil: retainUntil, ContentType: "application/json"}); err != nil {
		return exported{}, fmt.Errorf("archive %s: upload manifest: %w", p.Month, err)
	}
	return e, nil
}

// pgTimestamp formats t for a ::timestamp parameter (naive, UTC).
func pgTimestamp(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05") }

func rawInt8(b []byte) (int64, error) {
	if len(b) == 8 {
		return int64(binary.BigEndian.Uint64(b)), nil
	}
	v, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("read id %q: %w", b, err)
	}
	return v, nil
}

// readManifest fetches a manifest and its SHA-256.
func readManifest(ctx context.Context, s storage.Store, key string) (Manifest, string, []byte, error) {
	rc, err := s.Get(ctx, key)
	if err != nil {
		return Manifest{}, "", nil, err
	}
	defer rc.Close()
	body, err := io.ReadAll(io.LimitReader(rc, 4<<20))
	if err != nil {
		return Manifest{}, "", nil, fmt.Errorf("read %s: %w", key, err)
	}
	sum := sha256.Sum256(body)
	var m Manifest
	if err := json.Unmarshal(body, &m); err != nil {
		return Manifest{}, hex.EncodeToString(sum[:]), body, fmt.Errorf("%w: manifest %s is not valid JSON: %v", ErrMismatch, key, err)
	}
	return m, hex.EncodeToString(sum[:]), body, nil
}

// dataStats is what reading an archive's data back found.
type dataStats struct {
	Rows, MinID, MaxID, IDSum   int64
	RawSHA256, CompressedSHA256 string
	RawBytes, CompressedBytes   int64
}

// readData streams an archive back: hashes the compressed bytes,
// decompresses, hashes the raw bytes, counts lines and sums their ids.
func readData(ctx context.Context, s storage.Store, key string) (dataStats, error) {
	rc, err := s.Get(ctx, key)
	if err != nil {
		return dataStats{}, err
	}
	defer rc.Close()
	comp := &countingHash{h: sha256.New()}
	tr := io.TeeReader(bufio.NewReaderSize(rc, 1<<20), comp)
	zr, err := zstd.NewReader(tr, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true))
	if err != nil {
		return dataStats{}, err
	}
	defer zr.Close()
	raw := &countingHash{h: sha256.New()}
	br := bufio.NewReaderSize(io.TeeReader(zr, raw), 1<<20)
	st := dataStats{MinID: -1}
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A line longer than the buffer: read the rest of it.
			rest, err2 := br.ReadBytes('\n')
			line = append(append([]byte{}, line...), rest...)
			err = err2
		}
		if len(line) > 0 {
			if line[len(line)-1] != '\n' {
				return st, fmt.Errorf("%w: %s: last line is not terminated", ErrMismatch, key)
			}
			id, ok := lineID(line)
			if !ok {
				return st, fmt.Errorf("%w: %s: line %d has no id", ErrMismatch, key, st.Rows+1)
			}
			if st.MinID < 0 || id < st.MinID {
				st.MinID = id
			}
			st.MaxID = max(st.MaxID, id)
			st.IDSum += id
			st.Rows++
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return st, fmt.Errorf("%w: %s: decompress: %v", ErrMismatch, key, err)
		}
		if st.Rows%65536 == 0 && ctx.Err() != nil {
			return st, ctx.Err()
		}
	}
	// Drain so the compressed hash covers every byte stored.
	if _, err := io.Copy(io.Discard, tr); err != nil {
		return st, fmt.Errorf("read %s: %w", key, err)
	}
	st.RawSHA256, st.RawBytes = raw.sum(), raw.n
	st.CompressedSHA256, st.CompressedBytes = comp.sum(), comp.n
	return st, nil
}

// lineID reads the id of a line written by row_to_json, which puts id
// first: {"id":123,...}. Anything else falls back to a JSON decode.
func lineID(line []byte) (int64, bool) {
	const p = `{"id":`
	if bytes.HasPrefix(line, []byte(p)) {
		i := len(p)
		j := i
		for j < len(line) && line[j] >= '0' && line[j] <= '9' {
			j++
		}
		if j > i && j < len(line) && (line[j] == ',' || line[j] == '}') {
			v, err := strconv.ParseInt(string(line[i:j]), 10, 64)
			return v, err == nil
		}
	}
	var r struct {
		ID *int64 `json:"id"`
	}
	if json.Unmarshal(line, &r) != nil || r.ID == nil {
		return 0, false
	}
	return *r.ID, true
}

// checkStored reads month's manifest and data back and compares them with
// the record the database keeps: any difference wraps ErrMismatch.
func checkStored(ctx context.Context, s storage.Store, rec Record) (Manifest, error) {
	m, sum, _, err := readManifest(ctx, s, rec.ManifestKey)
	if err != nil {
		if errors.Is(err, storage.ErrNotExist) {
			return m, fmt.Errorf("%w: %s: manifest %s is missing", ErrMismatch, rec.Month, rec.ManifestKey)
		}
		return m, fmt.Errorf("verify %s: %w", rec.Month, err)
	}
	if sum != rec.ManifestSHA256 {
		return m, fmt.Errorf("%w: %s: manifest SHA-256 is %s, recorded %s", ErrMismatch, rec.Month, sum, rec.ManifestSHA256)
	}
	if m.Month != rec.Month || m.RowCount != rec.RowCount || m.MinID != rec.MinID || m.MaxID != rec.MaxID || m.IDSum != rec.IDSum ||
		m.RawSHA256 != rec.RawSHA256 || m.CompressedSHA256 != rec.CompressedSHA256 || m.DataKey != rec.DataKey {
		return m, fmt.Errorf("%w: %s: manifest fields differ from the record", ErrMismatch, rec.Month)
	}
	st, err := readData(ctx, s, rec.DataKey)
	if err != nil {
		if errors.Is(err, storage.ErrNotExist) {
			return m, fmt.Errorf("%w: %s: data %s is missing", ErrMismatch, rec.Month, rec.DataKey)
		}
		if errors.Is(err, ErrMismatch) || errors.Is(err, context.Canceled) {
			return m, err
		}
		return m, fmt.Errorf("verify %s: %w", rec.Month, err)
	}
	switch {
	case st.CompressedSHA256 != m.CompressedSHA256 || st.CompressedBytes != m.CompressedBytes:
		return m, fmt.Errorf("%w: %s: compressed SHA-256 is %s, manifest says %s", ErrMismatch, rec.Month, st.CompressedSHA256, m.CompressedSHA256)
	case st.RawSHA256 != m.RawSHA256 || st.RawBytes != m.RawBytes:
		return m, fmt.Errorf("%w: %s: raw SHA-256 is %s, manifest says %s", ErrMismatch, rec.Month, st.RawSHA256, m.RawSHA256)
	case st.Rows != m.RowCount || st.MinID != m.MinID || st.MaxID != m.MaxID || st.IDSum != m.IDSum:
		return m, fmt.Errorf("%w: %s: archive holds %d rows (ids %d-%d), manifest says %d (ids %d-%d)", ErrMismatch, rec.Month,
			st.Rows, st.MinID, st.MaxID, m.RowCount, m.MinID, m.MaxID)
	}
	return m, nil
}
