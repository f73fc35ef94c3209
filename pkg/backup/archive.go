package backup

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"filippo.io/age"
	"github.com/jackc/pgx/v5"
	"github.com/klauspost/compress/zstd"

	"github.com/ip2a/ip2a-ops/pkg/storage"
)

// The backup object ("tar" format) is one tar stream, compressed with zstd
// and optionally encrypted with age, so it opens with standard tools:
//
//	zstd -dc backup.tar.zst | tar -x     (age -d -i key first when encrypted)
//
// Its entries, in this order:
//
//	ip2a-ops-backup.json   archiveHeader: the tables copied by ip2a-ops, with
//	                       their columns and the COPY statement that loads them
//	pg_dump.custom         pg_dump's custom-format archive (uncompressed):
//	                       every object, and the data of every table except
//	                       the copied ones
//	data/NNNN/MMMMMM.copy  the copied tables' rows in COPY text format, whole
//	                       rows, at most 4 MiB per entry; NNNN is the
//	                       table's 1-based index in the header
//
// The big tables' rows are copied by ip2a-ops itself, in the same exported
// snapshot pg_dump uses, straight from the server into zstd: pg_dump's own
// data path (a row at a time through stdio, then a second pass to compress)
// is what made it slow. Each raw segment of the stream is compressed as an
// independent zstd frame by a pool of encoders and the frames are written in
// order, so compression uses every core while one COPY streams.
const (
	formatTar    = "tar"    // DumpInfo.Format of backups made since tar
	formatCustom = "custom" // the earlier format: one pg_dump custom archive

	headerEntry  = "ip2a-ops-backup.json"
	schemaEntry  = "pg_dump.custom"
	dataEntryDir = "data/"
	tarDataName  = "backup.tar.zst" // plus ".age" when encrypted

	headerKind = "ip2a-ops-backup"
)

// defaultChunkSize bounds a data entry's rows; also the size of the
// pipeline's buffers (see pipeline).
const defaultChunkSize = 4 << 20

// archiveHeader is the first entry of a tar-format backup.
type archiveHeader struct {
	Kind     string `json:"kind"` // headerKind
	Version  int    `json:"version"`
	Database string `json:"database"`
	// Encoding is the client_encoding the rows were copied in.
	Encoding string `json:"encoding"`
	// Schema names the pg_dump archive entry.
	Schema string `json:"schema_archive"`
	// Tables are the tables whose rows ip2a-ops copied; their data is in
	// data/NNNN/ where NNNN is the 1-based index here.
	Tables []copyTable `json:"copied_tables"`
}

// copyTable is one table whose rows ip2a-ops copies itself.
type copyTable struct {
	Schema  string   `json:"schema"`
	Name    string   `json:"name"`
	Columns []string `json:"columns"`
	// Load is the statement that loads a data entry: COPY ... FROM STDIN.
	Load string `json:"load"`
	// Bytes is the table's size on the server when the backup started.
	Bytes int64 `json:"bytes"`
}

func (t copyTable) qualified() string { return t.Schema + "." + t.Name }

func (t copyTable) columnList() string {
	cols := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		cols[i] = pgx.Identifier{c}.Sanitize()
	}
	return "(" + strings.Join(cols, ", ") + ")"
}

// ident is the table's quoted, schema-qualified name.
func (t copyTable) ident() string { return pgx.Identifier{t.Schema, t.Name}.Sanitize() }

func (t copyTable) dumpSQL() string {
	return "COPY " + t.ident() + " " + t.columnList() + " TO STDOUT"
}

func (t copyTable) loadSQL() string {
	return "COPY " + t.ident() + " " + t.columnList() + " FROM STDIN"
}

// dataEntryName names the seq'th (1-based) data entry of table index i
// (1-based). Names stay short so every tar header is one 512-byte block.
func dataEntryName(table, seq int) string {
	return fmt.Sprintf("%s%04d/%06d.copy", dataEntryDir, table, seq)
}

