package backup

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/internal/fixturetest"
	"github.com/ip2a/ip2a-ops/internal/pgtest"
	"github.com/ip2a/ip2a-ops/internal/s3test"
	"github.com/ip2a/ip2a-ops/pkg/exitcode"
	"github.com/ip2a/ip2a-ops/pkg/fixture"
	"github.com/ip2a/ip2a-ops/pkg/storage"
)

// The streaming paths under real faults: a COPY connection of the backup
// or of the restore terminated by the server, the S3 endpoint going away
// while the stream is being uploaded, and a stored object cut short.

// bulkTable is the table these tests make big enough that copying it,
// out of the source or into the target, lasts long enough to be caught
// in pg_stat_activity.
const bulkTable = "zz_bulk"

// bulkRows gives bulkTable about 45 MB of COPY text that compresses only
// about twofold (md5 hex), so the stored object spans several 5 MiB
// multipart parts.
const bulkRows = 600_000

// stuckDeadline bounds every wait on a backend or on the upload, and every
// Run, Restore and Verify here, so a hang fails the test instead of the
// suite's timeout.
const stuckDeadline = 3 * time.Minute

// bulkSource returns a context bounded by stuckDeadline and a fixture
// database with bulkTable added.
func bulkSource(t *testing.T, opts fixture.Options) (context.Context, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), stuckDeadline)
	t.Cleanup(cancel)
	src := fixturetest.NewTestDB(t, fixture.Newer, opts)
	exec1(t, src, fmt.Sprintf(`CREATE TABLE %[1]s (id bigint PRIMARY KEY, payload text NOT NULL);
		INSERT INTO %[1]s SELECT g, md5(g::text) || md5((-g)::text) FROM generate_series(1, %[2]d) g;
		ANALYZE %[1]s`, bulkTable, bulkRows))
	return ctx, src
}

// dbName is the database an URL connects to.
func dbName(t *testing.T, dbURL string) string {
	t.Helper()
	u, err := url.Parse(dbURL)
	require.NoError(t, err)
	name := strings.TrimPrefix(u.Path, "/")
	require.NotEmpty(t, name, "no database in %s", dbURL)
	return name
}

// terminateWhenActive polls pg_stat_activity through the admin connection
// until a backend of database db is running a statement matching the LIKE
// pattern, terminates that backend and returns the statement. It gives up
// when ctx ends or after a minute.
func terminateWhenActive(ctx context.Context, admin, db, pattern string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return "", err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		var query string
		var killed bool
		err := conn.QueryRow(ctx, `SELECT query, pg_terminate_backend(pid) FROM pg_stat_activity
			WHERE datname = $1 AND state = 'active' AND query LIKE $2 AND pid <> pg_backend_pid()
			LIMIT 1`, db, pattern).Scan(&query, &killed)
		switch {
		case err == nil && killed:
			return query, nil
		case err == nil:
			return "", fmt.Errorf("pg_terminate_backend refused for %q", query)
		case !errors.Is(err, pgx.ErrNoRows):
			if ctx.Err() != nil {
				return "", fmt.Errorf("no backend of %s ran %q: %w", db, pattern, ctx.Err())
			}
			return "", err
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("no backend of %s ran %q: %w", db, pattern, ctx.Err())
		case <-tick.C:
		}
	}
}

// killer runs terminateWhenActive beside the operation under test; wait
// stops it and returns what it did.
type killer struct {
	stop func()
	done chan killResult
}

type killResult struct {
	query string
	err   error
}

func startKiller(t *testing.T, db, pattern string) *killer {
	t.Helper()
	admin := pgtest.AdminURL(t)
	ctx, stop := context.WithCancel(t.Context())
	k := &killer{stop: stop, done: make(chan killResult, 1)}
	go func() {
		q, err := terminateWhenActive(ctx, admin, db, pattern)
		k.done <- killResult{q, err}
	}()
	t.Cleanup(func() { k.wait() })
	return k
}

func (k *killer) wait() killResult {
	k.stop()
	r := <-k.done
	k.done <- r // a second wait (the cleanup) gets the same answer
	return r
}

// TestCopyConnectionKilled: the server terminates the connection copying
// the biggest table in the middle of its COPY ... TO STDOUT; the run fails
// in its dump stage naming that table, in one line, and leaves no object
// and no scratch file.
func TestCopyConnectionKilled(t *testing.T) {
	t.Parallel()
	ctx, src := bulkSource(t, fixture.Options{Seed: 21, AuditYears: 2})
	st := localStore(t)
	work := t.TempDir()

	// The bulk table is the biggest, so it is the first one a connection
	// copies; the pattern matches only while its COPY runs.
	k := startKiller(t, dbName(t, src), `COPY "public"."`+bulkTable+`" % TO STDOUT`)
	res, err := Run(ctx, Options{DatabaseURL: src, Store: st, WorkDir: work, CopyMinBytes: 1, chunkSize: 16 << 10})
	kr := k.wait()
	require.NoError(t, kr.err, "the bulk table's COPY was never seen running (Run returned %v)", err)

	require.Error(t, err, "Run succeeded although %q was terminated", kr.query)
	t.Logf("terminated %q; Run: stage %s: %v", kr.query, res.Stage, err)
	requireDumpFailed(t, res, err, "copy public."+bulkTable+": ", st, work)
}

