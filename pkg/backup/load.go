package backup

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"

	"filippo.io/age"
	"github.com/jackc/pgx/v5"
	"github.com/klauspost/compress/zstd"

	"github.com/ip2a/ip2a-ops/pkg/dbconn"
	"github.com/ip2a/ip2a-ops/pkg/progress"
	"github.com/ip2a/ip2a-ops/pkg/storage"
)

// loadSpec says what to do with a tar-format backup's stream: check every
// entry (contents), or restore it into targetURL.
type loadSpec struct {
	store      storage.Store
	manifest   Manifest
	identities [][]byte
	pgRestore  string
	wd         *workDir
	// targetURL empty: only decode and check.
	targetURL  string
	jobs       int
	keepOwners bool
	clean      bool
	progress   *progress.Tracker
}

// loadResult is what reading the stream found.
type loadResult struct {
	entries int
	rows    map[string]int64 // copied tables' rows in the stream
}

// loadTar reads a tar-format backup once, from the store to the end:
// decrypting, decompressing, and hashing both sides; pg_dump's archive goes
// to a scratch file, the copied tables' rows to COPY workers (restore) or
// are only counted (check). A restore runs pg_dump's pre-data section
// before the rows, its data section beside them, and its post-data section
// (indexes, constraints, triggers) after, so that big tables load without
// indexes and every foreign key is checked once, over complete tables. Any
// difference from the manifest (hashes, entries, rows) is an error.
func loadTar(ctx context.Context, s loadSpec) (loadResult, error) {
	m := s.manifest
	res := loadResult{rows: map[string]int64{}}
	ids, err := ParseIdentities(s.identities...)
	if err != nil {
		return res, err
	}
	if m.Object.Encryption == "age" && len(ids) == 0 {
		return res, ErrNoIdentity
	}
	if s.jobs <= 0 {
		s.jobs = 2
	}
	rc, err := s.store.Get(ctx, m.Object.Key)
	if err != nil {
		return res, fmt.Errorf("read %s: %w", m.Object.Key, err)
	}
	defer rc.Close()
	phase := "check"
	if s.targetURL != "" {
		phase = "restore"
	}
	s.progress.Phase(phase, progress.Bytes, m.Object.Size)
	stored := newHashingReader(progress.Reader(storage.ContextReader(ctx, rc), s.progress))
	var src io.Reader = stored
	if m.Object.Encryption == "age" {
		d, err := age.Decrypt(stored, ids...)
		if err != nil {
			// A damaged object is a checksum mismatch, not a key problem.
			_, _ = io.Copy(io.Discard, stored)
			if cerr := compareStored(m, stored.n, stored.sum()); cerr != nil {
				return res, cerr
			}
			return res, fmt.Errorf("%w: %v", ErrDecrypt, err)
		}
		src = d
	}
	dec, err := zstd.NewReader(src, zstd.WithDecoderConcurrency(2), zstd.WithDecoderLowmem(true), zstd.WithDecoderMaxWindow(64<<20))
	if err != nil {
		return res, fmt.Errorf("decompress: %w", err)
	}
	defer dec.Close()
	raw := newHashingReader(dec)
	tr := tar.NewReader(raw)

	// checkHashes reads to the end and compares both hashes; it is the
	// verdict on a stream that decoded badly too.
	checkHashes := func() error {
		if _, err := io.Copy(io.Discard, raw); err != nil {
			_, _ = io.Copy(io.Discard, stored)
			if err := compareStored(m, stored.n, stored.sum()); err != nil {
				return err
			}
			return fmt.Errorf("decompress: %w", err)
		}
		if _, err := io.Copy(io.Discard, stored); err != nil {
			return fmt.Errorf("read %s: %w", m.Object.Key, err)
		}
		if err := compareStored(m, stored.n, stored.sum()); err != nil {
			return err
		}
		if raw.n != m.Dump.Size || raw.sum() != m.Dump.SHA256 {
			return fmt.Errorf("%w: decoded stream is %d bytes with sha256 %s, manifest says %d bytes with sha256 %s",
				ErrChecksumMismatch, raw.n, raw.sum(), m.Dump.Size, m.Dump.SHA256)
		}
		return nil
	}
	bad := func(err error) (loadResult, error) {
		if herr := checkHashes(); herr != nil {
			return res, herr
		}
		return res, err
	}

	// 1. The header.
	hb, err := readEntry(tr, headerEntry, 1<<20)
	if err != nil {
		return bad(err)
	}
	var h archiveHeader
	if err := json.Unmarshal(hb, &h); err != nil || h.Kind != headerKind {
		return bad(fmt.Errorf("%w: %s is not an ip2a-ops backup header", errEntry, headerEntry))
	}
	if h.Version != 1 {
		return bad(fmt.Errorf("%w: header version %d; this ip2a-ops reads version 1 (upgrade ip2a-ops)", errEntry, h.Version))
	}
	// 2. pg_dump's archive.
	hdr, err := tr.Next()
	if err != nil || hdr.Name != schemaEntry {
		return bad(fmt.Errorf("%w: second entry is not %s", errEntry, schemaEntry))
	}
	archive := s.wd.file("schema.pgc")
	if err := writeFile(archive, tr); err != nil {
		return bad(diskFull(err, ""))
	}
	n, err := countEntries(ctx, s.pgRestore, archive)
	if err != nil {
		return bad(err)
	}
	res.entries = n + len(h.Tables)

	// 3. pg_dump's pre-data, then its data beside the rows.
	var side sync.WaitGroup
	var sideErr error
	restoring := s.targetURL != ""
	if restoring {
		if s.clean {
			if err := dropForeignKeys(ctx, s.targetURL, m.Tables); err != nil {
				return res, err
			}
		}
		if err := pgRestoreSection(ctx, s, archive, "pre-data", 1); err != nil {
			return res, err
		}
	}
	side.Add(1)
	go func() {
		defer side.Done()
		if restoring {
			sideErr = pgRestoreSection(ctx, s, archive, "data", s.jobs)
			return
		}
		sideErr = decodeArchive(ctx, s.pgRestore, archive)
	}()

	// 4. The rows.
	var ld *loader
	if restoring {
		ld, err = newLoader(ctx, s.targetURL, h, s.jobs)
		if err != nil {
			side.Wait()
			return res, err
		}
	}
	perTable := make([]int64, len(h.Tables))
	var rowErr error
	var scratch []byte
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			rowErr = fmt.Errorf("%w: %v", errEntry, err)
			break
		}
		ti, ok := parseDataEntry(hdr.Name)
		if !ok || ti > len(h.Tables) || hdr.Size > 1<<30 {
			rowErr = fmt.Errorf("%w: unexpected entry %q", errEntry, hdr.Name)
			break
		}
		if int64(cap(scratch)) < hdr.Size {
			scratch = make([]byte, hdr.Size)
		}
		buf := scratch[:hdr.Size]
		if ld != nil {
			buf, err = ld.buffer(ctx, int(hdr.Size))
			if err != nil {
				rowErr = err
				break
			}
		}
		if _, err := io.ReadFull(tr, buf); err != nil {
			rowErr = fmt.Errorf("%w: %s: %v", errEntry, hdr.Name, err)
			break
		}
		if len(buf) > 0 && buf[len(buf)-1] != '\n' {
			rowErr = fmt.Errorf("%w: %s does not end with a whole row", errEntry, hdr.Name)
			break
		}
		perTable[ti-1] += int64(bytes.Count(buf, []byte{'\n'}))
		if ld != nil {
			ld.load(ti-1, buf)
		}
	}
	var loadErr error
	if ld != nil {
		loadErr = ld.close()
	}
	side.Wait()
	if herr := checkHashes(); herr != nil {
		return res, herr
	}
	for _, err := range []error{rowErr, loadErr, sideErr} {
		if err != nil {
			return res, err
		}
	}
	for i, t := range h.Tables {
		res.rows[t.qualified()] = perTable[i]
	}
	if res.entries != m.Dump.Entries {
		return res, fmt.Errorf("archive has %d entries, manifest says %d", res.entries, m.Dump.Entries)
	}
	if mm := compareCopied(m.Tables, res.rows); len(mm) > 0 {
		return res, fmt.Errorf("rows in the archive differ from the manifest: %s", mm)
	}
	// 5. Indexes, constraints, triggers.
	if restoring {
		s.progress.Phase("indexes and constraints", progress.Items, 0)
		if err := pgRestoreSection(ctx, s, archive, "post-data", s.jobs); err != nil {
			return res, err
		}
	}
	return res, nil
}

