package backup

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/internal/fixturetest"
	"github.com/ip2a/ip2a-ops/internal/pgtest"
	"github.com/ip2a/ip2a-ops/internal/s3test"
	"github.com/ip2a/ip2a-ops/pkg/exitcode"
	"github.com/ip2a/ip2a-ops/pkg/fixture"
	"github.com/ip2a/ip2a-ops/pkg/storage"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(backupChild())
	}
	pgtest.Main(m)
}

func localStore(t testing.TB) *storage.Local {
	t.Helper()
	st, err := storage.NewLocal(t.TempDir())
	require.NoError(t, err)
	return st
}

func exec1(t testing.TB, url, sql string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	require.NoError(t, err)
}

func query1[T any](t testing.TB, url, sql string) T {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer conn.Close(ctx)
	var v T
	require.NoError(t, conn.QueryRow(ctx, sql).Scan(&v))
	return v
}

// TestRoundTrip makes a backup to each kind of store, with and without
// encryption, and takes it through every verification level and a restore.
func TestRoundTrip(t *testing.T) {
	t.Parallel()
	id, err := age.GenerateX25519Identity()
	require.NoError(t, err)
	tests := []struct {
		name    string
		gen     fixture.Generation
		store   func(t *testing.T) storage.Store
		encrypt bool
		// copyMin: Options.CopyMinBytes (0: the default, which copies
		// none of the fixture's small tables; 1: every table with rows)
		copyMin int64
	}{
		{"local newer", fixture.Newer, func(t *testing.T) storage.Store { return localStore(t) }, false, 0},
		{"local older encrypted", fixture.Older, func(t *testing.T) storage.Store { return localStore(t) }, true, 0},
		{"s3 newer encrypted, tables copied", fixture.Newer, func(t *testing.T) storage.Store {
			srv := s3test.Start(t)
			st, err := storage.Open(t.Context(), srv.Config("prod"))
			require.NoError(t, err)
			return st
		}, true, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			src := fixturetest.NewTestDB(t, tt.gen, fixture.Options{Seed: 3, AuditYears: 1})
			st := tt.store(t)
			opts := Options{DatabaseURL: src, Store: st, WorkDir: t.TempDir(), Tool: "ip2a-ops test", CopyMinBytes: tt.copyMin}
			var ids [][]byte
			if tt.encrypt {
				opts.Recipients = []string{"# ops laptop", id.Recipient().String()}
				ids = [][]byte{[]byte(id.String() + "\n")}
			}
			res, err := Run(ctx, opts)
			require.NoError(t, err)
			require.Equal(t, "done", res.Stage)
			require.True(t, res.Verified)
			require.Equal(t, tt.encrypt, res.Encrypted)
			require.Greater(t, res.Entries, 40)
			require.Less(t, res.StoredBytes, res.DumpBytes)

			// The manifest's counts are the database's.
			m := *res.Manifest
			members := query1[int64](t, src, "SELECT count(*) FROM members")
			found := false
			for _, tc := range m.Tables {
				if tc.QualifiedName() == "public.members" {
					require.Equal(t, members, tc.Rows)
					found = true
				}
			}
			require.True(t, found)
			if tt.gen == fixture.Newer {
				require.Equal(t, []string{"audit_logs_prevent_delete", "audit_logs_prevent_update"}, m.AuditTriggers)
			} else {
				require.Empty(t, m.AuditTriggers)
			}

			l, err := List(ctx, ListOptions{Store: st})
			require.NoError(t, err)
			require.Len(t, l.Backups, 1)
			require.Equal(t, res.ID, l.Backups[0].ID)
			require.Equal(t, 1, l.Backups[0].Revision)

			for _, level := range []Level{LevelChecksum, LevelContents, LevelRestore} {
				v, err := Verify(ctx, VerifyOptions{Store: st, ID: "latest", Level: level, Identities: ids,
					ScratchURL: pgtest.AdminURL(t), WorkDir: t.TempDir(), Record: true})
				require.NoError(t, err, level)
				require.True(t, v.OK)
				require.True(t, v.Recorded)
			}
			m, err = ReadManifest(ctx, st, "", res.ID)
			require.NoError(t, err)
			require.Equal(t, 4, m.Revision)
			require.Len(t, m.Verifications, 4)
			require.True(t, m.Verified())

			target := pgtest.NewDatabase(t)
			rr, err := Restore(ctx, RestoreOptions{Store: st, ID: res.ID, TargetURL: target, Identities: ids, WorkDir: t.TempDir()})
			require.NoError(t, err)
			require.Empty(t, rr.Mismatches)
			require.Equal(t, members, query1[int64](t, target, "SELECT count(*) FROM members"))
		})
	}
}

