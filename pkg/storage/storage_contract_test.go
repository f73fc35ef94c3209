package storage_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"io/fs"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/internal/s3test"
	"github.com/ip2a/ip2a-ops/pkg/storage"
)

// testPartSize keeps multipart uploads in play with small test data.
const testPartSize = storage.MinPartSize

// harness is one store under test plus what the contract test needs to
// observe it from outside.
type harness struct {
	store storage.Store
	// sent returns how many bytes the store has written to disk or to the
	// server so far; with readAhead it bounds the memory a Put holds.
	sent      func() int64
	readAhead int64
	// s3 is set for the S3 store, nil for Local.
	s3 *s3test.Server
}

type storeCase struct {
	name string
	open func(t *testing.T) harness
}

func storeCases() []storeCase {
	return []storeCase{
		{name: "local", open: func(t *testing.T) harness {
			t.Helper()
			dir := t.TempDir()
			st, err := storage.NewLocal(dir)
			require.NoError(t, err)
			// io.Copy moves 32 KiB at a time, so 1 MiB is generous.
			return harness{store: st, sent: func() int64 { return tempBytes(t, dir) }, readAhead: 1 << 20}
		}},
		{name: "s3", open: func(t *testing.T) harness {
			t.Helper()
			srv := s3test.Start(t)
			cfg := srv.Config("prod/ip2a")
			cfg.PartSize = testPartSize
			st, err := storage.Open(t.Context(), cfg)
			require.NoError(t, err)
			// One part in memory while it is read, plus slack for one Read.
			return harness{store: st, sent: srv.BytesReceived, readAhead: testPartSize + 1<<20, s3: srv}
		}},
	}
}

// forEachStore runs fn as a parallel subtest per store kind, each with a
// fresh store.
func forEachStore(t *testing.T, fn func(t *testing.T, h harness)) {
	t.Helper()
	for _, sc := range storeCases() {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			fn(t, sc.open(t))
		})
	}
}

func put(t *testing.T, st storage.Store, key string, data []byte) storage.ObjectInfo {
	t.Helper()
	info, err := st.Put(t.Context(), key, bytes.NewReader(data), storage.PutOptions{})
	require.NoError(t, err)
	return info
}

func get(t *testing.T, st storage.Store, key string) []byte {
	t.Helper()
	rc, err := st.Get(t.Context(), key)
	require.NoError(t, err)
	defer rc.Close()
	b, err := io.ReadAll(rc)
	require.NoError(t, err)
	return b
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// requireNothingLeft checks that key has no object and that the store holds
// no debris (temp files, incomplete multipart uploads).
func requireNothingLeft(t *testing.T, st storage.Store, key string) {
	t.Helper()
	_, err := st.Stat(t.Context(), key)
	require.ErrorIs(t, err, storage.ErrNotExist)
	objs, err := st.List(t.Context(), "")
	require.NoError(t, err)
	for _, o := range objs {
		require.NotEqual(t, key, o.Key)
	}
	n, err := st.(storage.TempCleaner).CleanTemp(t.Context(), 0)
	require.NoError(t, err)
	require.Zero(t, n, "a failed Put left debris behind")
}

func TestContractRoundTrip(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, h harness) {
		tests := []struct {
			name string
			key  string
			size int
		}{
			{name: "empty", key: "empty", size: 0},
			{name: "small nested", key: "backups/2026/11/29/daily.dump", size: 1000},
			{name: "several parts", key: "big/obj.bin", size: 2*testPartSize + 12345},
			{name: "exactly one part", key: "edge/one-part", size: testPartSize},
		}
		for _, tc := range tests {
			data := randomBytes(tc.size, uint64(tc.size))
			before := time.Now().Add(-time.Minute)
			info, err := h.store.Put(t.Context(), tc.key, bytes.NewReader(data), storage.PutOptions{SHA256: sha(data)})
			require.NoError(t, err, tc.name)
			require.Equal(t, tc.key, info.Key, tc.name)
			require.Equal(t, int64(tc.size), info.Size, tc.name)
			require.True(t, info.Modified.After(before), tc.name)

			require.Equal(t, sha(data), sha(get(t, h.store, tc.key)), tc.name)
			st, err := h.store.Stat(t.Context(), tc.key)
			require.NoError(t, err, tc.name)
			require.Equal(t, int64(tc.size), st.Size, tc.name)
			require.Equal(t, tc.key, st.Key, tc.name)
		}

		// Replacing an object swaps in the whole new content.
		put(t, h.store, "backups/2026/11/29/daily.dump", []byte("v2"))
		require.Equal(t, []byte("v2"), get(t, h.store, "backups/2026/11/29/daily.dump"))
	})
}