// compareCopied names the first copied table whose rows in the archive
// differ from the manifest's count.
func compareCopied(want []TableCount, got map[string]int64) string {
	for _, w := range want {
		if n, ok := got[w.QualifiedName()]; ok && n != w.Rows {
			return fmt.Sprintf("%s has %d rows in the archive, manifest says %d", w.QualifiedName(), n, w.Rows)
		}
	}
	return ""
}

// readEntry reads the next entry, which must be called name, whole.
func readEntry(tr *tar.Reader, name string, max int64) ([]byte, error) {
	hdr, err := tr.Next()
	if err != nil || hdr.Name != name {
		return nil, fmt.Errorf("%w: first entry is not %s", errEntry, name)
	}
	if hdr.Size > max {
		return nil, fmt.Errorf("%w: %s is %d bytes", errEntry, name, hdr.Size)
	}
	return io.ReadAll(tr)
}

func writeFile(path string, r io.Reader) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// pgRestoreSection runs one section of pg_dump's archive (all of it when
// section is "") into the target.
func pgRestoreSection(ctx context.Context, s loadSpec, archive, section string, jobs int) error {
	conn, env := toolEnv(s.targetURL, "ip2a-ops restore")
	args := []string{"--dbname=" + conn, "--exit-on-error", "--no-password"}
	name := "pg_restore"
	if section != "" {
		args = append(args, "--section="+section)
		name += " --section=" + section
	}
	if jobs > 1 {
		args = append(args, "--jobs="+strconv.Itoa(jobs))
	}
	if !s.keepOwners {
		args = append(args, "--no-owner", "--no-privileges")
	}
	if s.clean && (section == "" || section == "pre-data") {
		args = append(args, "--clean", "--if-exists")
	}
	if err := runTool(ctx, env, s.pgRestore, append(args, archive)...); err != nil && ctx.Err() == nil {
		return fmt.Errorf("%s failed %w", name, err)
	} else if err != nil {
		return err
	}
	return nil
}

