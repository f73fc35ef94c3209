package backup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"time"

	"filippo.io/age"
	"github.com/jackc/pgx/v5"

	"github.com/ip2a/ip2a-ops/pkg/dbconn"
	"github.com/ip2a/ip2a-ops/pkg/progress"
	"github.com/ip2a/ip2a-ops/pkg/storage"
)

// DefaultCopyMinBytes is the table size from which ip2a-ops copies a table's
// rows itself instead of leaving them to pg_dump (see archive.go).
const DefaultCopyMinBytes = 16 << 20

// planTables lists every user table with its size and dumpable columns,
// as the snapshot sees them, and picks those at least minBytes big to copy.
// minBytes < 0 copies none. size is the tables' total size (without
// indexes), what the dump's progress counts against.
func planTables(ctx context.Context, tx pgx.Tx, major int, minBytes int64) (all []TableCount, copies []copyTable, size int64, err error) {
	generated := "AND a.attgenerated = ''"
	if major < 12 {
		generated = ""
	}
	rows, err := tx.Query(ctx, `SELECT t.nspname, t.relname, pg_table_size(c.oid),
		ARRAY(SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0
			AND NOT a.attisdropped `+generated+` ORDER BY a.attnum)
		FROM (`+userTablesSQL+`) t(nspname, relname)
		JOIN pg_namespace n ON n.nspname = t.nspname
		JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = t.relname
		ORDER BY 1, 2`)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("list tables: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var ct copyTable
		if err := rows.Scan(&ct.Schema, &ct.Name, &ct.Bytes, &ct.Columns); err != nil {
			return nil, nil, 0, fmt.Errorf("list tables: %w", err)
		}
		size += ct.Bytes
		all = append(all, TableCount{Schema: ct.Schema, Name: ct.Name})
		if minBytes >= 0 && ct.Bytes >= minBytes && len(ct.Columns) > 0 {
			ct.Load = ct.loadSQL()
			copies = append(copies, ct)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, 0, fmt.Errorf("list tables: %w", err)
	}
	return all, copies, size, nil
}

// lockCopies takes the ACCESS SHARE lock pg_dump would take on the tables
// ip2a-ops copies, in the snapshot's transaction (whose lock_timeout bounds
// the wait), so none is altered or dropped before its COPY starts.
func lockCopies(ctx context.Context, tx pgx.Tx, copies []copyTable) error {
	for _, t := range copies {
		if _, err := tx.Exec(ctx, "LOCK TABLE ONLY "+t.ident()+" IN ACCESS SHARE MODE"); err != nil {
			return fmt.Errorf("lock %s: %w", t.qualified(), err)
		}
	}
	return nil
}

// countSmall counts the rows of the tables pg_dump dumps, in the snapshot.
// The copied tables are counted as their rows stream.
func countSmall(ctx context.Context, tx pgx.Tx, all []TableCount, copies []copyTable) ([]TableCount, error) {
	copied := map[string]bool{}
	for _, c := range copies {
		copied[c.qualified()] = true
	}
	for i := range all {
		if copied[all[i].QualifiedName()] {
			continue
		}
		sql := "SELECT count(*) FROM " + pgx.Identifier{all[i].Schema, all[i].Name}.Sanitize()
		if err := tx.QueryRow(ctx, sql).Scan(&all[i].Rows); err != nil {
			return nil, fmt.Errorf("count rows of %s: %w", all[i].QualifiedName(), err)
		}
	}
	return all, nil
}

// excludePattern is pg_dump's --exclude-table-data pattern matching exactly
// one table: inside double quotes pattern characters are literal, so the
// quoted name is the pattern.
func excludePattern(t copyTable) string { return t.ident() }

// copier streams the copied tables' rows into the pipeline over jobs
// connections that share the snapshot.
type copier struct {
	dbURL    string
	snapshot string
	encoding string
	tables   []copyTable
	jobs     int
	p        *pipeline
	gate     <-chan struct{} // closed once the schema entry is in the stream
	mod      time.Time
	copyData func(table string) // Options.copyData

	mu   sync.Mutex
	rows []int64 // per table
}

// run copies every table and returns each one's row count.
func (c *copier) run(ctx context.Context) ([]int64, error) {
	c.rows = make([]int64, len(c.tables))
	// Biggest first, so the connections finish together.
	order := make([]int, len(c.tables))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return int(c.tables[b].Bytes - c.tables[a].Bytes) })
	queue := make(chan int, len(order))
	for _, i := range order {
		queue <- i
	}
	close(queue)
	jobs := min(max(c.jobs, 1), len(c.tables))
	errs := make(chan error, jobs)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range jobs {
		go func() {
			err := c.worker(ctx, queue)
			if err != nil {
				cancel()
			}
			errs <- err
		}()
	}
	var first error
	for range jobs {
		if err := <-errs; err != nil && (first == nil || errors.Is(first, context.Canceled)) {
			first = err
		}
	}
	return c.rows, first
}