// TestRestoreRefusals: the source database (reached by another URL), a
// non-empty target without --force, and an encrypted backup without the
// identity are all refused, with the right kind of error.
func TestRestoreRefusals(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	src := fixturetest.NewTestDB(t, fixture.Newer, fixture.Options{Seed: 1})
	st := localStore(t)
	res, err := Run(ctx, Options{DatabaseURL: src, Store: st, WorkDir: t.TempDir()})
	require.NoError(t, err)

	// Same database through a different spelling of the URL.
	alias := strings.Replace(src, "127.0.0.1", "localhost", 1)
	require.NotEqual(t, src, alias)
	_, err = Restore(ctx, RestoreOptions{Store: st, ID: res.ID, TargetURL: alias, Force: true, WorkDir: t.TempDir()})
	require.ErrorIs(t, err, ErrSourceDatabase)
	var te *TargetError
	require.ErrorAs(t, err, &te)
	require.Equal(t, res.ID, te.BackupID, "names the backup, for the hint")

	target := pgtest.NewDatabase(t)
	exec1(t, target, "CREATE TABLE keepme (id int); INSERT INTO keepme VALUES (1)")
	_, err = Restore(ctx, RestoreOptions{Store: st, ID: res.ID, TargetURL: target, WorkDir: t.TempDir()})
	require.ErrorIs(t, err, ErrTargetNotEmpty)
	require.Equal(t, int64(1), query1[int64](t, target, "SELECT count(*) FROM keepme"))

	// --force restores the backup's objects; an extra table shows up as
	// "not in the backup", so the restore is not called clean.
	_, err = Restore(ctx, RestoreOptions{Store: st, ID: res.ID, TargetURL: target, Force: true, WorkDir: t.TempDir()})
	require.ErrorContains(t, err, "public.keepme not in the backup")

	_, err = Restore(ctx, RestoreOptions{Store: st, ID: "20200101T000000Z-0000", TargetURL: target, WorkDir: t.TempDir()})
	require.ErrorIs(t, err, ErrNotFound)

	idn, err := age.GenerateX25519Identity()
	require.NoError(t, err)
	enc, err := Run(ctx, Options{DatabaseURL: src, Store: st, WorkDir: t.TempDir(), Recipients: []string{idn.Recipient().String()}})
	require.NoError(t, err)
	_, err = Verify(ctx, VerifyOptions{Store: st, ID: enc.ID, Level: LevelContents, WorkDir: t.TempDir(), Record: true})
	require.ErrorIs(t, err, ErrVerifyFailed)
	require.ErrorContains(t, err, "no age identity")
}

// TestRestoreDrillThrowawayCluster runs the restore level without a
// scratch URL: a throwaway cluster is started and removed.
func TestRestoreDrillThrowawayCluster(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	src := fixturetest.NewTestDB(t, fixture.Newer, fixture.Options{Seed: 2})
	st := localStore(t)
	res, err := Run(ctx, Options{DatabaseURL: src, Store: st, WorkDir: t.TempDir(), Verify: LevelNone})
	require.NoError(t, err)
	require.False(t, res.Verified)
	v, err := Verify(ctx, VerifyOptions{Store: st, ID: res.ID, Level: LevelRestore, WorkDir: t.TempDir(), Record: true})
	if errors.Is(err, ErrToolMissing) {
		t.Skipf("no server binaries: %v", err)
	}
	require.NoError(t, err)
	require.Greater(t, v.Tables, 40)
	require.Equal(t, []string{"audit_logs_prevent_delete", "audit_logs_prevent_update"}, v.TriggersChecked)
}

// TestRestoreDetectsMismatch: a manifest whose counts differ from the
// archive (here edited, as a dump that lost rows would look) fails the
// drill with exit 1 and names the table.
func TestRestoreDetectsMismatch(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	src := fixturetest.NewTestDB(t, fixture.Newer, fixture.Options{Seed: 4})
	st := localStore(t)
	res, err := Run(ctx, Options{DatabaseURL: src, Store: st, WorkDir: t.TempDir()})
	require.NoError(t, err)
	m := *res.Manifest
	for i := range m.Tables {
		if m.Tables[i].Name == "members" {
			m.Tables[i].Rows++
		}
	}
	require.NoError(t, writeManifest(ctx, st, DefaultPrefix, &m))
	v, err := Verify(ctx, VerifyOptions{Store: st, ID: res.ID, Level: LevelRestore, ScratchURL: pgtest.AdminURL(t), WorkDir: t.TempDir(), Record: true})
	require.ErrorIs(t, err, ErrVerifyFailed)
	require.Equal(t, exitcode.Failed, exitcode.Code(err))
	require.Len(t, v.Mismatches, 1)
	require.Equal(t, "public.members", v.Mismatches[0].Table)
	got, err := ReadManifest(ctx, st, "", res.ID)
	require.NoError(t, err)
	require.False(t, got.Verified())
}