func TestContractList(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, h harness) {
		for _, k := range []string{"b/2", "a/2", "a/10", "a/1", "a.txt", "ab/x", "a/deep/er/z"} {
			put(t, h.store, k, []byte(k))
		}
		tests := []struct {
			name   string
			prefix string
			want   []string
		}{
			{name: "all", prefix: "", want: []string{"a.txt", "a/1", "a/10", "a/2", "a/deep/er/z", "ab/x", "b/2"}},
			{name: "directory", prefix: "a/", want: []string{"a/1", "a/10", "a/2", "a/deep/er/z"}},
			{name: "partial segment", prefix: "a", want: []string{"a.txt", "a/1", "a/10", "a/2", "a/deep/er/z", "ab/x"}},
			{name: "partial name in dir", prefix: "a/1", want: []string{"a/1", "a/10"}},
			{name: "deep", prefix: "a/deep/", want: []string{"a/deep/er/z"}},
			{name: "exact key", prefix: "b/2", want: []string{"b/2"}},
			{name: "no match", prefix: "zzz/", want: nil},
		}
		for _, tc := range tests {
			objs, err := h.store.List(t.Context(), tc.prefix)
			require.NoError(t, err, tc.name)
			var got []string
			for _, o := range objs {
				got = append(got, o.Key)
				require.Equal(t, int64(len(o.Key)), o.Size, "%s: %s", tc.name, o.Key)
				require.False(t, o.Modified.IsZero(), tc.name)
			}
			require.Equal(t, tc.want, got, tc.name)
		}
	})
}

func TestContractMissingAndDelete(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, h harness) {
		ctx := t.Context()
		_, err := h.store.Get(ctx, "nope/missing")
		require.ErrorIs(t, err, storage.ErrNotExist)
		_, err = h.store.Stat(ctx, "nope/missing")
		require.ErrorIs(t, err, storage.ErrNotExist)
		require.NoError(t, h.store.Delete(ctx, "nope/missing"))

		put(t, h.store, "dir/obj", []byte("x"))
		// A "directory" is not an object.
		_, err = h.store.Stat(ctx, "dir")
		require.ErrorIs(t, err, storage.ErrNotExist)
		_, err = h.store.Get(ctx, "dir")
		require.ErrorIs(t, err, storage.ErrNotExist)
		// A path through an object is not an object either.
		_, err = h.store.Stat(ctx, "dir/obj/below")
		require.ErrorIs(t, err, storage.ErrNotExist)

		require.NoError(t, h.store.Delete(ctx, "dir/obj"))
		require.NoError(t, h.store.Delete(ctx, "dir/obj"), "second delete")
		_, err = h.store.Stat(ctx, "dir/obj")
		require.ErrorIs(t, err, storage.ErrNotExist)
		objs, err := h.store.List(ctx, "")
		require.NoError(t, err)
		require.Empty(t, objs)
	})
}

func TestContractInvalidKeys(t *testing.T) {
	t.Parallel()
	bad := []string{"", "/abs", "a//b", "a/", "../x", "a/../b", "./a", "a/.", `a\b`, "a/.tmp-1", ".tmp-x", "nul\x00"}
	forEachStore(t, func(t *testing.T, h harness) {
		ctx := t.Context()
		for _, key := range bad {
			_, err := h.store.Put(ctx, key, strings.NewReader("x"), storage.PutOptions{})
			require.ErrorIs(t, err, storage.ErrInvalidKey, "put %q", key)
			_, err = h.store.Get(ctx, key)
			require.ErrorIs(t, err, storage.ErrInvalidKey, "get %q", key)
			_, err = h.store.Stat(ctx, key)
			require.ErrorIs(t, err, storage.ErrInvalidKey, "stat %q", key)
			require.ErrorIs(t, h.store.Delete(ctx, key), storage.ErrInvalidKey, "delete %q", key)
		}
		for _, prefix := range []string{"/", "../", "a/../", "a//"} {
			_, err := h.store.List(ctx, prefix)
			require.ErrorIs(t, err, storage.ErrInvalidKey, "list %q", prefix)
		}
		objs, err := h.store.List(ctx, "")
		require.NoError(t, err)
		require.Empty(t, objs)
	})
}

