package storage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Local is a Store in a directory of the local filesystem. A key maps to the
// file at dir/key. Objects are written to a temp file beside the target
// (".tmp-<random>"), fsynced, checked, renamed into place, and the directory
// is fsynced, so a crash or a full disk never leaves a partial object under a
// key. A killed process can leave a temp file behind: CleanTemp removes them.
type Local struct {
	dir string // absolute, cleaned
}

var (
	_ Store       = (*Local)(nil)
	_ TempCleaner = (*Local)(nil)
)

// Directory and file modes: backups and audit archives hold personal data, so
// only the owner may read them.
const (
	localDirMode  = 0o700
	localFileMode = 0o600
)

// NewLocal returns a store rooted at dir, creating dir (and its parents) when
// missing. dir may be relative; it is made absolute now so a later chdir does
// not move the store.
func NewLocal(dir string) (*Local, error) {
	if dir == "" {
		return nil, errors.New("local store: empty directory")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("local store %s: %w", dir, err)
	}
	if err := os.MkdirAll(abs, localDirMode); err != nil {
		return nil, fmt.Errorf("local store: %w", err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("local store: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("local store %s: not a directory", abs)
	}
	return &Local{dir: abs}, nil
}

// Dir returns the absolute root directory.
func (l *Local) Dir() string { return l.dir }

// String returns "file://" and the absolute directory.
func (l *Local) String() string { return "file://" + filepath.ToSlash(l.dir) }

func (l *Local) path(key string) string {
	return filepath.Join(l.dir, filepath.FromSlash(key))
}

// Put writes r to a temp file beside the target, hashing as it goes, then
// fsyncs, verifies opts.SHA256 and opts.Size (mismatch: ErrChecksumMismatch),
// renames into place and fsyncs the directory. On any error (including a
// full disk, returned wrapping syscall.ENOSPC, and ctx cancellation) the temp
// file is removed and an existing object under key is untouched.
func (l *Local) Put(ctx context.Context, key string, r io.Reader, opts PutOptions) (ObjectInfo, error) {
	info, err := l.put(ctx, key, r, opts)
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("local put %s: %w", key, err)
	}
	return info, nil
}

func (l *Local) put(ctx context.Context, key string, r io.Reader, opts PutOptions) (ObjectInfo, error) {
	if err := ValidateKey(key); err != nil {
		return ObjectInfo{}, err
	}
	want, err := parseSHA256(opts.SHA256)
	if err != nil {
		return ObjectInfo{}, err
	}
	if err := ctx.Err(); err != nil {
		return ObjectInfo{}, err
	}
	target := l.path(key)
	dir := filepath.Dir(target)
	if err := os.MkdirAll(dir, localDirMode); err != nil {
		return ObjectInfo{}, err
	}
	f, err := os.CreateTemp(dir, tempPrefix+"*")
	if err != nil {
		return ObjectInfo{}, err
	}
	tmp := f.Name()
	committed := false
	defer func() {
		if !committed {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if err := f.Chmod(localFileMode); err != nil {
		return ObjectInfo{}, err
	}

	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), ContextReader(ctx, r))
	if err != nil {
		return ObjectInfo{}, err
	}
	if err := checkContent(n, h.Sum(nil), want, opts.Size); err != nil {
		return ObjectInfo{}, err
	}
	// Sync before rename: otherwise a crash can leave the new name pointing
	// at an empty or partial file.
	if err := f.Sync(); err != nil {
		return ObjectInfo{}, err
	}
	if err := f.Close(); err != nil {
		return ObjectInfo{}, err
	}
	if err := ctx.Err(); err != nil {
		return ObjectInfo{}, err
	}
	if err := os.Rename(tmp, target); err != nil {
		return ObjectInfo{}, err
	}
	committed = true
	// The rename is durable only once the directory entry is on disk.
	if err := syncDir(dir); err != nil {
		return ObjectInfo{}, err
	}
	fi, err := os.Stat(target)
	if err != nil {
		return ObjectInfo{}, err
	}
	return ObjectInfo{Key: key, Size: fi.Size(), Modified: fi.ModTime()}, nil
}

// Get opens the object's file. Missing (or a directory): ErrNotExist.
func (l *Local) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := ValidateKey(key); err != nil {
		return nil, fmt.Errorf("local get: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("local get %s: %w", key, err)
	}
	f, err := os.Open(l.path(key))
	if err != nil {
		return nil, fmt.Errorf("local get %s: %w", key, notExist(err))
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("local get %s: %w", key, err)
	}
	if !fi.Mode().IsRegular() {
		_ = f.Close()
		return nil, fmt.Errorf("local get %s: %w", key, ErrNotExist)
	}
	return f, nil
}

// Stat returns the object's size and modification time. Missing (or a
// directory): ErrNotExist.
func (l *Local) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	if err := ValidateKey(key); err != nil {
		return ObjectInfo{}, fmt.Errorf("local stat: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return ObjectInfo{}, fmt.Errorf("local stat %s: %w", key, err)
	}
	fi, err := os.Stat(l.path(key))
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("local stat %s: %w", key, notExist(err))
	}
	if !fi.Mode().IsRegular() {
		return ObjectInfo{}, fmt.Errorf("local stat %s: %w", key, ErrNotExist)
	}
	return ObjectInfo{Key: key, Size: fi.Size(), Modified: fi.ModTime()}, nil
}

