package backup

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"

	"filippo.io/age"
	"github.com/cespare/xxhash/v2"
	"github.com/klauspost/compress/zstd"
)

// defaultHeadSize is where compression during the dump starts. pg_dump writes a
// custom archive as header + table of contents + data, and when the dump is
// done it seeks back and rewrites the table of contents with each entry's
// data offset (same length, new values). Everything past the table of
// contents is only ever appended, so it can be compressed while pg_dump is
// still writing; the head, rewritten at the end, is compressed afterwards as
// a zstd frame of its own placed first (a zstd stream may hold several
// frames; decoders read them as one). 32 MiB is far beyond the table of
// contents of this schema; a bigger one is detected (the tail's bytes
// changed) and the archive is then compressed again from the start.
const defaultHeadSize = 32 << 20

// tailer compresses an archive file's bytes past the head while pg_dump
// writes it.
type tailer struct {
	path, out string
	headSize  int64
	level     int
	threads   int
	done      chan struct{} // closed when pg_dump has exited successfully
	result    chan tailResult
}

type tailResult struct {
	started bool   // the file grew past headSize
	size    int64  // raw bytes compressed (past the head)
	sum     uint64 // their xxhash, to check they did not change
	err     error
}

func startTailer(ctx context.Context, path, out string, headSize int64, level, threads int) *tailer {
	t := &tailer{path: path, out: out, headSize: headSize, level: level, threads: threads, done: make(chan struct{}), result: make(chan tailResult, 1)}
	go func() { t.result <- t.run(ctx) }()
	return t
}

// finish tells the tailer pg_dump is done and waits for it.
func (t *tailer) finish() tailResult {
	close(t.done)
	return <-t.result
}

func (t *tailer) finished() bool {
	select {
	case <-t.done:
		return true
	default:
		return false
	}
}

// wait pauses between polls of the growing file; it reports false when ctx
// ended.
func wait(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(20 * time.Millisecond):
		return true
	}
}

func (t *tailer) run(ctx context.Context) tailResult {
	// Wait for the file to pass the head.
	for {
		st, err := os.Stat(t.path)
		if err == nil && st.Size() > t.headSize {
			break
		}
		if t.finished() {
			return tailResult{} // small archive: compressed whole afterwards
		}
		if !wait(ctx) {
			return tailResult{err: ctx.Err()}
		}
	}
	in, err := os.Open(t.path)
	if err != nil {
		return tailResult{err: err}
	}
	defer in.Close()
	if _, err := in.Seek(t.headSize, io.SeekStart); err != nil {
		return tailResult{err: err}
	}
	out, err := os.OpenFile(t.out, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return tailResult{err: err}
	}
	defer out.Close()
	bw := bufio.NewWriterSize(out, copyBuf)
	enc, err := newEncoder(bw, t.level, t.threads)
	if err != nil {
		return tailResult{err: err}
	}
	h := xxhash.New()
	var n int64
	buf := make([]byte, copyBuf)
	for {
		// Read what is there; at EOF either pg_dump is done (this was the
		// real end: read once more after seeing done, to catch the last
		// write) or more is coming.
		doneBefore := t.finished()
		k, err := in.Read(buf)
		if k > 0 {
			h.Write(buf[:k])
			n += int64(k)
			if _, werr := enc.Write(buf[:k]); werr != nil {
				enc.Close()
				return tailResult{err: werr}
			}
		}
		if errors.Is(err, io.EOF) {
			if doneBefore {
				break
			}
			if !wait(ctx) {
				enc.Close()
				return tailResult{err: ctx.Err()}
			}
			continue
		}
		if err != nil {
			enc.Close()
			return tailResult{err: err}
		}
	}
	if err := enc.Close(); err != nil {
		return tailResult{err: err}
	}
	if err := bw.Flush(); err != nil {
		return tailResult{err: err}
	}
	return tailResult{started: true, size: n, sum: h.Sum64()}
}

func newEncoder(w io.Writer, level, threads int) (*zstd.Encoder, error) {
	if threads <= 0 {
		threads = min(runtime.GOMAXPROCS(0), 4)
	}
	opts := []zstd.EOption{zstd.WithEncoderLevel(zstdLevel(level)), zstd.WithEncoderConcurrency(threads)}
	if level < 4 {
		// A pg_dump archive's redundancy is local (rows of one table, the
		// same JSON keys row after row): on the bench database a 1 MiB
		// window compresses smaller than the levels' 4-8 MiB (default
		// 119.7 vs 120.1 MB, better 106.2 vs 107.7 MB), ~25% faster (the
		// match tables stay in cache) and with a third of the memory.
		// Bigger windows (32, 64 MiB) gained nothing and cost 100+ MB.
		opts = append(opts, zstd.WithWindowSize(encoderWindow))
	}
	return zstd.NewWriter(w, opts...)
}