func (c *copier) worker(ctx context.Context, queue <-chan int) error {
	conn, err := dbconn.ConnectWork(ctx, c.dbURL)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	// The settings pg_dump uses, so the text is the same and reloads the
	// same anywhere.
	setup := "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT '" + c.snapshot + "'; " +
		"SET datestyle = ISO; SET intervalstyle = postgres; SET extra_float_digits = 3; SET row_security = off; " +
		"SET statement_timeout = 0; SET idle_in_transaction_session_timeout = 0; SET client_encoding = '" + c.encoding + "'"
	if _, err := conn.PgConn().Exec(ctx, setup).ReadAll(); err != nil {
		return fmt.Errorf("join the snapshot: %w", err)
	}
	// Take every copied table's lock now, without waiting. The snapshot's
	// transaction holds these locks already, so the only way to wait is
	// behind a conflicting request queued since (a migration's ALTER
	// TABLE): that request waits for the backup, which would wait for it,
	// a deadlock the server cannot see. Failing is the way out; pg_dump's
	// parallel workers do the same.
	for _, t := range c.tables {
		if _, err := conn.PgConn().Exec(ctx, "LOCK TABLE ONLY "+t.ident()+" IN ACCESS SHARE MODE NOWAIT").ReadAll(); err != nil {
			return fmt.Errorf("lock %s: another session is waiting for a conflicting lock on it (a migration?), and waiting behind it would deadlock with the backup; run the backup again when it is done: %w", t.qualified(), err)
		}
	}
	for i := range queue {
		w := &chunker{ctx: ctx, p: c.p, gate: c.gate, table: i + 1, mod: c.mod}
		if c.copyData != nil {
			name := c.tables[i].qualified()
			w.hook = func() { c.copyData(name) }
		}
		_, err := conn.PgConn().CopyTo(ctx, w, c.tables[i].dumpSQL())
		if err == nil {
			err = w.finish()
		} else {
			w.abandon()
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("copy %s: %w", c.tables[i].qualified(), err)
		}
		c.mu.Lock()
		c.rows[i] = w.rows
		c.mu.Unlock()
	}
	return nil
}

// chunker cuts one table's COPY output into data entries of whole rows,
// each built in place in a pipeline segment: 512 bytes reserved for the tar
// header, the rows, the padding.
type chunker struct {
	ctx   context.Context
	p     *pipeline
	gate  <-chan struct{}
	table int
	mod   time.Time
	cur   *segment
	seq   int
	rows  int64
	err   error
	hook  func() // Options.copyData for this table
}

func (w *chunker) Write(b []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.hook != nil {
		w.hook()
	}
	if w.cur == nil {
		if w.err = w.start(); w.err != nil {
			return 0, w.err
		}
	}
	if len(w.cur.raw)+len(b) > w.p.chunk+512 && len(w.cur.raw) > 512 {
		// Cut at the last whole row; the rest starts the next entry.
		data := w.cur.raw[512:]
		cut := bytes.LastIndexByte(data, '\n') + 1
		if cut > 0 {
			rest := data[cut:]
			prev := w.cur
			if w.err = w.start(); w.err != nil {
				return 0, w.err
			}
			w.cur.raw = append(w.cur.raw, rest...)
			prev.raw = prev.raw[:512+cut]
			if w.err = w.emit(prev); w.err != nil {
				return 0, w.err
			}
		}
	}
	w.cur.raw = append(w.cur.raw, b...)
	return len(b), nil
}

