package backup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"filippo.io/age"

	"github.com/ip2a/ip2a-ops/pkg/storage"
)

var errTailChanged = errors.New("archive changed past the head after it was compressed")

// putSplit stores the object made of the archive's head, compressed now,
// and its tail, compressed during the dump, and checks the stored object's
// checksum (when o.Verify asks for it); meanwhile a second goroutine reads
// the raw archive once for its SHA-256 and to check that the tail did not
// change after it was compressed. It returns errTailChanged (with the
// object stored, to be replaced) when it did. The raw archive is read only
// by that pass, the compressed parts only by the hash and the upload.
func putSplit(ctx context.Context, o *Options, res *Result, key, rawPath string, wd *workDir, tr tailResult,
	recipients []age.Recipient, stored *bool) (encodeResult, *Verification, error) {
	hctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rawc := make(chan rawHash, 1)
	go func() { rawc <- hashRaw(hctx, rawPath, o.headSize, tr) }()
	waited := false
	defer func() {
		if !waited {
			cancel()
			<-rawc
		}
	}()

	t := time.Now()
	headPath := wd.file("head.zst")
	if err := compressHead(ctx, rawPath, headPath, o.headSize, o.Level, o.Threads); err != nil {
		return encodeResult{}, nil, fmt.Errorf("backup: encode: %w", diskFull(err, o.WorkDir))
	}
	parts, err := prepareParts(ctx, headPath, wd.file("tail.zst"), wd.file("object"), recipients)
	if err != nil {
		return encodeResult{}, nil, fmt.Errorf("backup: encode: %w", diskFull(err, o.WorkDir))
	}
	res.EncodeSeconds = time.Since(t).Seconds()

	res.Stage = "upload"
	t = time.Now()
	body, closeParts, err := openParts(parts.files)
	if err != nil {
		return encodeResult{}, nil, fmt.Errorf("backup: upload: %w", err)
	}
	_, err = o.Store.Put(ctx, key, body, storage.PutOptions{SHA256: parts.sha, Size: parts.size})
	closeParts()
	if err != nil {
		return encodeResult{}, nil, fmt.Errorf("backup: upload %s to %s: %w", key, o.Store, err)
	}
	*stored = true
	res.UploadSeconds = time.Since(t).Seconds()

	var checked *Verification
	if o.Verify == LevelChecksum {
		res.Stage = "verify"
		t = time.Now()
		v := checksumStored(ctx, o.Store, Manifest{Object: ObjectInfo{Key: key, Size: parts.size, SHA256: parts.sha}})
		v.Seconds = time.Since(t).Seconds()
		checked = &v
	}

	rh := <-rawc
	waited = true
	if rh.err != nil {
		res.Stage = "encode"
		return encodeResult{}, nil, fmt.Errorf("backup: hash the archive: %w", rh.err)
	}
	if !rh.unchanged {
		return encodeResult{}, nil, errTailChanged
	}
	return encodeResult{rawSize: rh.size, rawSHA: rh.sha, storedSize: parts.size, storedSHA: parts.sha}, checked, nil
}

// putWhole compresses (and encrypts) the whole archive into the object file
// at encPath and stores it: small archives, and the fallback when the tail
// changed after it was compressed.
func putWhole(ctx context.Context, o *Options, res *Result, key, rawPath, encPath string,
	recipients []age.Recipient, stored *bool) (encodeResult, error) {
	res.Stage = "encode"
	t := time.Now()
	f, err := os.OpenFile(encPath, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return encodeResult{}, fmt.Errorf("backup: encode: %w", err)
	}
	enc, err := encodeFile(ctx, rawPath, f, o.Level, o.Threads, recipients)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return encodeResult{}, fmt.Errorf("backup: encode: %w", diskFull(err, o.WorkDir))
	}
	res.EncodeSeconds = time.Since(t).Seconds()

	res.Stage = "upload"
	t = time.Now()
	in, err := os.Open(encPath)
	if err != nil {
		return encodeResult{}, fmt.Errorf("backup: upload: %w", err)
	}
	_, err = o.Store.Put(ctx, key, in, storage.PutOptions{SHA256: enc.storedSHA, Size: enc.storedSize})
	_ = in.Close()
	if err != nil {
		return encodeResult{}, fmt.Errorf("backup: upload %s to %s: %w", key, o.Store, err)
	}
	*stored = true
	res.UploadSeconds = time.Since(t).Seconds()
	return enc, nil
}