// parseDataEntry returns the table index of a data entry's name.
func parseDataEntry(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, dataEntryDir)
	if !ok {
		return 0, false
	}
	dir, file, ok := strings.Cut(rest, "/")
	if !ok || !strings.HasSuffix(file, ".copy") {
		return 0, false
	}
	i, err := strconv.Atoi(dir)
	if err != nil || i < 1 {
		return 0, false
	}
	return i, true
}

// tarHeaderBlock returns the single 512-byte tar header of a regular file.
func tarHeaderBlock(name string, size int64, mod time.Time) ([]byte, error) {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o600, ModTime: mod.Truncate(time.Second), Format: tar.FormatUSTAR})
	if err != nil {
		return nil, err
	}
	if b.Len() != 512 {
		return nil, fmt.Errorf("tar header of %s is %d bytes", name, b.Len())
	}
	return b.Bytes(), nil
}

// tarPad is the padding after size bytes of entry content.
func tarPad(size int64) int { return int((512 - size%512) % 512) }

// segment is one piece of the raw tar stream on its way through the
// pipeline: raw bytes in, one zstd frame out.
type segment struct {
	seq  int
	raw  []byte
	comp []byte
}

// pipeline compresses raw segments in parallel and writes their frames in
// submission order, hashing the raw stream and what is stored. Its buffers
// come from a fixed pool, so memory stays bounded whatever the table sizes:
// about (buffers x (chunkSize + compressed)) plus one encoder per thread.
type pipeline struct {
	chunk int // segment size
	free  chan *segment
	work  chan *segment
	done  chan *segment
	out   io.Writer // the stored stream (after encryption)
	enc   io.WriteCloser
	raw   hash.Hash
	rawN  int64
	mu    sync.Mutex
	next  int // next seq to hand out
	err   error
	errMu sync.Mutex
	wg    sync.WaitGroup
	wdone chan struct{}
	quit  chan struct{}
	once  sync.Once
	// progress, read by the logger
	progress func(raw int64)
}

// newPipeline starts threads encoders and the writer. sink receives the
// stored bytes: zstd frames, encrypted to recipients when there are any.
func newPipeline(sink io.Writer, level, threads, chunk int, recipients []age.Recipient) (*pipeline, error) {
	if threads <= 0 {
		threads = min(runtime.GOMAXPROCS(0), 4)
	}
	if chunk <= 0 {
		chunk = defaultChunkSize
	}
	p := &pipeline{chunk: chunk, raw: sha256.New(), out: sink, wdone: make(chan struct{}), quit: make(chan struct{})}
	if len(recipients) > 0 {
		e, err := age.Encrypt(sink, recipients...)
		if err != nil {
			return nil, fmt.Errorf("encrypt: %w", err)
		}
		p.enc, p.out = e, e
	}
	n := threads + 4
	p.free = make(chan *segment, n)
	for range n {
		p.free <- &segment{raw: make([]byte, 0, chunk+2048)}
	}
	p.work = make(chan *segment, n)
	p.done = make(chan *segment, n)
	opts := []zstd.EOption{zstd.WithEncoderLevel(zstdLevel(level)), zstd.WithEncoderConcurrency(1)}
	if level < 4 {
		opts = append(opts, zstd.WithWindowSize(encoderWindow))
	}
	for range threads {
		e, err := zstd.NewWriter(nil, opts...)
		if err != nil {
			return nil, fmt.Errorf("compress: %w", err)
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for s := range p.work {
				s.comp = e.EncodeAll(s.raw, s.comp[:0])
				p.done <- s
			}
		}()
	}
	go p.write()
	return p, nil
}

// encoderWindow is the zstd window of levels 1-3. A dump's redundancy is
// local (rows of one table, the same JSON keys row after row): on the bench
// database a 1 MiB window compresses as small as the levels' 4-8 MiB
// windows, faster (the match tables stay in cache) and with less memory.
const encoderWindow = 1 << 20

func (p *pipeline) fail(err error) {
	p.errMu.Lock()
	if p.err == nil {
		p.err = err
	}
	p.errMu.Unlock()
	p.once.Do(func() { close(p.quit) })
}

func (p *pipeline) failed() error {
	p.errMu.Lock()
	defer p.errMu.Unlock()
	return p.err
}