// List walks the directories the prefix can match and returns the regular
// files whose key starts with prefix, sorted by key. Temp files are skipped.
// A prefix matching nothing gives an empty list, not an error.
func (l *Local) List(ctx context.Context, prefix string) ([]ObjectInfo, error) {
	if err := validatePrefix(prefix); err != nil {
		return nil, fmt.Errorf("local list: %w", err)
	}
	// Only the directory named by the prefix's complete segments can hold
	// matches; walking it rather than the whole tree keeps List cheap.
	base := ""
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		base = prefix[:i]
	}
	root := l.dir
	if base != "" {
		root = l.path(base)
	}
	var out []ObjectInfo
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // vanished while walking, or no such prefix dir
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), tempPrefix) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(l.dir, p)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		if !strings.HasPrefix(key, prefix) {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // deleted between readdir and stat
			}
			return err
		}
		out = append(out, ObjectInfo{Key: key, Size: fi.Size(), Modified: fi.ModTime()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("local list %q: %w", prefix, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// Delete removes the object's file and fsyncs its directory. A missing key
// (or a directory) is not an error. Empty parent directories are left in
// place: removing them could race with a concurrent Put into them.
func (l *Local) Delete(ctx context.Context, key string) error {
	if err := ValidateKey(key); err != nil {
		return fmt.Errorf("local delete: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("local delete %s: %w", key, err)
	}
	p := l.path(key)
	fi, err := os.Lstat(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("local delete %s: %w", key, err)
	}
	if fi.IsDir() {
		return nil
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("local delete %s: %w", key, err)
	}
	if err := syncDir(filepath.Dir(p)); err != nil {
		return fmt.Errorf("local delete %s: %w", key, err)
	}
	return nil
}

// CleanTemp removes temp files (".tmp-*") last modified more than olderThan
// ago anywhere under the store's directory, and returns how many it removed.
// They are what a process killed in the middle of a Put leaves behind; call
// it at the start of a run. A Put in progress keeps its temp file's mtime
// fresh while data flows, so an olderThan of an hour or more never removes
// the file of a live Put in another process. olderThan <= 0 removes every
// temp file: only safe when no other process is writing.
func (l *Local) CleanTemp(ctx context.Context, olderThan time.Duration) (int, error) {
	cutoff := time.Now().Add(-olderThan)
	removed := 0
	err := filepath.WalkDir(l.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() || !strings.HasPrefix(d.Name(), tempPrefix) {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if olderThan > 0 && fi.ModTime().After(cutoff) {
			return nil
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		removed++
		return nil
	})
	if err != nil {
		return removed, fmt.Errorf("local clean temp: %w", err)
	}
	return removed, nil
}

// notExist maps a missing file (or a path through a regular file, ENOTDIR) to
// ErrNotExist while keeping the OS error in the chain.
func notExist(err error) error {
	if errors.Is(err, fs.ErrNotExist) || isNotDir(err) {
		return fmt.Errorf("%w: %w", ErrNotExist, err)
	}
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// ContextReader returns r stopping at its first Read after ctx is done
// (with ctx's error), so a cancelled copy of an endless or slow stream
// returns promptly.
func ContextReader(ctx context.Context, r io.Reader) io.Reader { return ctxReader{ctx, r} }

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// parseSHA256 checks the caller's hex digest up front, so a typo is reported
// as a bad option rather than as a corrupt upload.
func parseSHA256(s string) ([]byte, error) {
	if s == "" {
		return nil, nil
	}
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != sha256.Size {
		return nil, fmt.Errorf("PutOptions.SHA256 %q: not a hex SHA-256", s)
	}
	return b, nil
}

// checkContent compares what was read with what the caller declared.
func checkContent(n int64, sum, want []byte, size int64) error {
	if size > 0 && n != size {
		return fmt.Errorf("%w: read %d bytes, PutOptions.Size is %d", ErrChecksumMismatch, n, size)
	}
	if want != nil && !equalBytes(sum, want) {
		return fmt.Errorf("%w: content SHA-256 is %x, PutOptions.SHA256 is %x", ErrChecksumMismatch, sum, want)
	}
	return nil
}

func equalBytes(a, b []byte) bool { return string(a) == string(b) }
