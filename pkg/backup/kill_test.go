package backup

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/internal/fixturetest"
	"github.com/ip2a/ip2a-ops/pkg/fixture"
	"github.com/ip2a/ip2a-ops/pkg/storage"
)

// childEnv makes the test binary a backup process (see backupChild) that
// TestKilledBetweenUploadAndManifest kills.
const childEnv = "IP2A_BACKUP_TEST_CHILD"

// backupChild makes a backup of $DB into the local store at $STORE and,
// once the object is stored and checked, creates $MARK and waits to be
// killed before writing the manifest.
func backupChild() int {
	st, err := storage.NewLocal(os.Getenv("STORE"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	_, err = Run(context.Background(), Options{DatabaseURL: os.Getenv("DB"), Store: st, WorkDir: os.Getenv("WORK"),
		CopyMinBytes: 1, beforeManifest: func() {
			_ = os.WriteFile(os.Getenv("MARK"), nil, 0o600)
			time.Sleep(time.Hour)
		}})
	fmt.Fprintln(os.Stderr, "backup child was not killed:", err)
	return 1
}

// TestKilledBetweenUploadAndManifest: a backup process killed (SIGKILL)
// after its object is stored but before its manifest is written leaves an
// object that no command takes for a backup; the next run removes it once
// it is older than the orphan grace, along with the dead run's scratch
// directory.
func TestKilledBetweenUploadAndManifest(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	src := fixturetest.NewTestDB(t, fixture.Newer, fixture.Options{Seed: 33, AuditYears: 1})
	st := localStore(t)
	work := t.TempDir()
	mark := filepath.Join(t.TempDir(), "stored")
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1", "DB="+src, "STORE="+st.Dir(), "WORK="+work, "MARK="+mark)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if _, err := os.Stat(mark); err == nil {
			break
		}
		require.True(t, time.Now().Before(deadline), "child never stored its object: %s", stderr.String())
		time.Sleep(20 * time.Millisecond)
	}
	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()

	// The object is there, the backup is not.
	objs, err := st.List(ctx, DefaultPrefix)
	require.NoError(t, err)
	require.Len(t, objs, 1)
	require.True(t, strings.HasSuffix(objs[0].Key, "/"+tarDataName), objs[0].Key)
	l, err := List(ctx, ListOptions{Store: st})
	require.NoError(t, err)
	require.Empty(t, l.Backups)
	_, err = Verify(ctx, VerifyOptions{Store: st, ID: "latest"})
	require.ErrorIs(t, err, ErrNotFound)

	// Within the grace it is left alone (another host's run may still be
	// writing its manifest); past it the next run removes it.
	res, err := Run(ctx, Options{DatabaseURL: src, Store: st, WorkDir: work})
	require.NoError(t, err)
	require.NotContains(t, res.Cleaned, st.String()+"/"+objs[0].Key)
	res, err = Run(ctx, Options{DatabaseURL: src, Store: st, WorkDir: work, OrphanGrace: time.Nanosecond})
	require.NoError(t, err)
	require.Contains(t, res.Cleaned, st.String()+"/"+objs[0].Key)
	_, err = st.Stat(ctx, objs[0].Key)
	require.ErrorIs(t, err, storage.ErrNotExist)
	l, err = List(ctx, ListOptions{Store: st})
	require.NoError(t, err)
	require.Len(t, l.Backups, 2)
	requireEmptyDir(t, work)
}