// TestS3GoesAwayMidStream: the S3 endpoint goes away once the first part
// of the multipart upload has arrived, while the rows are still being
// copied into the stream. The run fails naming the upload and the store,
// in one line, removes its scratch files, and returns: nothing keeps it
// waiting on the dead upload.
func TestS3GoesAwayMidStream(t *testing.T) {
	t.Parallel()
	ctx, src := bulkSource(t, fixture.Options{Seed: 22, AuditYears: 2})
	srv := s3test.Start(t)
	cfg := srv.Config("prod")
	cfg.PartSize = storage.MinPartSize
	st, err := storage.Open(ctx, cfg)
	require.NoError(t, err)
	work := t.TempDir()

	type outcome struct {
		res Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := Run(ctx, Options{DatabaseURL: src, Store: st, WorkDir: work, CopyMinBytes: 1, chunkSize: 64 << 10})
		done <- outcome{res, err}
	}()
	// The store reads a part at a time and sends it before reading on, so
	// once one whole part has arrived the stream is at most a part and the
	// pipeline's buffers ahead: far from the end of ~20 MB.
	deadline := time.After(time.Minute)
	for srv.BytesReceived() < int64(storage.MinPartSize) {
		select {
		case o := <-done:
			t.Fatalf("Run returned before the first part was uploaded (%d bytes): %v", srv.BytesReceived(), o.err)
		case <-deadline:
			t.Fatalf("the first part never arrived (%d bytes received)", srv.BytesReceived())
		case <-time.After(10 * time.Millisecond):
		}
	}
	srv.Stop()
	o := <-done

	require.Error(t, o.err, "Run succeeded although the store went away")
	t.Logf("stopped the server after %d bytes; Run: stage %s: %v", srv.BytesReceived(), o.res.Stage, o.err)
	requireOneLine(t, o.err)
	require.ErrorIs(t, o.err, storage.ErrUnreachable)
	// When the run fails and Put has already returned an error, dumpToStore
	// reports the store as the cause, in stage "upload", although the rows
	// were still being copied when it failed.
	require.ErrorContains(t, o.err, "backup: upload "+o.res.Key+" to "+st.String()+": ")
	require.Equal(t, "upload", o.res.Stage, "%v", o.err)
	require.Equal(t, exitcode.Failed, exitcode.Code(o.err), "%v", o.err)
	requireEmptyDir(t, work)
}

// TestRestoreTargetKilled: the server terminates one of the restore's
// COPY ... FROM STDIN connections while the bulk table loads; Restore
// returns a one-line error naming the table instead of waiting on the dead
// connection.
func TestRestoreTargetKilled(t *testing.T) {
	t.Parallel()
	ctx, src := bulkSource(t, fixture.Options{Seed: 23})
	st := localStore(t)
	res, err := Run(ctx, Options{DatabaseURL: src, Store: st, WorkDir: t.TempDir(), CopyMinBytes: 1})
	require.NoError(t, err)
	require.Contains(t, res.CopiedTables, "public."+bulkTable)

	target := pgtest.NewDatabase(t)
	k := startKiller(t, dbName(t, target), `COPY "public"."`+bulkTable+`" % FROM STDIN`)
	_, err = Restore(ctx, RestoreOptions{Store: st, ID: res.ID, TargetURL: target, WorkDir: t.TempDir()})
	kr := k.wait()
	require.NoError(t, kr.err, "the bulk table's load was never seen running (Restore returned %v)", err)

	require.Error(t, err, "Restore succeeded although %q was terminated", kr.query)
	t.Logf("terminated %q; Restore: %v", kr.query, err)
	requireOneLine(t, err)
	require.ErrorContains(t, err, "load public."+bulkTable+": ")
	require.Equal(t, exitcode.Failed, exitcode.Code(err), "%v", err)
}

