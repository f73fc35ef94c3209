package backup

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/internal/fixturetest"
	"github.com/ip2a/ip2a-ops/internal/s3test"
	"github.com/ip2a/ip2a-ops/internal/tmpfs"
	"github.com/ip2a/ip2a-ops/pkg/exitcode"
	"github.com/ip2a/ip2a-ops/pkg/fixture"
	"github.com/ip2a/ip2a-ops/pkg/storage"
)

// requireNoBackup asserts that nothing in the store is taken for a backup
// and no data object was left behind.
func requireNoBackup(t *testing.T, st storage.Store) {
	t.Helper()
	l, err := List(t.Context(), ListOptions{Store: st})
	require.NoError(t, err)
	require.Empty(t, l.Backups)
	objs, err := st.List(t.Context(), DefaultPrefix)
	require.NoError(t, err)
	require.Empty(t, objs)
}

func requireEmptyDir(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Empty(t, ents, "scratch files left in %s", dir)
}

func requireOneLine(t *testing.T, err error) {
	t.Helper()
	require.Error(t, err)
	require.NotContains(t, err.Error(), "\n")
}

// TestFlippedByte: one byte changed in the stored object fails every
// verification level with a checksum mismatch, recorded in the manifest.
func TestFlippedByte(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	src := fixturetest.NewTestDB(t, fixture.Newer, fixture.Options{Seed: 5})
	st := localStore(t)
	res, err := Run(ctx, Options{DatabaseURL: src, Store: st, WorkDir: t.TempDir()})
	require.NoError(t, err)
	path := filepath.Join(st.Dir(), filepath.FromSlash(res.Key))
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	b[len(b)/2] ^= 0x01
	require.NoError(t, os.WriteFile(path, b, 0o600))
	for _, level := range []Level{LevelChecksum, LevelContents, LevelRestore} {
		v, err := Verify(ctx, VerifyOptions{Store: st, ID: res.ID, Level: level, WorkDir: t.TempDir(), Record: true})
		require.ErrorIs(t, err, ErrVerifyFailed, level)
		requireOneLine(t, err)
		require.Equal(t, exitcode.Failed, exitcode.Code(err))
		require.Contains(t, v.Error, "checksum mismatch")
	}
	m, err := ReadManifest(ctx, st, "", res.ID)
	require.NoError(t, err)
	require.False(t, m.Verified())
	require.Len(t, m.Verifications, 4) // the one at creation, then three failures
}

// TestStorageFaults: an S3 endpoint that went away and wrong credentials
// fail before the dump, naming the cause, and leave no backup.
func TestStorageFaults(t *testing.T) {
	t.Parallel()
	src := fixturetest.NewTestDB(t, fixture.Newer, fixture.Options{Seed: 6})
	tests := []struct {
		name   string
		mutate func(srv *s3test.Server, cfg *storage.Config)
		want   error
	}{
		{"endpoint gone", func(srv *s3test.Server, cfg *storage.Config) { srv.Stop() }, storage.ErrUnreachable},
		{"wrong secret", func(srv *s3test.Server, cfg *storage.Config) { cfg.SecretKey = "wrong" }, storage.ErrAccessDenied},
		{"no bucket", func(srv *s3test.Server, cfg *storage.Config) { cfg.Bucket = "missing-bucket"; cfg.URL = "" }, storage.ErrBucketNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := s3test.Start(t)
			cfg := srv.Config("prod")
			tt.mutate(srv, &cfg)
			st, err := storage.Open(t.Context(), cfg)
			require.NoError(t, err)
			work := t.TempDir()
			res, err := Run(t.Context(), Options{DatabaseURL: src, Store: st, WorkDir: work})
			require.ErrorIs(t, err, tt.want)
			requireOneLine(t, err)
			require.Equal(t, "cleanup", res.Stage)
			requireEmptyDir(t, work)
		})
	}
}

