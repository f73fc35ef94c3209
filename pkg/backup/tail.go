package backup

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"

	"filippo.io/age"
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
	sha     string // their SHA-256
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
	h := sha256.New()
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
	return tailResult{started: true, size: n, sha: hex.EncodeToString(h.Sum(nil))}
}

func newEncoder(w io.Writer, level, threads int) (*zstd.Encoder, error) {
	if threads <= 0 {
		threads = min(runtime.GOMAXPROCS(0), 4)
	}
	return zstd.NewWriter(w, zstd.WithEncoderLevel(zstdLevel(level)), zstd.WithEncoderConcurrency(threads))
}

// assemble writes the stored object into dst: the head of the raw archive
// compressed now, then the tail compressed during the dump, the whole
// optionally encrypted. It hashes the raw archive in the same pass and
// checks that the tail did not change after it was compressed; if it did
// (a table of contents larger than the head), it reports errTailChanged and
// the caller compresses the whole archive instead.
func assemble(ctx context.Context, rawPath, tailPath string, headSize int64, tr tailResult, dst *os.File, level, threads int, recipients []age.Recipient) (encodeResult, error) {
	in, err := os.Open(rawPath)
	if err != nil {
		return encodeResult{}, err
	}
	defer in.Close()
	stored := newHashingWriter(dst)
	buffered := bufio.NewWriterSize(stored, copyBuf)
	var sink io.Writer = buffered
	var encrypter io.WriteCloser
	if len(recipients) > 0 {
		if encrypter, err = age.Encrypt(buffered, recipients...); err != nil {
			return encodeResult{}, fmt.Errorf("encrypt: %w", err)
		}
		sink = encrypter
	}
	enc, err := newEncoder(sink, level, threads)
	if err != nil {
		return encodeResult{}, fmt.Errorf("compress: %w", err)
	}
	raw := newHashingReader(ctxReader{ctx, in})
	if _, err := io.CopyN(enc, raw, headSize); err != nil {
		enc.Close()
		return encodeResult{}, fmt.Errorf("compress: %w", err)
	}
	if err := enc.Close(); err != nil {
		return encodeResult{}, fmt.Errorf("compress: %w", err)
	}
	// Hash the rest (already compressed) and compare with what the tailer saw.
	seg := sha256.New()
	rest, err := io.CopyBuffer(seg, raw, make([]byte, copyBuf))
	if err != nil {
		return encodeResult{}, err
	}
	if rest != tr.size || hex.EncodeToString(seg.Sum(nil)) != tr.sha {
		return encodeResult{}, errTailChanged
	}
	tail, err := os.Open(tailPath)
	if err != nil {
		return encodeResult{}, err
	}
	defer tail.Close()
	if _, err := io.CopyBuffer(sink, ctxReader{ctx, tail}, make([]byte, copyBuf)); err != nil {
		return encodeResult{}, err
	}
	if encrypter != nil {
		if err := encrypter.Close(); err != nil {
			return encodeResult{}, fmt.Errorf("encrypt: %w", err)
		}
	}
	if err := buffered.Flush(); err != nil {
		return encodeResult{}, err
	}
	// No fsync here: this scratch file is only read back by the upload,
	// and the store fsyncs what it keeps (Local) or the service does (S3).
	return encodeResult{rawSize: raw.n, rawSHA: raw.sum(), storedSize: stored.n, storedSHA: stored.sum()}, nil
}

var errTailChanged = errors.New("archive changed past the head after it was compressed")
