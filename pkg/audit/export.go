package audit

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/ip2a/ip2a-ops/pkg/storage"
)

// copyScope streams the rows of where (a condition on audit_logs aliased a),
// in id order, with one COPY, and hands each row's JSON line, id and
// changed_at (microseconds since 2000-01-01) to emit. Memory stays at a row
// plus buffers: the COPY is read as it arrives.
func copyScope(ctx context.Context, c Config, cols []Column, where string, emit func(line []byte, id, at int64) error) error {
	conn, err := c.Pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	var enc *rowEncoder
	enc = newRowEncoder(cols, func(line []byte, id int64) error { return emit(line, id, enc.at) })
	if _, err := conn.Conn().PgConn().CopyTo(ctx, enc, copyQuery(cols, where)); err != nil {
		return err
	}
	return enc.finish()
}

// copyRows streams month p's rows, in id order, as JSON lines into out and
// counts them into m.
func copyRows(ctx context.Context, c Config, cols []Column, p monthPlan, out io.Writer, m *Manifest) error {
	return copyScope(ctx, c, cols, scopeOf([]monthPlan{p}).where(), func(line []byte, id, _ int64) error {
		m.count(id)
		_, err := out.Write(line)
		return err
	})
}

// count adds a row with id to the manifest's count, id range and id sum.
func (m *Manifest) count(id int64) {
	if m.RowCount == 0 || id < m.MinID {
		m.MinID = id
	}
	if m.RowCount == 0 || id > m.MaxID {
		m.MaxID = id
	}
	m.IDSum += id
	m.RowCount++
}

// add adds the rows counted into o to m.
func (m *Manifest) add(o Manifest) {
	if o.RowCount == 0 {
		return
	}
	if m.RowCount == 0 || o.MinID < m.MinID {
		m.MinID = o.MinID
	}
	if m.RowCount == 0 || o.MaxID > m.MaxID {
		m.MaxID = o.MaxID
	}
	m.IDSum += o.IDSum
	m.RowCount += o.RowCount
}

// compressor writes JSON lines into a zstd temp file, hashing the
// compressed bytes, and the raw ones when given a hash for them.
type compressor struct {
	tmp     *os.File
	comp    *countingHash
	fileBuf *bufio.Writer
	zw      *zstd.Encoder
	out     *bufio.Writer
}

func newCompressor(dir string, m Month, raw *countingHash) (*compressor, error) {
	tmp, err := os.CreateTemp(dir, "ip2a-audit-"+m.String()+"-*.zst")
	if err != nil {
		return nil, err
	}
	z := &compressor{tmp: tmp, comp: &countingHash{h: sha256.New()}}
	z.fileBuf = bufio.NewWriterSize(io.MultiWriter(tmp, z.comp), 1<<20)
	// A 1 MiB window: as small as the default 8 MiB one's output (within
	// 0.2% on audit rows) for half the memory, with two encoders alive.
	z.zw, err = zstd.NewWriter(z.fileBuf, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1),
		zstd.WithWindowSize(1<<20))
	if err != nil {
		z.close()
		return nil, err
	}
	var w io.Writer = z.zw
	if raw != nil {
		w = io.MultiWriter(z.zw, raw)
	}
	z.out = bufio.NewWriterSize(w, 256<<10)
	return z, nil
}

func (z *compressor) Write(p []byte) (int, error) { return z.out.Write(p) }

// finish completes the stream, lets go of the encoder (its window stays
// allocated after Close) and rewinds the file for upload.
func (z *compressor) finish() error {
	if err := z.out.Flush(); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if err := z.zw.Close(); err != nil {
		return fmt.Errorf("compress: %w", err)
	}
	if err := z.fileBuf.Flush(); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	z.out, z.zw, z.fileBuf = nil, nil, nil
	_, err := z.tmp.Seek(0, io.SeekStart)
	return err
}

func (z *compressor) close() {
	_ = z.tmp.Close()
	_ = os.Remove(z.tmp.Name())
}