func TestOptionsValidate(t *testing.T) {
	t.Parallel()
	st := &storage.Local{}
	tests := []struct {
		name string
		o    Options
		want string
	}{
		{"no url", Options{Store: st}, "DatabaseURL"},
		{"no store", Options{DatabaseURL: "postgres://x"}, "Store"},
		{"level", Options{DatabaseURL: "x", Store: st, Level: 9}, "Level"},
		{"verify", Options{DatabaseURL: "x", Store: st, Verify: LevelRestore}, "Verify"},
		{"recipient", Options{DatabaseURL: "x", Store: st, Recipients: []string{"age1nope"}}, `Recipients: recipient "age1nope"`},
		{"ok", Options{DatabaseURL: "x", Store: st}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.o.Validate()
			if tt.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.want)
		})
	}
}

// writeScript writes an executable shell script.
func writeScript(t testing.TB, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755))
	return p
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestCopiedTables: whichever tables ip2a-ops copies itself (all of them,
// in entries small enough that every table is cut into many at row
// boundaries; none; the default), with or without encryption, every
// verification level passes and a restore gives back exactly the source's
// rows, table by table; restoring again over it with Force does too.
func TestCopiedTables(t *testing.T) {
	t.Parallel()
	src := fixturetest.NewTestDB(t, fixture.Newer, fixture.Options{Seed: 11, AuditYears: 2})
	// A name that is a pg_dump pattern if left unquoted (its data must be
	// excluded from pg_dump exactly, or a restore doubles its rows), and a
	// generated column (not copied: the server computes it again).
	exec1(t, src, `CREATE TABLE "Odd.Name*" (id int, "say ""hi""" text, twice int GENERATED ALWAYS AS (id * 2) STORED);
		INSERT INTO "Odd.Name*" (id, "say ""hi""") SELECT g, 'tab	here, newline
there, ' || g FROM generate_series(1, 500) g`)
	id, err := age.GenerateX25519Identity()
	require.NoError(t, err)
	want := tableDigests(t, src)
	tests := []struct {
		name      string
		minBytes  int64
		chunk     int
		encrypt   bool
		allCopied bool
	}{
		{"every table, small entries, encrypted", 1, 16 << 10, true, true},
		{"every table, default entries", 1, 0, false, true},
		{"none copied", -1, 0, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			st := localStore(t)
			opts := Options{DatabaseURL: src, Store: st, WorkDir: t.TempDir(), CopyMinBytes: tt.minBytes, chunkSize: tt.chunk}
			var ids [][]byte
			if tt.encrypt {
				opts.Recipients = []string{id.Recipient().String()}
				ids = [][]byte{[]byte(id.String())}
			}
			res, err := Run(ctx, opts)
			require.NoError(t, err)
			m := *res.Manifest
			require.Equal(t, formatTar, m.Dump.Format)
			if tt.allCopied {
				// Every table with pages; empty ones stay with pg_dump.
				require.Greater(t, len(m.Dump.CopiedTables), 30)
				require.Contains(t, m.Dump.CopiedTables, "public.audit_logs")
				require.Contains(t, m.Dump.CopiedTables, "public.members")
				require.Contains(t, m.Dump.CopiedTables, "public.Odd.Name*")
			} else {
				require.Empty(t, m.Dump.CopiedTables)
			}
			for _, level := range []Level{LevelContents, LevelRestore} {
				v, err := Verify(ctx, VerifyOptions{Store: st, ID: res.ID, Level: level, ScratchURL: pgtest.AdminURL(t),
					Identities: ids, WorkDir: t.TempDir()})
				require.NoError(t, err, level)
				require.Empty(t, v.Mismatches)
				require.Equal(t, m.Dump.Entries, v.Entries)
			}
			target := pgtest.NewDatabase(t)
			for _, force := range []bool{false, true} {
				_, err := Restore(ctx, RestoreOptions{Store: st, ID: res.ID, TargetURL: target, Identities: ids, WorkDir: t.TempDir(), Force: force})
				require.NoError(t, err, "force=%v", force)
				require.Equal(t, want, tableDigests(t, target), "force=%v", force)
			}
		})
	}
}

// tableDigests returns, for every user table, an MD5 of its rows' text
// in a stable order: two databases with the same digests hold the same rows.
func tableDigests(t *testing.T, dbURL string) map[string]string {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dbURL)
	require.NoError(t, err)
	defer conn.Close(t.Context())
	rows, err := conn.Query(t.Context(), userTablesSQL)
	require.NoError(t, err)
	var names []string
	for rows.Next() {
		var s, n string
		require.NoError(t, rows.Scan(&s, &n))
		names = append(names, pgx.Identifier{s, n}.Sanitize())
	}
	require.NoError(t, rows.Err())
	out := map[string]string{}
	for _, n := range names {
		var d string
		require.NoError(t, conn.QueryRow(t.Context(), "SELECT md5(coalesce(string_agg(x::text, E'\\n' ORDER BY x::text), '')) || ' ' || count(*) FROM "+n+" x").Scan(&d))
		out[n] = d
	}
	return out
}

func ptr[T any](v T) *T { return &v }
