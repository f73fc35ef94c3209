package storage_test

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/internal/tmpfs"
	"github.com/ip2a/ip2a-ops/pkg/storage"
)

// tempFiles lists the Local store's temp files under dir.
func tempFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasPrefix(d.Name(), ".tmp-") {
			out = append(out, p)
		}
		return nil
	})
	require.NoError(t, err)
	return out
}

// TestLocalDiskFull fills a real 1 MiB tmpfs: the Put fails with ENOSPC, no
// object and no temp file are left, and the space is free again.
func TestLocalDiskFull(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "small")
	require.NoError(t, os.Mkdir(dir, 0o700))
	tmpfs.Mount(t, dir, "1m")
	st, err := storage.NewLocal(dir)
	require.NoError(t, err)
	ctx := t.Context()
	put(t, st, "keep/small", []byte("survives"))

	_, err = st.Put(ctx, "backups/too-big.dump", &source{size: 4 << 20, seed: 5}, storage.PutOptions{})
	require.ErrorIs(t, err, syscall.ENOSPC)
	require.Contains(t, err.Error(), "local put backups/too-big.dump")
	_, err = st.Stat(ctx, "backups/too-big.dump")
	require.ErrorIs(t, err, storage.ErrNotExist)
	require.Empty(t, tempFiles(t, dir))

	// The failed Put released its space: nearly all of the 1 MiB fits now.
	put(t, st, "backups/fits.dump", randomBytes(900<<10, 1))
	require.Equal(t, []byte("survives"), get(t, st, "keep/small"))
}

// TestLocalKilledPut kills a process in the middle of a Put for real. The
// object never appears; the temp file it leaves is invisible to List and
// removed by CleanTemp once old enough.
func TestLocalKilledPut(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperEndlessPut$")
	cmd.Env = append(os.Environ(), "STORAGE_HELPER_DIR="+dir)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	// Wait until the helper has written real data, then kill it.
	deadline := time.Now().Add(20 * time.Second)
	for tempBytes(t, dir) < 1<<20 {
		require.True(t, time.Now().Before(deadline), "helper never started writing")
		time.Sleep(10 * time.Millisecond) // polling with a deadline
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()

	st, err := storage.NewLocal(dir)
	require.NoError(t, err)
	_, err = st.Stat(t.Context(), "backups/killed.dump")
	require.ErrorIs(t, err, storage.ErrNotExist)
	objs, err := st.List(t.Context(), "")
	require.NoError(t, err)
	require.Empty(t, objs)
	require.Len(t, tempFiles(t, dir), 1)

	n, err := st.CleanTemp(t.Context(), time.Hour)
	require.NoError(t, err)
	require.Zero(t, n, "a fresh temp file may belong to a running Put")

	old := time.Now().Add(-2 * time.Hour)
	for _, p := range tempFiles(t, dir) {
		require.NoError(t, os.Chtimes(p, old, old))
	}
	n, err = st.CleanTemp(t.Context(), time.Hour)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Empty(t, tempFiles(t, dir))
}

// TestHelperEndlessPut is the process TestLocalKilledPut kills.
func TestHelperEndlessPut(t *testing.T) {
	dir := os.Getenv("STORAGE_HELPER_DIR")
	if dir == "" {
		t.Skip("helper process for TestLocalKilledPut")
	}
	st, err := storage.NewLocal(dir)
	require.NoError(t, err)
	_, err = st.Put(t.Context(), "backups/killed.dump", &source{size: 1 << 40, seed: 9}, storage.PutOptions{})
	t.Fatalf("endless Put returned: %v", err)
}

func TestLocalFilesPrivateAndDurable(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	st, err := storage.NewLocal(filepath.Join(dir, "new", "root"))
	require.NoError(t, err, "NewLocal creates the directory")
	put(t, st, "a/b/c.dump", []byte("secret member data"))
	fi, err := os.Stat(filepath.Join(dir, "new", "root", "a", "b", "c.dump"))
	require.NoError(t, err)
	require.Equal(t, fs.FileMode(0o600), fi.Mode().Perm())
	di, err := os.Stat(filepath.Join(dir, "new", "root", "a", "b"))
	require.NoError(t, err)
	require.Equal(t, fs.FileMode(0o700), di.Mode().Perm())
	require.Equal(t, "file://"+filepath.Join(dir, "new", "root"), st.String())

	// A temp file left in the tree is never listed or readable as an object.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "new", "root", "a", ".tmp-123"), []byte("x"), 0o600))
	objs, err := st.List(t.Context(), "a/")
	require.NoError(t, err)
	require.Len(t, objs, 1)

	file := filepath.Join(dir, "file")
	require.NoError(t, os.WriteFile(file, nil, 0o600))
	_, err = storage.NewLocal(file)
	require.ErrorContains(t, err, "not a directory")
}

// TestLocalReplaceIsAtomic reads an object while it is being replaced by a
// slow Put: readers see the old content until the new one is whole.
func TestLocalReplaceIsAtomic(t *testing.T) {
	t.Parallel()
	st, err := storage.NewLocal(t.TempDir())
	require.NoError(t, err)
	put(t, st, "k", []byte("old"))
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := st.Put(t.Context(), "k", pr, storage.PutOptions{})
		done <- err
	}()
	_, err = pw.Write(bytes.Repeat([]byte("n"), 1000))
	require.NoError(t, err)
	require.Equal(t, []byte("old"), get(t, st, "k"), "half-written content visible")
	require.NoError(t, pw.CloseWithError(errors.New("producer died")))
	require.ErrorContains(t, <-done, "producer died")
	require.Equal(t, []byte("old"), get(t, st, "k"))
}