// exportStreams is how many COPY streams read a group of several months,
// each an id range of its own: the server side of an export is one backend
// per stream, so two use both cores of a small server where the plain
// COPY uses one.
const exportStreams = 2

// monthSink takes one month's rows during an export: it counts them into
// the manifest and writes their lines straight into the compressor (a
// month read alone), or, when the export reads several months at once,
// into raw spool files, one per stream, that are compressed in order once
// the export is done (so only a couple of compressors are alive: a zstd
// encoder per month would cost about a megabyte each).
type monthSink struct {
	plan  monthPlan
	m     Manifest
	raw   *countingHash
	z     *compressor
	parts []*spoolPart
}

// spoolPart is one stream's rows of a month, in id order.
type spoolPart struct {
	f   *os.File
	buf *bufio.Writer
	m   Manifest // counts only
}

// close removes the sink's files and lets go of its buffers (a closed
// zstd encoder still holds its window).
func (s *monthSink) close() {
	if s.z != nil {
		s.z.close()
	}
	for _, p := range s.parts {
		_ = p.f.Close()
		_ = os.Remove(p.f.Name())
	}
	s.z, s.parts = nil, nil
}

// exportGroup reads the rows of months ms (in order, none empty) and
// returns a sink per month holding them: one COPY for a single month,
// exportStreams of them, each an id range, for several. skipped is true
// when months between the first and the last of ms are not to be read.
// The caller closes the sinks.
func exportGroup(ctx context.Context, c Config, cols []Column, ms []monthPlan, skipped bool) ([]*monthSink, error) {
	sinks := make([]*monthSink, len(ms))
	closeAll := func() {
		for _, s := range sinks {
			if s != nil {
				s.close()
			}
		}
	}
	streams := 1
	if len(ms) > 1 {
		streams = exportStreams
	}
	starts := make([]int64, len(ms)+1) // changed_at microseconds bounding each month
	for i, p := range ms {
		s := &monthSink{plan: p, m: Manifest{MinID: -1}, raw: &countingHash{h: sha256.New()}}
		sinks[i] = s
		var err error
		if streams == 1 {
			s.z, err = newCompressor(c.TempDir, p.Month, s.raw)
		}
		for range streams {
			if streams == 1 || err != nil {
				break
			}
			var f *os.File
			if f, err = os.CreateTemp(c.TempDir, "ip2a-audit-"+p.Month.String()+"-*.jsonl"); err == nil {
				s.parts = append(s.parts, &spoolPart{f: f, buf: bufio.NewWriterSize(f, 64<<10), m: Manifest{MinID: -1}})
			}
		}
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("archive %s: %w", p.Month, err)
		}
		starts[i] = pgMicros(p.Month.Start())
		starts[i+1] = pgMicros(p.Month.End())
	}
	month := func(at int64) int {
		i := sort.Search(len(ms), func(i int) bool { return starts[i+1] > at })
		if i == len(ms) || at < starts[i] {
			// A month between two of ms (skipped), or outside: not ours.
			return -1
		}
		return i
	}
	var in string
	if skipped {
		list := make([]string, len(ms))
		for i, p := range ms {
			list[i] = "'" + pgTimestamp(p.Month.Start()) + "'::timestamp"
		}
		in = ` AND date_trunc('month', a.changed_at) IN (` + strings.Join(list, ", ") + `)`
	}
	sc := scopeOf(ms)
	if streams == 1 {
		err := copyScope(ctx, c, cols, sc.where()+in, func(line []byte, id, at int64) error {
			i := month(at)
			if i < 0 {
				return nil
			}
			sinks[i].m.count(id)
			_, err := sinks[i].z.Write(line)
			return err
		})
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("archive %s: read rows: %w", ms[0].Month, err)
		}
		return sinks, nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, streams)
	var wg sync.WaitGroup
	span := (sc.MaxID - sc.MinID + 1 + int64(streams) - 1) / int64(streams)
	for k := range streams {
		part := sc
		part.MinID = sc.MinID + int64(k)*span
		part.MaxID = min(sc.MaxID, part.MinID+span-1)
		wg.Go(func() {
			err := copyScope(ctx, c, cols, part.where()+in, func(line []byte, id, at int64) error {
				i := month(at)
				if i < 0 {
					return nil
				}
				p := sinks[i].parts[k]
				p.m.count(id)
				_, err := p.buf.Write(line)
				return err
			})
			for _, s := range sinks {
				if err != nil {
					break
				}
				err = s.parts[k].buf.Flush()
			}
			if err != nil {
				errs[k] = err
				cancel()
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		closeAll()
		return nil, fmt.Errorf("archive %s..%s: read rows: %w", ms[0].Month, ms[len(ms)-1].Month, err)
	}
	for _, s := range sinks {
		for _, p := range s.parts {
			s.m.add(p.m)
		}
	}
	return sinks, nil
}

// pgMicros is t as microseconds since 2000-01-01 UTC, the binary form of
// a timestamp.
func pgMicros(t time.Time) int64 { return (t.Unix()-pgEpoch)*1e6 + int64(t.Nanosecond()/1e3) }

// storeData completes the month's compressed file (from the spool files
// when the month was spooled) and stores it under its fixed key. It
// depends on no other month, so months of a group store their data side
// by side; their manifests, which chain, go one after the other
// (storeManifest).
func (s *monthSink) storeData(ctx context.Context, c Config, retainUntil time.Time) error {
	p := s.plan
	if s.m.RowCount == 0 {
		return fmt.Errorf("archive %s: no rows left to archive", p.Month)
	}
	if s.z == nil {
		z, err := newCompressor(c.TempDir, p.Month, s.raw)
		if err != nil {
			return fmt.Errorf("archive %s: %w", p.Month, err)
		}
		s.z = z
		for _, part := range s.parts {
			if _, err := part.f.Seek(0, io.SeekStart); err != nil {
				return fmt.Errorf("archive %s: %w", p.Month, err)
			}
			if _, err := io.Copy(z, bufio.NewReaderSize(part.f, 256<<10)); err != nil {
				return fmt.Errorf("archive %s: compress: %w", p.Month, err)
			}
			_ = part.f.Close()
			_ = os.Remove(part.f.Name())
		}
		s.parts = nil
	}
	if err := s.z.finish(); err != nil {
		return fmt.Errorf("archive %s: %w", p.Month, err)
	}
	key := DataKey(c.Prefix, p.Month)
	if _, err := c.Store.Put(ctx, key, s.z.tmp, storage.PutOptions{SHA256: s.z.comp.sum(), Size: s.z.comp.n,
		RetainUntil: retainUntil, ContentType: "application/zstd"}); err != nil {
		return fmt.Errorf("archive %s: upload %s: %w", p.Month, key, err)
	}
	return nil
}

// storeManifest stores the manifest of a month whose data is stored (see
// storeData), chained to prev, and returns what was stored.
func storeManifest(ctx context.Context, c Config, cols []Column, s *monthSink, prev link, retainUntil time.Time) (exported, error) {
	p := s.plan
	m := s.m
	m.Format, m.Table, m.Month = FormatVersion, Table, p.Month
	m.ChangedAtFrom, m.ChangedAtTo = p.Month.Start().Format(time.RFC3339), p.Month.End().Format(time.RFC3339)
	m.DataKey = DataKey(c.Prefix, p.Month)
	m.DataFormat = "JSON Lines (one JSON object per row, every column, in id order), compressed with zstd"
	m.PreviousMonth, m.PreviousManifestSHA256, m.Columns = prev.month, prev.sha, cols
	m.ReadWith = fmt.Sprintf("zstdcat %s.jsonl.zst | jq -c 'select(.table_name == \"members\")'", p.Month)
	m.RawSHA256, m.RawBytes = s.raw.sum(), s.raw.n
	m.CompressedSHA256, m.CompressedBytes = s.z.comp.sum(), s.z.comp.n
	m.ArchivedAt = c.Now().UTC().Truncate(time.Second)
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