// encoderWindow is the zstd window of levels 1-3; see newEncoder.
const encoderWindow = 1 << 20

// rawHash is the one pass over the finished raw archive: its size and
// SHA-256 for the manifest, and whether its bytes past the head are still
// the ones the tailer compressed.
type rawHash struct {
	size      int64
	sha       string
	unchanged bool
	err       error
}

// hashRaw reads the finished archive once: SHA-256 of all of it, and an
// xxhash of the part past the head compared with the tailer's. The check
// only has to notice pg_dump's rewrite of the table of contents reaching
// past the head (not an adversary), so a 64-bit hash is plenty and costs a
// fraction of a second SHA-256 pass.
func hashRaw(ctx context.Context, rawPath string, headSize int64, tr tailResult) rawHash {
	in, err := os.Open(rawPath)
	if err != nil {
		return rawHash{err: err}
	}
	defer in.Close()
	raw := newHashingReader(ctxReader{ctx, in})
	buf := make([]byte, copyBuf)
	if _, err := io.CopyBuffer(io.Discard, io.LimitReader(raw, headSize), buf); err != nil {
		return rawHash{err: err}
	}
	seg := xxhash.New()
	rest, err := io.CopyBuffer(seg, raw, buf)
	if err != nil {
		return rawHash{err: err}
	}
	return rawHash{size: raw.n, sha: raw.sum(), unchanged: rest == tr.size && seg.Sum64() == tr.sum}
}

// compressHead writes the archive's first headSize bytes, compressed as a
// zstd frame of their own, to out.
func compressHead(ctx context.Context, rawPath, out string, headSize int64, level, threads int) error {
	in, err := os.Open(rawPath)
	if err != nil {
		return err
	}
	defer in.Close()
	f, err := os.OpenFile(out, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, copyBuf)
	enc, err := newEncoder(bw, level, threads)
	if err != nil {
		return err
	}
	if _, err := io.CopyN(enc, ctxReader{ctx, in}, headSize); err != nil {
		enc.Close()
		return err
	}
	if err := enc.Close(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return f.Close()
}

// storedParts is the stored object made of the head frame and the tail
// compressed during the dump: without recipients the two files are uploaded
// as they are (hashed first, so the store gets the checksum up front, and
// never copied into a third file); with recipients they are encrypted into
// the object file at encPath.
type storedParts struct {
	files []string
	size  int64
	sha   string
}

func prepareParts(ctx context.Context, headPath, tailPath, encPath string, recipients []age.Recipient) (storedParts, error) {
	src := []string{headPath, tailPath}
	if len(recipients) == 0 {
		h := newHashingWriter(io.Discard)
		if err := copyFiles(ctx, h, src); err != nil {
			return storedParts{}, err
		}
		return storedParts{files: src, size: h.n, sha: h.sum()}, nil
	}
	f, err := os.OpenFile(encPath, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return storedParts{}, err
	}
	defer f.Close()
	stored := newHashingWriter(f)
	buffered := bufio.NewWriterSize(stored, copyBuf)
	encrypter, err := age.Encrypt(buffered, recipients...)
	if err != nil {
		return storedParts{}, fmt.Errorf("encrypt: %w", err)
	}
	if err := copyFiles(ctx, encrypter, src); err != nil {
		return storedParts{}, err
	}
	if err := encrypter.Close(); err != nil {
		return storedParts{}, fmt.Errorf("encrypt: %w", err)
	}
	if err := buffered.Flush(); err != nil {
		return storedParts{}, err
	}
	// No fsync here: this scratch file is only read back by the upload,
	// and the store fsyncs what it keeps (Local) or the service does (S3).
	if err := f.Close(); err != nil {
		return storedParts{}, err
	}
	return storedParts{files: []string{encPath}, size: stored.n, sha: stored.sum()}, nil
}

func copyFiles(ctx context.Context, w io.Writer, paths []string) error {
	buf := make([]byte, copyBuf)
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		_, err = io.CopyBuffer(w, ctxReader{ctx, f}, buf)
		_ = f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// openParts opens the files as one reader; close closes them all.
func openParts(paths []string) (io.Reader, func(), error) {
	var rs []io.Reader
	var fs []*os.File
	closeAll := func() {
		for _, f := range fs {
			_ = f.Close()
		}
	}
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		fs = append(fs, f)
		rs = append(rs, f)
	}
	return io.MultiReader(rs...), closeAll, nil
}