// dropForeignKeys drops, in the target, the foreign keys from or to the
// backup's tables, so that pg_restore --clean can drop and recreate the
// tables (it would otherwise stop at the first table another one refers
// to); the post-data section creates the backup's own again.
func dropForeignKeys(ctx context.Context, targetURL string, tables []TableCount) error {
	conn, err := pgx.Connect(ctx, targetURL)
	if err != nil {
		return fmt.Errorf("connect to target: %w", err)
	}
	defer conn.Close(ctx)
	names := make([]string, len(tables))
	for i, t := range tables {
		names[i] = pgx.Identifier{t.Schema, t.Name}.Sanitize()
	}
	rows, err := conn.Query(ctx, `WITH t AS (SELECT to_regclass(x) AS oid FROM unnest($1::text[]) x)
		SELECT format('ALTER TABLE %s DROP CONSTRAINT IF EXISTS %I', conrelid::regclass, conname)
		FROM pg_constraint WHERE contype = 'f'
		  AND (conrelid IN (SELECT oid FROM t WHERE oid IS NOT NULL) OR confrelid IN (SELECT oid FROM t WHERE oid IS NOT NULL))`, names)
	if err != nil {
		return fmt.Errorf("list foreign keys in the target: %w", err)
	}
	stmts, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("list foreign keys in the target: %w", err)
	}
	for _, st := range stmts {
		if _, err := conn.Exec(ctx, st); err != nil {
			return fmt.Errorf("drop foreign key in the target: %w", err)
		}
	}
	return nil
}

// loader runs COPY ... FROM STDIN for data entries over jobs connections.
type loader struct {
	h     archiveHeader
	work  chan loadItem
	free  chan []byte
	wg    sync.WaitGroup
	mu    sync.Mutex
	err   error
	ctx   context.Context
	stop  context.CancelFunc
	conns []*pgx.Conn
}

type loadItem struct {
	table int
	buf   []byte
}

func newLoader(ctx context.Context, targetURL string, h archiveHeader, jobs int) (*loader, error) {
	lctx, stop := context.WithCancel(ctx)
	l := &loader{h: h, work: make(chan loadItem, jobs), free: make(chan []byte, 2*jobs+1), ctx: lctx, stop: stop}
	for range 2*jobs + 1 {
		l.free <- make([]byte, 0, defaultChunkSize)
	}
	enc := h.Encoding
	if enc == "" {
		enc = "UTF8"
	}
	for range jobs {
		c, err := dbconn.ConnectWork(ctx, targetURL)
		if err != nil {
			l.closeConns()
			stop()
			return nil, fmt.Errorf("connect to target: %w", err)
		}
		l.conns = append(l.conns, c)
		// A restore that dies is redone from the start, so its commits need
		// not wait for the disk.
		if _, err := c.PgConn().Exec(ctx, "SET datestyle = ISO; SET synchronous_commit = off; SET client_encoding = '"+enc+"'").ReadAll(); err != nil {
			l.closeConns()
			stop()
			return nil, fmt.Errorf("prepare target connection: %w", err)
		}
	}
	for _, c := range l.conns {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for it := range l.work {
				if l.failed() == nil {
					t := l.h.Tables[it.table]
					if _, err := c.PgConn().CopyFrom(lctx, bytes.NewReader(it.buf), t.Load); err != nil {
						l.fail(fmt.Errorf("load %s: %w", t.qualified(), err))
					}
				}
				l.free <- it.buf[:0]
			}
		}()
	}
	return l, nil
}

func (l *loader) fail(err error) {
	l.mu.Lock()
	if l.err == nil {
		l.err = err
	}
	l.mu.Unlock()
	l.stop()
}

func (l *loader) failed() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// buffer returns a free buffer of length n.
func (l *loader) buffer(ctx context.Context, n int) ([]byte, error) {
	select {
	case b := <-l.free:
		if cap(b) < n {
			b = make([]byte, n)
		}
		return b[:n], nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (l *loader) load(table int, buf []byte) { l.work <- loadItem{table: table, buf: buf} }

func (l *loader) close() error {
	close(l.work)
	l.wg.Wait()
	l.closeConns()
	l.stop()
	return l.failed()
}

func (l *loader) closeConns() {
	for _, c := range l.conns {
		_ = c.Close(context.WithoutCancel(l.ctx))
	}
}

// isTar tells the format of a manifest's backup.
func isTar(m Manifest) bool { return m.Dump.Format == formatTar }
