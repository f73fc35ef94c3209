package backup

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"

	"filippo.io/age"
	"github.com/klauspost/compress/zstd"

	"github.com/ip2a/ip2a-ops/pkg/storage"
)

// ErrChecksumMismatch is wrapped when stored or decoded bytes do not hash to
// what the manifest recorded.
var ErrChecksumMismatch = errors.New("checksum mismatch")

// ErrDecrypt is wrapped when an encrypted backup cannot be decrypted with
// the identities given (or none were given).
var ErrDecrypt = errors.New("cannot decrypt")

// ErrNoIdentity (which wraps ErrDecrypt) is returned when an encrypted
// backup must be read and no age identity was given.
var ErrNoIdentity = fmt.Errorf("%w: the backup is encrypted and no age identity for one of its recipients was given", ErrDecrypt)

const copyBuf = 1 << 20

// hashingWriter counts and hashes what passes through it.
type hashingWriter struct {
	w io.Writer
	h hash.Hash
	n int64
}

func newHashingWriter(w io.Writer) *hashingWriter { return &hashingWriter{w: w, h: sha256.New()} }

func (hw *hashingWriter) Write(p []byte) (int, error) {
	n, err := hw.w.Write(p)
	hw.h.Write(p[:n])
	hw.n += int64(n)
	return n, err
}

func (hw *hashingWriter) sum() string { return hex.EncodeToString(hw.h.Sum(nil)) }

// hashingReader counts and hashes what is read through it.
type hashingReader struct {
	r io.Reader
	h hash.Hash
	n int64
}

func newHashingReader(r io.Reader) *hashingReader { return &hashingReader{r: r, h: sha256.New()} }

func (hr *hashingReader) Read(p []byte) (int, error) {
	n, err := hr.r.Read(p)
	hr.h.Write(p[:n])
	hr.n += int64(n)
	return n, err
}

func (hr *hashingReader) sum() string { return hex.EncodeToString(hr.h.Sum(nil)) }

// zstdLevel maps 1-4 to klauspost's levels (fastest, default ~ zstd -3,
// better ~ -7, best ~ -11); 0 means default.
func zstdLevel(l int) zstd.EncoderLevel {
	switch l {
	case 1:
		return zstd.SpeedFastest
	case 3:
		return zstd.SpeedBetterCompression
	case 4:
		return zstd.SpeedBestCompression
	}
	return zstd.SpeedDefault
}

// decodeResult is what decoding a stored object produced.
type decodeResult struct {
	storedSize int64
	storedSHA  string
	rawSize    int64
	rawSHA     string
}

// decode streams the stored object r through decryption and decompression
// into dst, hashing both sides. It reads r to its end even when decoding
// fails early, so the stored hash is always whole when err is a decode
// error; the caller compares hashes first (a flipped byte is a checksum
// mismatch, not a puzzling zstd error).
func decode(ctx context.Context, r io.Reader, dst io.Writer, identities []age.Identity, encrypted bool) (decodeResult, error) {
	stored := newHashingReader(bufio.NewReaderSize(storage.ContextReader(ctx, r), copyBuf))
	var src io.Reader = stored
	if encrypted {
		if len(identities) == 0 {
			_, _ = io.Copy(io.Discard, stored)
			return decodeResult{storedSize: stored.n, storedSHA: stored.sum()}, fmt.Errorf("%w: the backup is encrypted; give --identity FILE with an age identity for one of its recipients", ErrDecrypt)
		}
		d, err := age.Decrypt(stored, identities...)
		if err != nil {
			_, _ = io.Copy(io.Discard, stored)
			return decodeResult{storedSize: stored.n, storedSHA: stored.sum()}, fmt.Errorf("%w: %v", ErrDecrypt, err)
		}
		src = d
	}
	dec, err := zstd.NewReader(src, zstd.WithDecoderConcurrency(2), zstd.WithDecoderLowmem(true), zstd.WithDecoderMaxWindow(64<<20))
	if err != nil {
		return decodeResult{}, fmt.Errorf("decompress: %w", err)
	}
	defer dec.Close()
	raw := newHashingWriter(dst)
	_, err = dec.WriteTo(raw)
	if err != nil {
		if ctx.Err() != nil {
			return decodeResult{}, ctx.Err()
		}
		_, _ = io.Copy(io.Discard, stored)
		err = fmt.Errorf("decompress: %w", err)
	} else if _, cerr := io.Copy(io.Discard, stored); cerr != nil {
		err = cerr
	}
	return decodeResult{storedSize: stored.n, storedSHA: stored.sum(), rawSize: raw.n, rawSHA: raw.sum()}, err
}

// ParseRecipients parses age X25519 recipients ("age1..."), given one per
// entry; blank entries and "#" comments are skipped, so the lines of a
// recipients file can be passed as they are. It returns the recipients and
// their canonical strings; the error names the bad entry.
func ParseRecipients(entries []string) ([]age.Recipient, []string, error) {
	var rs []age.Recipient
	var names []string
	for _, e := range entries {
		e = strings.TrimSpace(e)
		if e == "" || strings.HasPrefix(e, "#") {
			continue
		}
		r, err := age.ParseX25519Recipient(e)
		if err != nil {
			return nil, nil, fmt.Errorf("recipient %q: %w", e, err)
		}
		rs = append(rs, r)
		names = append(names, r.String())
	}
	return rs, names, nil
}

// ParseIdentities parses age identity files' contents (AGE-SECRET-KEY-1...
// lines, # comments).
func ParseIdentities(files ...[]byte) ([]age.Identity, error) {
	var ids []age.Identity
	for _, b := range files {
		got, err := age.ParseIdentities(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("identity: %w", err)
		}
		ids = append(ids, got...)
	}
	return ids, nil
}