func TestContractChecksumMismatch(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, h harness) {
		tests := []struct {
			name string
			size int
			opts func(data []byte) storage.PutOptions
		}{
			{name: "sha256 small", size: 100, opts: func(d []byte) storage.PutOptions {
				return storage.PutOptions{SHA256: sha(append([]byte("other"), d...))}
			}},
			{name: "sha256 multipart", size: testPartSize + 100, opts: func(d []byte) storage.PutOptions {
				return storage.PutOptions{SHA256: sha(d[1:])}
			}},
			{name: "size shorter than declared", size: 100, opts: func(d []byte) storage.PutOptions {
				return storage.PutOptions{Size: 101}
			}},
			{name: "size longer than declared", size: 100, opts: func(d []byte) storage.PutOptions {
				return storage.PutOptions{Size: 99}
			}},
		}
		for _, tc := range tests {
			key := "mismatch/" + strings.ReplaceAll(tc.name, " ", "-")
			// An older object under the key must survive a failed replace.
			put(t, h.store, key, []byte("old"))
			data := randomBytes(tc.size, 7)
			_, err := h.store.Put(t.Context(), key, bytes.NewReader(data), tc.opts(data))
			require.ErrorIs(t, err, storage.ErrChecksumMismatch, tc.name)
			require.Equal(t, []byte("old"), get(t, h.store, key), tc.name)
			require.NoError(t, h.store.Delete(t.Context(), key))
			requireNothingLeft(t, h.store, key)
		}
		_, err := h.store.Put(t.Context(), "bad-option", strings.NewReader("x"), storage.PutOptions{SHA256: "not-hex"})
		require.ErrorContains(t, err, "PutOptions.SHA256")
		requireNothingLeft(t, h.store, "bad-option")
	})
}

func TestContractCancelledPut(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, h harness) {
		tests := []struct {
			name        string
			cancelAfter int64
		}{
			{name: "before first byte", cancelAfter: 0},
			{name: "small", cancelAfter: 100},
			{name: "mid multipart", cancelAfter: testPartSize + testPartSize/2},
		}
		for _, tc := range tests {
			ctx, cancel := context.WithCancel(t.Context())
			src := &source{size: 1 << 40, seed: 3, onRead: func(n int64) {
				if n >= tc.cancelAfter {
					cancel()
				}
			}}
			_, err := h.store.Put(ctx, "cancelled", src, storage.PutOptions{})
			cancel()
			require.ErrorIs(t, err, context.Canceled, tc.name)
			require.Less(t, src.n, tc.cancelAfter+2*testPartSize, "%s: Put kept reading after cancel", tc.name)
			requireNothingLeft(t, h.store, "cancelled")
		}
	})
}

// TestContractStreamingMemoryBounded puts 20 MiB of unknown length and checks
// that the store never holds more than its read-ahead bound of data it has
// not yet written out (a store that buffered the object would hold 20 MiB).
func TestContractStreamingMemoryBounded(t *testing.T) {
	t.Parallel()
	const size = 20 << 20
	forEachStore(t, func(t *testing.T, h harness) {
		base := h.sent()
		var maxAhead int64
		src := &source{size: size, seed: 11, onRead: func(n int64) {
			maxAhead = max(maxAhead, n-(h.sent()-base))
		}}
		info, err := h.store.Put(t.Context(), "stream/20MiB", src, storage.PutOptions{})
		require.NoError(t, err)
		require.Equal(t, int64(size), info.Size)
		t.Logf("read ahead of what was written: max %d bytes, bound %d", maxAhead, h.readAhead)
		require.LessOrEqual(t, maxAhead, h.readAhead, "read ahead of what was written")
		require.Equal(t, src.sum(), sha(get(t, h.store, "stream/20MiB")))
	})
}

func TestContractCheck(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, h harness) {
		require.NoError(t, storage.Check(t.Context(), h.store))
		objs, err := h.store.List(t.Context(), "")
		require.NoError(t, err)
		require.Empty(t, objs, "Check left its probe behind")
	})
}

// source yields size deterministic pseudo-random bytes and calls onRead with
// the running total before each Read.
type source struct {
	size   int64
	seed   uint64
	onRead func(total int64)

	n   int64
	rng *rand.ChaCha8
	h   interface {
		io.Writer
		Sum([]byte) []byte
	}
}

func (s *source) Read(p []byte) (int, error) {
	if s.rng == nil {
		var seed [32]byte
		seed[0] = byte(s.seed)
		s.rng = rand.NewChaCha8(seed)
		s.h = sha256.New()
	}
	if s.onRead != nil {
		s.onRead(s.n)
	}
	if s.n >= s.size {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), s.size-s.n, 256<<10)]
	_, _ = s.rng.Read(p)
	_, _ = s.h.Write(p)
	s.n += int64(len(p))
	return len(p), nil
}

func (s *source) sum() string { return hex.EncodeToString(s.h.Sum(nil)) }

func randomBytes(n int, seed uint64) []byte {
	var s [32]byte
	s[0] = byte(seed)
	s[1] = byte(seed >> 8)
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(s).Read(b)
	return b
}

// tempBytes sums the sizes of the Local store's temp files: the data a Put
// has written so far.
func tempBytes(t *testing.T, dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasPrefix(d.Name(), ".tmp-") {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			n += fi.Size()
		}
		return nil
	})
	return n
}
