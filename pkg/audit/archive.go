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
