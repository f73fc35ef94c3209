package backup

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/internal/fixturetest"
	"github.com/ip2a/ip2a-ops/internal/pgtest"
	"github.com/ip2a/ip2a-ops/pkg/fixture"
	"github.com/ip2a/ip2a-ops/pkg/storage"
)

// TestCustomFormatBackupsStillRestore: a backup in the format made before
// the tar stream (pg_dump's custom archive, zstd-compressed, maybe
// age-encrypted, under dump.pgc.zst) is listed, passes every verification
// level, restores the source's rows, and a flipped byte in it is still
// caught as a checksum mismatch.
func TestCustomFormatBackupsStillRestore(t *testing.T) {
	t.Parallel()
	src := fixturetest.NewTestDB(t, fixture.Newer, fixture.Options{Seed: 21, AuditYears: 1})
	members := query1[int64](t, src, "SELECT count(*) FROM members")
	idn, err := age.GenerateX25519Identity()
	require.NoError(t, err)
	for _, encrypt := range []bool{false, true} {
		name := "plain"
		if encrypt {
			name = "encrypted"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			st := localStore(t)
			var recipient *age.X25519Recipient
			var ids [][]byte
			if encrypt {
				recipient = idn.Recipient()
				ids = [][]byte{[]byte(idn.String() + "\n")}
			}
			m := storeCustomBackup(t, src, st, recipient)

			l, err := List(ctx, ListOptions{Store: st})
			require.NoError(t, err)
			require.Empty(t, l.Unreadable)
			require.Len(t, l.Backups, 1)
			require.Equal(t, m.ID, l.Backups[0].ID)
			require.Equal(t, "custom", l.Backups[0].Dump.Format)

			for _, level := range []Level{LevelChecksum, LevelContents, LevelRestore} {
				v, err := Verify(ctx, VerifyOptions{Store: st, ID: m.ID, Level: level, Identities: ids,
					ScratchURL: pgtest.AdminURL(t), WorkDir: t.TempDir(), Record: true})
				require.NoError(t, err, level)
				require.True(t, v.OK, level)
				require.True(t, v.Recorded, level)
				require.Empty(t, v.Mismatches, level)
				if level != LevelChecksum {
					require.Equal(t, m.Dump.Entries, v.Entries, level)
				}
			}
			target := pgtest.NewDatabase(t)
			rr, err := Restore(ctx, RestoreOptions{Store: st, ID: m.ID, TargetURL: target, Identities: ids, WorkDir: t.TempDir()})
			require.NoError(t, err)
			require.Empty(t, rr.Mismatches)
			require.Equal(t, len(m.Tables), rr.Tables)
			require.Equal(t, members, query1[int64](t, target, "SELECT count(*) FROM members"))

			path := filepath.Join(st.Dir(), filepath.FromSlash(m.Object.Key))
			b, err := os.ReadFile(path)
			require.NoError(t, err)
			b[len(b)/2] ^= 0x01
			require.NoError(t, os.WriteFile(path, b, 0o600))
			v, err := Verify(ctx, VerifyOptions{Store: st, ID: m.ID, Level: LevelContents, Identities: ids, WorkDir: t.TempDir(), Record: true})
			require.ErrorIs(t, err, ErrVerifyFailed)
			requireOneLine(t, err)
			require.Contains(t, v.Error, "checksum mismatch")
		})
	}
}

// storeCustomBackup makes a backup of srcURL the way ip2a-ops did before
// the tar format: pg_dump --format=custom --compress=0 in an exported
// snapshot whose transaction also counts the rows, the archive
// zstd-compressed (then age-encrypted to recipient, when given) and stored
// under dump.pgc.zst[.age], then the manifest written.
func storeCustomBackup(t *testing.T, srcURL string, st storage.Store, recipient *age.X25519Recipient) Manifest {
	t.Helper()
	ctx := t.Context()
	started := time.Now().UTC()
	snap, err := openSnapshot(ctx, srcURL, time.Minute)
	require.NoError(t, err)
	defer snap.close(ctx)

	pgDump, pgDumpVersion, err := findTool(ctx, "pg_dump", "", snap.info.Major)
	require.NoError(t, err)
	pgRestore, _, err := findTool(ctx, "pg_restore", siblingTool(pgDump, "pg_restore"), snap.info.Major)
	require.NoError(t, err)
	dir := t.TempDir()
	raw := filepath.Join(dir, "dump.pgc")
	conn, env := toolEnv(srcURL, "ip2a-ops legacy test")
	require.NoError(t, runTool(ctx, env, pgDump, "--format=custom", "--compress=0", "--file="+raw,
		"--no-password", "--snapshot="+snap.id, "--dbname="+conn))
	tables, err := countTables(ctx, snap.tx)
	require.NoError(t, err)
	triggers, err := auditTriggers(ctx, snap.tx)
	require.NoError(t, err)
	entries, err := countEntries(ctx, pgRestore, raw)
	require.NoError(t, err)

	stored := filepath.Join(dir, "stored")
	compressCustom(t, raw, stored, recipient)
	rawSize, rawSHA := fileSHA256(t, raw)
	storedSize, storedSHA := fileSHA256(t, stored)

	id := newID(started)
	obj := ObjectInfo{Key: DefaultPrefix + id + "/" + dataName, Size: storedSize, SHA256: storedSHA, Compression: "zstd"}
	if recipient != nil {
		obj.Key += ".age"
		obj.Encryption = "age"
		obj.Recipients = []string{recipient.String()}
	}
	f, err := os.Open(stored)
	require.NoError(t, err)
	defer f.Close()
	_, err = st.Put(ctx, obj.Key, f, storage.PutOptions{SHA256: storedSHA, Size: storedSize})
	require.NoError(t, err)

	m := &Manifest{
		ID: id, Tool: "ip2a-ops legacy test",
		PgDumpVersion: pgDumpVersion, ServerVersion: snap.info.Version, ServerMajor: snap.info.Major,
		Database: snap.info.Database, SystemIdentifier: snap.info.SystemIdentifier,
		StartedAt: started, FinishedAt: time.Now().UTC(),
		Dump:   DumpInfo{Format: "custom", Size: rawSize, SHA256: rawSHA, Entries: entries},
		Object: obj,
		Tables: tables, AuditTriggers: triggers,
	}
	require.NoError(t, writeManifest(ctx, st, DefaultPrefix, m))
	require.Greater(t, entries, 40)
	require.Equal(t, []string{"audit_logs_prevent_delete", "audit_logs_prevent_update"}, triggers)
	return *m
}

// compressCustom writes zstd(raw) to out, age-encrypted after compression
// when recipient is set.
func compressCustom(t *testing.T, raw, out string, recipient *age.X25519Recipient) {
	t.Helper()
	in, err := os.Open(raw)
	require.NoError(t, err)
	defer in.Close()
	f, err := os.Create(out)
	require.NoError(t, err)
	defer f.Close()
	var dst io.Writer = f
	var enc io.WriteCloser
	if recipient != nil {
		enc, err = age.Encrypt(f, recipient)
		require.NoError(t, err)
		dst = enc
	}
	zw, err := zstd.NewWriter(dst)
	require.NoError(t, err)
	_, err = io.Copy(zw, in)
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	if enc != nil {
		require.NoError(t, enc.Close())
	}
	require.NoError(t, f.Close())
}

// fileSHA256 returns a file's size and hex SHA-256.
func fileSHA256(t *testing.T, path string) (int64, string) {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	require.NoError(t, err)
	return n, hex.EncodeToString(h.Sum(nil))
}