// start takes a fresh segment with room for the header.
func (w *chunker) start() error {
	s, err := w.p.get(w.ctx)
	if err != nil {
		return err
	}
	s.raw = append(s.raw[:0], make([]byte, 512)...)
	w.cur = s
	return nil
}

// emit fills s's header and padding and submits it, once the gate opens.
func (w *chunker) emit(s *segment) error {
	data := s.raw[512:]
	if len(data) > 0 && data[len(data)-1] != '\n' {
		w.p.put(s)
		return fmt.Errorf("%w: COPY output does not end with a whole row", errEntry)
	}
	w.seq++
	hdr, err := tarHeaderBlock(dataEntryName(w.table, w.seq), int64(len(data)), w.mod)
	if err != nil {
		w.p.put(s)
		return err
	}
	copy(s.raw, hdr)
	w.rows += int64(bytes.Count(data, []byte{'\n'}))
	s.raw = append(s.raw, make([]byte, tarPad(int64(len(data))))...)
	select {
	case <-w.gate:
	case <-w.ctx.Done():
		w.p.put(s)
		return w.ctx.Err()
	}
	w.p.submit(s)
	return nil
}

// finish emits the last entry (an empty table has none).
func (w *chunker) finish() error {
	if w.err != nil {
		w.abandon()
		return w.err
	}
	if w.cur == nil {
		return nil
	}
	s := w.cur
	w.cur = nil
	if len(s.raw) == 512 {
		w.p.put(s)
		return nil
	}
	return w.emit(s)
}

func (w *chunker) abandon() {
	if w.cur != nil {
		w.p.put(w.cur)
		w.cur = nil
	}
}

// writeSchemaEntry puts pg_dump's archive file into the stream.
func writeSchemaEntry(ctx context.Context, p *pipeline, path string, mod time.Time) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return st.Size(), writeEntry(ctx, p, schemaEntry, st.Size(), f, mod)
}

// dumpOutput is what dumpToStore stored.
type dumpOutput struct {
	rawSize, storedSize int64
	rawSHA, storedSHA   string
	entries             int
	tables              []TableCount
	copied              []copyTable
}