// TestS3WithoutMultipartListing: a server that does not implement
// ListMultipartUploads (s3rver answers 501 NotImplemented) only loses the
// clearing of stale uploads, which is housekeeping: the run warns, says so
// in its result, and stores a verified backup.
func TestS3WithoutMultipartListing(t *testing.T) {
	t.Parallel()
	src := fixturetest.NewTestDB(t, fixture.Older, fixture.Options{Seed: 6})
	srv := s3test.Start(t)
	srv.NotImplement(s3test.ListMultipartUploads)
	st, err := storage.Open(t.Context(), srv.Config("prod"))
	require.NoError(t, err)
	var logs bytes.Buffer
	res, err := Run(t.Context(), Options{DatabaseURL: src, Store: st, WorkDir: t.TempDir(), Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	require.NoError(t, err)
	require.True(t, res.Verified)
	require.Len(t, res.Warnings, 1)
	require.Contains(t, res.Warnings[0], "NotImplemented")
	require.Regexp(t, `"level":"WARN","msg":"could not clear incomplete uploads of interrupted runs; going on","store":"s3://ip2a-test/prod at [^"]+","error":"s3 clean temp prod/: NotImplemented`, logs.String())
	l, err := List(t.Context(), ListOptions{Store: st})
	require.NoError(t, err)
	require.Len(t, l.Backups, 1)
}

// TestS3GoesAwayBeforeUpload: the endpoint answers the first listing, then
// goes away while pg_dump runs; the upload fails naming the unreachable
// endpoint and the scratch files are removed.
func TestS3GoesAwayBeforeUpload(t *testing.T) {
	t.Parallel()
	src := fixturetest.NewTestDB(t, fixture.Newer, fixture.Options{Seed: 6})
	srv := s3test.Start(t)
	st, err := storage.Open(t.Context(), srv.Config("prod"))
	require.NoError(t, err)
	dir := t.TempDir()
	// A pg_dump wrapper that waits at a marker file, so the server is
	// stopped while the run is in its dump stage.
	marker := filepath.Join(dir, "dumping")
	real, err := exec.LookPath("pg_dump")
	require.NoError(t, err)
	wrapper := writeScript(t, dir, "pg_dump", fmt.Sprintf(`if [ "$1" = --version ]; then exec %s --version; fi
touch %s
while [ -e %s ]; do sleep 0.01; done
exec %s "$@"`, real, marker, marker, real))
	done := make(chan error, 1)
	work := t.TempDir()
	go func() {
		_, err := Run(t.Context(), Options{DatabaseURL: src, Store: st, WorkDir: work, PgDump: wrapper,
			PgRestore: filepath.Join(filepath.Dir(real), "pg_restore")})
		done <- err
	}()
	waitFor(t, "the dump to start", func() bool { _, err := os.Stat(marker); return err == nil })
	srv.Stop()
	require.NoError(t, os.Remove(marker))
	err = <-done
	require.ErrorIs(t, err, storage.ErrUnreachable)
	require.ErrorContains(t, err, "backup: upload")
	requireOneLine(t, err)
	requireEmptyDir(t, work)
}

// TestPgDumpTools: a missing or too old pg_dump is a usage error (exit 2)
// saying what to install.
func TestPgDumpTools(t *testing.T) {
	t.Parallel()
	src := fixturetest.NewTestDB(t, fixture.Older, fixture.Options{Seed: 7})
	dir := t.TempDir()
	old := writeScript(t, dir, "pg_dump", `echo "pg_dump (PostgreSQL) 13.4"`)
	tests := []struct {
		name, pgDump, want string
	}{
		{"missing", filepath.Join(dir, "nope", "pg_dump"), "pg_dump: "},
		{"too old", old, "is version 13, older than the server (15)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := localStore(t)
			_, err := Run(t.Context(), Options{DatabaseURL: src, Store: st, PgDump: tt.pgDump, WorkDir: t.TempDir()})
			require.ErrorIs(t, err, ErrToolMissing)
			require.ErrorContains(t, err, tt.want)
			var te *ToolError
			require.ErrorAs(t, err, &te)
			require.Equal(t, "pg_dump", te.Tool)
			requireNoBackup(t, st)
		})
	}
}

// TestPgDumpFailsHalfway: a real pg_dump that fails after dumping some
// tables' data (a table it may not read with row security off) leaves no
// backup, no scratch file, and says why in one line.
func TestPgDumpFailsHalfway(t *testing.T) {
	t.Parallel()
	src := fixturetest.NewTestDB(t, fixture.Newer, fixture.Options{Seed: 8})
	var b [4]byte
	_, _ = rand.Read(b[:])
	role := "dumper_" + hex.EncodeToString(b[:])
	exec1(t, src, fmt.Sprintf(`CREATE ROLE %[1]s LOGIN;
		GRANT SELECT ON ALL TABLES IN SCHEMA public TO %[1]s;
		GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO %[1]s;
		CREATE TABLE zz_private (id int);
		INSERT INTO zz_private SELECT generate_series(1, 10);
		ALTER TABLE zz_private OWNER TO %[1]s;
		ALTER TABLE zz_private ENABLE ROW LEVEL SECURITY;
		ALTER TABLE zz_private FORCE ROW LEVEL SECURITY;
		CREATE POLICY only_even ON zz_private USING (id %% 2 = 0);`, role))
	t.Cleanup(func() {
		exec1(t, src, "DROP TABLE zz_private; DROP OWNED BY "+role+"; DROP ROLE "+role)
	})
	u := strings.Replace(src, "postgres@", role+"@", 1)
	st := localStore(t)
	work := t.TempDir()
	res, err := Run(t.Context(), Options{DatabaseURL: u, Store: st, WorkDir: work})
	require.ErrorContains(t, err, "dump database: pg_dump failed (exit status 1)")
	require.ErrorContains(t, err, "row-level security")
	requireOneLine(t, err)
	require.Equal(t, exitcode.Failed, exitcode.Code(err))
	require.Equal(t, "dump", res.Stage)
	requireNoBackup(t, st)
	requireEmptyDir(t, work)
}

// TestDiskFull: a scratch directory on a small tmpfs fills up during the
// dump; the run fails naming the full disk and leaves nothing.
func TestDiskFull(t *testing.T) {
	t.Parallel()
	mnt := t.TempDir()
	tmpfs.Mount(t, mnt, "256k")
	src := fixturetest.NewTestDB(t, fixture.Newer, fixture.Options{Seed: 9, AuditYears: 2})
	st := localStore(t)
	res, err := Run(t.Context(), Options{DatabaseURL: src, Store: st, WorkDir: mnt})
	require.ErrorContains(t, err, "No space left on device")
	require.ErrorContains(t, err, "the scratch directory")
	requireOneLine(t, err)
	require.Equal(t, "dump", res.Stage)
	requireNoBackup(t, st)
	requireEmptyDir(t, mnt)
}

// TestLeftoversCleaned: a dead run's scratch directory and a data object
// that never got its manifest are removed by the next run; a live run's
// directory is left alone.
func TestLeftoversCleaned(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	src := fixturetest.NewTestDB(t, fixture.Older, fixture.Options{Seed: 10})
	st := localStore(t)
	work := t.TempDir()
	dead := filepath.Join(work, workPrefix+"dump-999999-abc")
	require.NoError(t, os.MkdirAll(dead, 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(dead, "lock"), nil, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dead, "dump.pgc"), []byte("partial"), 0o600))
	live, err := newWorkDir(work, "dump")
	require.NoError(t, err)
	defer live.remove()
	orphan := DefaultPrefix + "20250101T020000Z-dead/" + dataName
	_, err = st.Put(ctx, orphan, strings.NewReader("half a backup"), storage.PutOptions{})
	require.NoError(t, err)

	res, err := Run(ctx, Options{DatabaseURL: src, Store: st, WorkDir: work, OrphanGrace: time.Nanosecond})
	require.NoError(t, err)
	require.Contains(t, res.Cleaned, dead)
	require.Contains(t, res.Cleaned, st.String()+"/"+orphan)
	require.NoDirExists(t, dead)
	require.DirExists(t, live.path)
	_, err = st.Stat(ctx, orphan)
	require.ErrorIs(t, err, storage.ErrNotExist)
	l, err := List(ctx, ListOptions{Store: st})
	require.NoError(t, err)
	require.Len(t, l.Backups, 1)
}