// TestTruncatedObject: a stored object cut to half its size fails the
// contents and restore verifications with a checksum mismatch, and Restore
// refuses it before creating anything in the target.
func TestTruncatedObject(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), stuckDeadline)
	defer cancel()
	src := fixturetest.NewTestDB(t, fixture.Newer, fixture.Options{Seed: 24})
	st := localStore(t)
	res, err := Run(ctx, Options{DatabaseURL: src, Store: st, WorkDir: t.TempDir(), CopyMinBytes: 1, chunkSize: 16 << 10})
	require.NoError(t, err)
	require.NotEmpty(t, res.CopiedTables)
	path := filepath.Join(st.Dir(), filepath.FromSlash(res.Key))
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.NoError(t, os.Truncate(path, fi.Size()/2))

	for _, level := range []Level{LevelContents, LevelRestore} {
		// Verify records the reason as text (VerifyResult.Error) and wraps
		// only ErrVerifyFailed, as TestFlippedByte checks too.
		v, err := Verify(ctx, VerifyOptions{Store: st, ID: res.ID, Level: level, ScratchURL: pgtest.AdminURL(t),
			WorkDir: t.TempDir(), Record: true})
		require.ErrorIs(t, err, ErrVerifyFailed, level)
		requireOneLine(t, err)
		require.Equal(t, exitcode.Failed, exitcode.Code(err), level)
		require.False(t, v.OK, level)
		require.Contains(t, v.Error, "checksum mismatch", level)
	}
	m, err := ReadManifest(ctx, st, "", res.ID)
	require.NoError(t, err)
	require.False(t, m.Verified())

	target := pgtest.NewDatabase(t)
	_, err = Restore(ctx, RestoreOptions{Store: st, ID: res.ID, TargetURL: target, WorkDir: t.TempDir()})
	requireOneLine(t, err)
	require.ErrorContains(t, err, "checksum mismatch")
	require.Equal(t, exitcode.Failed, exitcode.Code(err))
	require.Zero(t, query1[int64](t, target, "SELECT count(*) FROM ("+userTablesSQL+") t"), "Restore created tables from a damaged object")
}

// TestCopyKilledWhileStreamingToS3: a COPY killed while its rows are being
// uploaded is reported as that table's failure (stage dump, exit 1), not as
// the upload the failure then aborts: it once came out as a cancelled
// upload with exit 130 in one run of three, because aborting the dump
// cancelled the upload's context too.
func TestCopyKilledWhileStreamingToS3(t *testing.T) {
	t.Parallel()
	ctx, src := bulkSource(t, fixture.Options{Seed: 25, AuditYears: 2})
	srv := s3test.Start(t)
	cfg := srv.Config("prod")
	cfg.PartSize = storage.MinPartSize
	st, err := storage.Open(ctx, cfg)
	require.NoError(t, err)
	work := t.TempDir()
	// Once the server has 1 MiB of the object, the next piece of the bulk
	// table's COPY waits until the server's backend running that COPY has
	// been terminated: the kill lands mid-COPY however slow the machine.
	var once sync.Once
	var kr killResult
	copyData := func(table string) {
		if table != "public."+bulkTable || srv.BytesReceived() < 1<<20 {
			return
		}
		once.Do(func() {
			k := startKiller(t, dbName(t, src), `COPY "public"."`+bulkTable+`" % TO STDOUT`)
			kr = <-k.done
			k.done <- kr
		})
	}
	res, err := Run(ctx, Options{DatabaseURL: src, Store: st, WorkDir: work, CopyMinBytes: 1, copyData: copyData})
	require.NotEmpty(t, kr.query, "the COPY ended before the server had 1 MiB of the object")
	require.NoError(t, kr.err)
	require.NotErrorIs(t, err, context.Canceled)
	requireDumpFailed(t, res, err, "copy public."+bulkTable+": ", st, work)
}

// TestMigrationQueuedBehindTheBackup: an ALTER TABLE that queues for its
// lock between the backup's snapshot locking a big table and the COPY of
// it would wait for the backup while the COPY waits behind it, a deadlock
// the server cannot see. The backup fails at once saying so, and the ALTER
// goes through when the backup's snapshot ends.
func TestMigrationQueuedBehindTheBackup(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	src := fixturetest.NewTestDB(t, fixture.Newer, fixture.Options{Seed: 35})
	st := localStore(t)
	work := t.TempDir()
	altered := make(chan error, 1)
	queued := func() {
		conn, err := pgx.Connect(ctx, src)
		require.NoError(t, err)
		go func() {
			defer conn.Close(context.WithoutCancel(ctx))
			_, err := conn.Exec(ctx, "ALTER TABLE members ADD COLUMN nickname text")
			altered <- err
		}()
		// Wait until the ALTER is really waiting for its lock.
		for {
			n := query1[int64](t, src, `SELECT count(*) FROM pg_stat_activity
				WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'ALTER TABLE members%'`)
			if n == 1 {
				return
			}
			require.NoError(t, ctx.Err(), "the ALTER never queued")
			time.Sleep(10 * time.Millisecond)
		}
	}
	res, err := Run(ctx, Options{DatabaseURL: src, Store: st, WorkDir: work, CopyMinBytes: 1, afterLock: queued})
	requireDumpFailed(t, res, err, "lock public.members: another session is waiting", st, work)
	require.NoError(t, <-altered, "the migration must go through once the backup gave up")
}

// requireDumpFailed asserts a run that failed while dumping: a one-line
// error containing want, exit 1, stage dump, no backup and no scratch
// files left.
func requireDumpFailed(t *testing.T, res Result, err error, want string, st storage.Store, work string) {
	t.Helper()
	requireOneLine(t, err)
	require.ErrorContains(t, err, want)
	require.Equal(t, exitcode.Failed, exitcode.Code(err), "%v", err)
	require.Equal(t, "dump", res.Stage, "%v", err)
	requireNoBackup(t, st)
	requireEmptyDir(t, work)
}