// dumpToStore streams the backup object into the store under key: header,
// pg_dump's archive, the copied tables' rows, all in snap's snapshot. The
// object is complete and stored when it returns nil; on error the store
// holds nothing under key (Put's contract).
func dumpToStore(ctx context.Context, o *Options, snap *snapshot, pgDump, pgRestore, key string,
	recipients []age.Recipient, wd *workDir, res *Result) (out dumpOutput, err error) {
	all, copies, tableBytes, err := planTables(ctx, snap.tx, snap.info.Major, o.CopyMinBytes)
	if err != nil {
		return out, fmt.Errorf("backup: %w", err)
	}
	if err := lockCopies(ctx, snap.tx, copies); err != nil {
		return out, fmt.Errorf("backup: %w", err)
	}
	if o.afterLock != nil {
		o.afterLock()
	}
	var encoding string
	if err := snap.tx.QueryRow(ctx, "SELECT pg_encoding_to_char(encoding) FROM pg_database WHERE datname = current_database()").Scan(&encoding); err != nil {
		return out, fmt.Errorf("backup: read the database encoding: %w", err)
	}
	out.copied = copies

	// The store reads the stream as it is made. Put gets the caller's
	// context, not the one a failure below cancels: a failure aborts the
	// upload through the pipe instead, so an error from Put before that
	// is the store's own (or the caller's interrupt), never an echo of
	// another failure.
	pr, pw := io.Pipe()
	var putMu sync.Mutex
	var putErr error // set when Put failed on its own
	putDone := make(chan error, 1)
	go func(putCtx context.Context) {
		_, err := o.Store.Put(putCtx, key, pr, storage.PutOptions{})
		putMu.Lock()
		putErr = err
		putMu.Unlock()
		pr.CloseWithError(err) // unblocks the writer if Put gave up early
		putDone <- err
	}(ctx)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sink := newHashingWriter(pw)
	p, err := newPipeline(sink, o.Level, o.Threads, o.chunkSize, recipients)
	if err != nil {
		pw.CloseWithError(err)
		<-putDone
		return out, fmt.Errorf("backup: %w", err)
	}
	mod := o.Now()
	logged := time.Now()
	// The dump's bytes against the tables' size on disk: a logical dump is
	// usually somewhat smaller, so the phase may end before 100%.
	o.Progress.Phase("dump", progress.Bytes, tableBytes)
	p.progress = func(raw int64) {
		o.Progress.Set(raw)
		if time.Since(logged) >= 10*time.Second {
			logged = time.Now()
			o.Logger.Info("backup progress", "raw_bytes", raw, "stored_bytes", sink.n)
		}
	}

	// Everything below runs at once; the first failure cancels the rest.
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failure error
	fail := func(e error) {
		mu.Lock()
		if failure == nil || (errors.Is(failure, context.Canceled) && !errors.Is(e, context.Canceled)) {
			failure = e
		}
		mu.Unlock()
		p.fail(e)
		cancel()
	}
	gate := make(chan struct{})

	// Row counts of the tables pg_dump dumps, in the snapshot.
	var counted []TableCount
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := countSmall(ctx, snap.tx, all, copies)
		if err != nil {
			fail(fmt.Errorf("backup: %w", err))
			return
		}
		counted = c
	}()

	// ip2a-ops's own COPY of the big tables.
	var copiedRows []int64
	cp := &copier{dbURL: o.DatabaseURL, snapshot: snap.id, encoding: encoding, tables: copies, jobs: o.Jobs, p: p, gate: gate, mod: mod,
		copyData: o.copyData}
	if len(copies) > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rows, err := cp.run(ctx)
			if err != nil {
				fail(fmt.Errorf("dump database: %w", err))
				return
			}
			copiedRows = rows
		}()
	}

	// The header, then pg_dump's archive, then (the gate opens) the rows.
	wg.Add(1)
	go func() {
		defer wg.Done()
		hb, err := marshalHeader(archiveHeader{Kind: headerKind, Version: 1, Database: snap.info.Database,
			Encoding: encoding, Schema: schemaEntry, Tables: copies})
		if err == nil {
			err = writeEntry(ctx, p, headerEntry, int64(len(hb)), bytes.NewReader(hb), mod)
		}
		if err != nil {
			fail(fmt.Errorf("backup: %w", err))
			return
		}
		exclude := make([]string, len(copies))
		for i, c := range copies {
			exclude[i] = excludePattern(c)
		}
		archive := wd.file("schema.pgc")
		if err := runPgDump(ctx, pgDump, o.DatabaseURL, snap.id, archive, o.LockWaitTimeout, exclude); err != nil {
			fail(err)
			return
		}
		n, err := countEntries(ctx, pgRestore, archive)
		if err != nil {
			fail(err)
			return
		}
		out.entries = n + len(copies)
		if _, err := writeSchemaEntry(ctx, p, archive, mod); err != nil {
			fail(fmt.Errorf("backup: %w", diskFull(err, o.WorkDir)))
			return
		}
		_ = os.Remove(archive)
		close(gate)
	}()
	wg.Wait()

	if failure == nil {
		if err := writeTrailer(ctx, p); err != nil {
			fail(fmt.Errorf("backup: %w", err))
		}
	}
	rawN, rawSHA, perr := p.close()
	if failure == nil && perr != nil {
		failure = fmt.Errorf("backup: %w", perr)
	}
	if failure != nil {
		// A store that failed on its own is the cause of everything else.
		putMu.Lock()
		own := putErr
		putMu.Unlock()
		if own != nil {
			<-putDone
			res.Stage = "upload"
			return out, fmt.Errorf("backup: upload %s to %s: %w", key, o.Store, own)
		}
		pw.CloseWithError(failure)
		<-putDone
		return out, failure
	}
	res.Stage = "upload"
	t := time.Now()
	pw.Close()
	perr = <-putDone
	res.UploadSeconds = time.Since(t).Seconds()
	if perr != nil {
		return out, fmt.Errorf("backup: upload %s to %s: %w", key, o.Store, perr)
	}
	for i, c := range copies {
		for j := range counted {
			if counted[j].Schema == c.Schema && counted[j].Name == c.Name {
				counted[j].Rows = copiedRows[i]
			}
		}
	}
	out.tables = counted
	out.rawSize, out.rawSHA = rawN, rawSHA
	out.storedSize, out.storedSHA = sink.n, sink.sum()
	return out, nil
}