func (p *pipeline) write() {
	defer close(p.wdone)
	pending := map[int]*segment{}
	want := 0
	for s := range p.done {
		pending[s.seq] = s
		for {
			s, ok := pending[want]
			if !ok {
				break
			}
			delete(pending, want)
			want++
			if p.failed() == nil {
				p.raw.Write(s.raw)
				p.rawN += int64(len(s.raw))
				if _, err := p.out.Write(s.comp); err != nil {
					p.fail(err)
				}
				if p.progress != nil {
					p.progress(p.rawN)
				}
			}
			s.raw = s.raw[:0]
			p.free <- s
		}
	}
}

// get returns an empty segment buffer, waiting for one to come back.
func (p *pipeline) get(ctx context.Context) (*segment, error) {
	select {
	case s := <-p.free:
		return s, nil
	case <-p.quit:
		return nil, p.failed()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// submit queues a filled segment; segments are written in submit order.
func (p *pipeline) submit(s *segment) {
	p.mu.Lock()
	s.seq = p.next
	p.next++
	p.work <- s // never blocks long: work has room for every buffer
	p.mu.Unlock()
}

// put returns an unused segment to the pool.
func (p *pipeline) put(s *segment) { s.raw = s.raw[:0]; p.free <- s }

// close waits for every submitted segment to be written and ends the
// stream (the age trailer when encrypting). It returns the raw stream's size
// and SHA-256, or the first error.
func (p *pipeline) close() (int64, string, error) {
	close(p.work)
	p.wg.Wait()
	close(p.done)
	<-p.wdone
	if err := p.failed(); err != nil {
		return 0, "", err
	}
	if p.enc != nil {
		if err := p.enc.Close(); err != nil {
			return 0, "", fmt.Errorf("encrypt: %w", err)
		}
	}
	return p.rawN, fmt.Sprintf("%x", p.raw.Sum(nil)), nil
}

// segWriter writes a byte stream (a tar entry of known content) into the
// pipeline in buffer-sized segments.
type segWriter struct {
	ctx context.Context
	p   *pipeline
	cur *segment
}

func (w *segWriter) Write(b []byte) (int, error) {
	n := 0
	for len(b) > 0 {
		if w.cur == nil {
			s, err := w.p.get(w.ctx)
			if err != nil {
				return n, err
			}
			w.cur = s
		}
		k := min(len(b), w.p.chunk-len(w.cur.raw))
		w.cur.raw = append(w.cur.raw, b[:k]...)
		b, n = b[k:], n+k
		if len(w.cur.raw) == w.p.chunk {
			w.p.submit(w.cur)
			w.cur = nil
		}
	}
	return n, nil
}

func (w *segWriter) flush() {
	if w.cur != nil && len(w.cur.raw) > 0 {
		w.p.submit(w.cur)
	} else if w.cur != nil {
		w.p.put(w.cur)
	}
	w.cur = nil
}

// writeEntry writes one whole tar entry (header, content, padding).
func writeEntry(ctx context.Context, p *pipeline, name string, size int64, r io.Reader, mod time.Time) error {
	hdr, err := tarHeaderBlock(name, size, mod)
	if err != nil {
		return err
	}
	w := &segWriter{ctx: ctx, p: p}
	defer w.flush()
	if _, err := w.Write(hdr); err != nil {
		return err
	}
	n, err := io.Copy(w, io.LimitReader(storage.ContextReader(ctx, r), size))
	if err != nil {
		return err
	}
	if n != size {
		return fmt.Errorf("%s: %d bytes, expected %d", name, n, size)
	}
	_, err = w.Write(make([]byte, tarPad(size)))
	return err
}

// writeTrailer ends the tar stream.
func writeTrailer(ctx context.Context, p *pipeline) error {
	w := &segWriter{ctx: ctx, p: p}
	defer w.flush()
	_, err := w.Write(make([]byte, 1024))
	return err
}

// marshalHeader renders the header entry's content.
func marshalHeader(h archiveHeader) ([]byte, error) {
	b, err := json.MarshalIndent(h, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// errEntry is wrapped when a backup's tar stream is not what it should be.
var errEntry = errors.New("malformed backup archive")
