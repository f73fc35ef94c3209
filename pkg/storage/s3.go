package storage

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/s3utils"
)

// Part sizes for multipart uploads. Memory per Put is about one part (plus
// its growth to full size once), so the default keeps an upload of any size
// within ~8-16 MiB; S3 allows at most 10,000 parts, so 8 MiB parts cap an
// object of unknown size at ~78 GiB (a backup of IP2A is about a tenth of
// the database). 16 MiB parts took a streamed, encrypted 1.3 GB backup to
// 108 MB peak RSS, past its 100 MB budget.
const (
	DefaultPartSize = 8 << 20
	MinPartSize     = 5 << 20 // S3's minimum for every part but the last
	maxParts        = 10000
	// defaultMaxRetries bounds how long an unreachable endpoint takes to
	// report (about two seconds of backoff); parts are retried from memory.
	defaultMaxRetries = 5
	// abortTimeout bounds the cleanup of a failed multipart upload, which runs
	// even when the caller's context is already cancelled.
	abortTimeout = 30 * time.Second
)

// S3 is a Store in a bucket of an S3-compatible service, under an optional
// key prefix. An object becomes visible only when its upload completes: a
// failed or cancelled multipart upload is aborted. Every upload carries a
// Content-MD5 and an x-amz-checksum-sha256 per request (so buckets with
// Object Lock accept it, and the server rejects a corrupted body), and the
// object's hex SHA-256 is kept as user metadata x-amz-meta-sha256 when known
// before the upload starts (always for objects smaller than one part).
type S3 struct {
	core     *minio.Core
	bucket   string
	prefix   string // "" or ending in "/"
	endpoint string // scheme://host, for String
	partSize int
}

var (
	_ Store       = (*S3)(nil)
	_ TempCleaner = (*S3)(nil)
)

// NewS3 returns a store for cfg.Bucket under cfg.Prefix at cfg.Endpoint (cfg.URL
// is ignored: Open parses it). It does not contact the endpoint; use Check
// for an early, clear error.
func NewS3(cfg Config) (*S3, error) {
	if err := cfg.validateS3(); err != nil {
		return nil, fmt.Errorf("s3 store: %w", err)
	}
	if err := s3utils.CheckValidBucketName(cfg.Bucket); err != nil {
		return nil, fmt.Errorf("s3 store: Bucket %q: %w", cfg.Bucket, err)
	}
	host, secure, err := parseEndpoint(cfg.Endpoint, cfg.Insecure)
	if err != nil {
		return nil, fmt.Errorf("s3 store: Endpoint: %w", err)
	}
	lookup := minio.BucketLookupAuto
	if cfg.PathStyle {
		lookup = minio.BucketLookupPath
	}
	retries := cfg.MaxRetries
	if retries <= 0 {
		retries = defaultMaxRetries
	}
	core, err := minio.NewCore(host, &minio.Options{
		Creds:        credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure:       secure,
		Region:       cfg.Region,
		BucketLookup: lookup,
		MaxRetries:   retries,
	})
	if err != nil {
		return nil, fmt.Errorf("s3 store: %w", err)
	}
	partSize := cfg.PartSize
	if partSize == 0 {
		partSize = DefaultPartSize
	}
	scheme := "https"
	if !secure {
		scheme = "http"
	}
	return &S3{
		core:     core,
		bucket:   cfg.Bucket,
		prefix:   cleanPrefix(cfg.Prefix),
		endpoint: scheme + "://" + host,
		partSize: partSize,
	}, nil
}

// String returns "s3://bucket/prefix at scheme://host" ("s3://bucket at ..."
// without a prefix); never credentials.
func (s *S3) String() string {
	u := "s3://" + s.bucket
	if s.prefix != "" {
		u += "/" + strings.TrimSuffix(s.prefix, "/")
	}
	return u + " at " + s.endpoint
}

func (s *S3) object(key string) string { return s.prefix + key }

// Put streams r in parts of at most the configured part size: content smaller
// than one part goes in one PUT, larger content in a multipart upload that
// is completed only after the whole content matched opts.SHA256 and
// opts.Size, and is aborted on any error or cancellation.
func (s *S3) Put(ctx context.Context, key string, r io.Reader, opts PutOptions) (ObjectInfo, error) {
	if err := ValidateKey(key); err != nil {
		return ObjectInfo{}, fmt.Errorf("s3 put: %w", err)
	}
	want, err := parseSHA256(opts.SHA256)
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("s3 put %s: %w", key, err)
	}
	limit := s.partSize
	if opts.Size > 0 && opts.Size < int64(limit) {
		// One byte more than declared, so a longer body is noticed without
		// buffering a whole part for a small object.
		limit = int(opts.Size) + 1
	}
	buf, err := readPart(ctx, r, nil, limit)
	switch {
	case errors.Is(err, io.EOF):
		return s.putSingle(ctx, key, buf, want, opts)
	case err != nil:
		return ObjectInfo{}, fmt.Errorf("s3 put %s: read: %w", key, err)
	case limit < s.partSize:
		return ObjectInfo{}, fmt.Errorf("s3 put %s: %w: content longer than PutOptions.Size %d", key, ErrChecksumMismatch, opts.Size)
	}
	return s.putMultipart(ctx, key, r, buf, want, opts)
}

func (s *S3) putOptions(opts PutOptions, sha256Hex string) minio.PutObjectOptions {
	po := minio.PutObjectOptions{
		ContentType:  opts.ContentType,
		UserMetadata: map[string]string{},
		// The payload hash is signed with the part's real SHA-256 instead of
		// streaming signatures: the server checks it, and every S3-compatible
		// service (and the test server) understands it.
		DisableContentSha256: true,
	}
	if sha256Hex != "" {
		po.UserMetadata["sha256"] = sha256Hex // sent as x-amz-meta-sha256
	}
	if !opts.RetainUntil.IsZero() {
		po.Mode = minio.Compliance
		po.RetainUntilDate = opts.RetainUntil.UTC()
	}
	return po
}

func (s *S3) putSingle(ctx context.Context, key string, data []byte, want []byte, opts PutOptions) (ObjectInfo, error) {
	sum := sha256.Sum256(data)
	// Checked here as well as by the server, because not every
	// S3-compatible service verifies x-amz-checksum-sha256.
	if err := checkContent(int64(len(data)), sum[:], want, opts.Size); err != nil {
		return ObjectInfo{}, fmt.Errorf("s3 put %s: %w", key, err)
	}
	md5sum := md5.Sum(data)
	po := s.putOptions(opts, hex.EncodeToString(sum[:]))
	po.UserMetadata["x-amz-checksum-sha256"] = base64.StdEncoding.EncodeToString(sum[:])
	info, err := s.core.PutObject(ctx, s.bucket, s.object(key), bytes.NewReader(data), int64(len(data)),
		base64.StdEncoding.EncodeToString(md5sum[:]), hex.EncodeToString(sum[:]), po)
	if err != nil {
		return ObjectInfo{}, s.fail("put", key, err)
	}
	return ObjectInfo{Key: key, Size: int64(len(data)), Modified: modified(info.LastModified)}, nil
}

func (s *S3) putMultipart(ctx context.Context, key string, r io.Reader, first []byte, want []byte, opts PutOptions) (_ ObjectInfo, err error) {
	obj := s.object(key)
	po := s.putOptions(opts, opts.SHA256)
	// Composite SHA-256 checksums: each part carries its own, which the
	// server verifies, and Object Lock buckets require a checksum.
	po.UserMetadata["x-amz-checksum-algorithm"] = "SHA256"
	uploadID, err := s.core.NewMultipartUpload(ctx, s.bucket, obj, po)
	if err != nil {
		return ObjectInfo{}, s.fail("put", key, err)
	}
	completed := false
	defer func() {
		if completed {
			return
		}
		// The caller's ctx may be cancelled already; the abort must still
		// run, or the parts stay billed and invisible.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
		defer cancel()
		if aerr := s.core.AbortMultipartUpload(actx, s.bucket, obj, uploadID); aerr != nil {
			err = fmt.Errorf("%w (and aborting the upload failed, CleanTemp removes it later: %v)", err, aerr)
		}
	}()

	whole := sha256.New()
	var parts []minio.CompletePart
	var total int64
	buf := first
	for {
		if len(buf) > 0 {
			if len(parts) == maxParts {
				return ObjectInfo{}, fmt.Errorf("s3 put %s: more than %d parts of %d bytes", key, maxParts, s.partSize)
			}
			part, perr := s.putPart(ctx, obj, uploadID, len(parts)+1, buf)
			if perr != nil {
				return ObjectInfo{}, s.fail("put", key, perr)
			}
			parts = append(parts, part)
			whole.Write(buf)
			total += int64(len(buf))
		}
		var rerr error
		buf, rerr = readPart(ctx, r, buf, s.partSize)
		if errors.Is(rerr, io.EOF) {
			if len(buf) == 0 {
				break
			}
			continue // upload the last, short part; the next read sees EOF again
		}
		if rerr != nil {
			return ObjectInfo{}, fmt.Errorf("s3 put %s: read: %w", key, rerr)
		}
	}
	if err := checkContent(total, whole.Sum(nil), want, opts.Size); err != nil {
		return ObjectInfo{}, fmt.Errorf("s3 put %s: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return ObjectInfo{}, fmt.Errorf("s3 put %s: %w", key, err)
	}
	info, err := s.core.CompleteMultipartUpload(ctx, s.bucket, obj, uploadID, parts, minio.PutObjectOptions{ContentType: opts.ContentType})
	if err != nil {
		return ObjectInfo{}, s.fail("put", key, err)
	}
	completed = true
	return ObjectInfo{Key: key, Size: total, Modified: modified(info.LastModified)}, nil
}

func (s *S3) putPart(ctx context.Context, obj, uploadID string, n int, data []byte) (minio.CompletePart, error) {
	sum := sha256.Sum256(data)
	md5sum := md5.Sum(data)
	b64 := base64.StdEncoding.EncodeToString(sum[:])
	hdr := make(map[string][]string, 2)
	hdr["X-Amz-Checksum-Sha256"] = []string{b64}
	hdr["X-Amz-Sdk-Checksum-Algorithm"] = []string{"SHA256"}
	p, err := s.core.PutObjectPart(ctx, s.bucket, obj, uploadID, n, bytes.NewReader(data), int64(len(data)),
		minio.PutObjectPartOptions{
			Md5Base64:            base64.StdEncoding.EncodeToString(md5sum[:]),
			Sha256Hex:            hex.EncodeToString(sum[:]),
			CustomHeader:         hdr,
			DisableContentSha256: true,
		})
	if err != nil {
		return minio.CompletePart{}, err
	}
	return minio.CompletePart{PartNumber: n, ETag: p.ETag, ChecksumSHA256: b64}, nil
}

// Get opens the object for reading. Missing: ErrNotExist.
func (s *S3) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := ValidateKey(key); err != nil {
		return nil, fmt.Errorf("s3 get: %w", err)
	}
	rc, _, _, err := s.core.GetObject(ctx, s.bucket, s.object(key), minio.GetObjectOptions{})
	if err != nil {
		return nil, s.fail("get", key, err)
	}
	return rc, nil
}

// Stat returns the object's size and last-modified time. Missing:
// ErrNotExist (a missing bucket also reads as ErrNotExist here, because a
// HEAD response has no body to tell them apart; Check reports it clearly).
func (s *S3) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	if err := ValidateKey(key); err != nil {
		return ObjectInfo{}, fmt.Errorf("s3 stat: %w", err)
	}
	oi, err := s.core.StatObject(ctx, s.bucket, s.object(key), minio.StatObjectOptions{})
	if err != nil {
		return ObjectInfo{}, s.fail("stat", key, err)
	}
	return ObjectInfo{Key: key, Size: oi.Size, Modified: oi.LastModified}, nil
}

// List returns the objects under the store prefix + prefix, sorted by key,
// with the store prefix removed from the keys.
func (s *S3) List(ctx context.Context, prefix string) ([]ObjectInfo, error) {
	if err := validatePrefix(prefix); err != nil {
		return nil, fmt.Errorf("s3 list: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops the lister goroutine when we return early
	var out []ObjectInfo
	for oi := range s.core.Client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.prefix + prefix, Recursive: true}) {
		if oi.Err != nil {
			return nil, s.fail("list", prefix, oi.Err)
		}
		key := strings.TrimPrefix(oi.Key, s.prefix)
		if strings.HasSuffix(key, "/") {
			continue // a "folder" marker some consoles create, not an object
		}
		out = append(out, ObjectInfo{Key: key, Size: oi.Size, Modified: oi.LastModified})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// Delete removes the object. A missing key is not an error. With Object Lock
// the server refuses to delete a retained version; that error is returned.
func (s *S3) Delete(ctx context.Context, key string) error {
	if err := ValidateKey(key); err != nil {
		return fmt.Errorf("s3 delete: %w", err)
	}
	err := s.core.RemoveObject(ctx, s.bucket, s.object(key), minio.RemoveObjectOptions{})
	if err != nil {
		if minio.ToErrorResponse(err).Code == minio.NoSuchKey {
			return nil
		}
		return s.fail("delete", key, err)
	}
	return nil
}

// CleanTemp aborts the incomplete multipart uploads under the store prefix
// that were started more than olderThan ago (a process killed mid-upload
// leaves them; S3 bills their parts and never shows them as objects), and
// returns how many it aborted. olderThan <= 0 aborts every one.
func (s *S3) CleanTemp(ctx context.Context, olderThan time.Duration) (int, error) {
	cutoff := time.Now().Add(-olderThan)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	removed := 0
	for u := range s.core.ListIncompleteUploads(ctx, s.bucket, s.prefix, true) {
		if u.Err != nil {
			if minio.ToErrorResponse(u.Err).Code == minio.NoSuchUpload {
				// Some servers (gofakes3) answer a listing of a bucket that
				// never had an upload this way; it means there are none.
				break
			}
			return removed, s.fail("clean temp", s.prefix, u.Err)
		}
		if olderThan > 0 && u.Initiated.After(cutoff) {
			continue
		}
		if err := s.core.AbortMultipartUpload(ctx, s.bucket, u.Key, u.UploadID); err != nil {
			if minio.ToErrorResponse(err).Code == minio.NoSuchUpload {
				continue // finished or aborted by someone else meanwhile
			}
			return removed, s.fail("clean temp", u.Key, err)
		}
		removed++
	}
	return removed, nil
}

// readPart fills buf (reused, grown up to limit) from r. It returns io.EOF,
// with whatever was read, once r is exhausted; nil means the part is full
// and more may follow. It checks ctx between reads so a cancelled Put stops
// reading at once.
func readPart(ctx context.Context, r io.Reader, buf []byte, limit int) ([]byte, error) {
	buf = buf[:0]
	for len(buf) < limit {
		if len(buf) == cap(buf) {
			// Grow by doubling so small objects stay small in memory.
			nb := make([]byte, len(buf), min(max(2*cap(buf), 64<<10), limit))
			copy(nb, buf)
			buf = nb
		}
		if err := ctx.Err(); err != nil {
			return buf, err
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil {
			return buf, err
		}
	}
	return buf, nil
}

func modified(t time.Time) time.Time {
	if t.IsZero() {
		return time.Now().UTC()
	}
	return t
}

// fail turns a minio-go error into a one-line error that names the cause
// and what to check, wrapping ErrNotExist, ErrAccessDenied,
// ErrBucketNotFound or ErrUnreachable and the original error.
func (s *S3) fail(op, key string, err error) error {
	kind, hint, detail := classifyS3(err)
	msg := "s3 " + op + " " + key + ": "
	switch {
	case kind != nil && hint != "":
		msg += kind.Error() + ": " + hint + " (" + detail + ")"
	case kind != nil:
		msg += kind.Error() + " (" + detail + ")"
	case hint != "":
		msg += hint + " (" + detail + ")"
	default:
		msg += detail
	}
	return &s3Error{msg: msg, kind: kind, cause: err}
}

func classifyS3(err error) (kind error, hint, detail string) {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return nil, "", err.Error()
	}
	var resp minio.ErrorResponse
	if errors.As(err, &resp) && resp.Code != "" {
		detail = resp.Code
		if resp.Message != "" {
			detail += ": " + resp.Message
		}
		switch resp.Code {
		case minio.NoSuchKey:
			return ErrNotExist, "", detail
		case minio.NoSuchBucket:
			return ErrBucketNotFound, "check S3_BUCKET_NAME / the storage URL", detail
		case minio.AccessDenied, minio.InvalidAccessKeyID, "SignatureDoesNotMatch", "InvalidToken",
			"ExpiredToken", "AccountProblem", "AllAccessDisabled":
			return ErrAccessDenied, "check S3_ACCESS_KEY_ID/S3_SECRET_ACCESS_KEY and the key's permissions on the bucket", detail
		case "InvalidRequest":
			if strings.Contains(strings.ToLower(resp.Message), "object lock") {
				return nil, "retention needs a bucket created with Object Lock enabled", detail
			}
		}
		return nil, "", detail
	}
	var opErr *net.OpError
	var dnsErr *net.DNSError
	var certErr *x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	switch {
	case errors.As(err, &dnsErr):
		return ErrUnreachable, "check S3_ENDPOINT_URL", dnsErr.Error()
	case errors.As(err, &opErr):
		return ErrUnreachable, "check S3_ENDPOINT_URL", opErr.Error()
	case errors.As(err, &certErr), errors.As(err, &hostErr):
		return ErrUnreachable, "check S3_ENDPOINT_URL (TLS certificate)", err.Error()
	}
	var uerr *url.Error
	if errors.As(err, &uerr) {
		if strings.Contains(uerr.Err.Error(), "HTTP response to HTTPS client") {
			return ErrUnreachable, "the endpoint speaks plain http: use an http:// endpoint URL", uerr.Err.Error()
		}
		return ErrUnreachable, "check S3_ENDPOINT_URL", uerr.Err.Error()
	}
	return nil, "", err.Error()
}

// s3Error keeps the readable message and, for errors.Is/As, both the
// category sentinel and minio-go's original error.
type s3Error struct {
	msg   string
	kind  error
	cause error
}

func (e *s3Error) Error() string { return e.msg }

func (e *s3Error) Unwrap() []error {
	if e.kind == nil {
		return []error{e.cause}
	}
	return []error{e.kind, e.cause}
}

// parseEndpoint accepts "https://host[:port]", "http://host[:port]" or
// "host[:port]" (https unless insecure). Empty means AWS.
func parseEndpoint(ep string, insecure bool) (host string, secure bool, err error) {
	if ep == "" {
		return "s3.amazonaws.com", !insecure, nil
	}
	if !strings.Contains(ep, "://") {
		if strings.ContainsAny(ep, "/@?#") {
			return "", false, errors.New("want https://host[:port] or host[:port]")
		}
		return ep, !insecure, nil
	}
	u, err := url.Parse(ep)
	if err != nil {
		return "", false, errors.New("not a URL (want https://host[:port])")
	}
	if u.User != nil {
		// Do not echo the URL: it holds credentials.
		return "", false, errors.New("credentials in the endpoint URL are not supported: use the access key variables")
	}
	if u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return "", false, fmt.Errorf("%q: want scheme://host[:port] with no path", ep)
	}
	switch u.Scheme {
	case "https":
		return u.Host, true, nil
	case "http":
		return u.Host, false, nil
	}
	return "", false, fmt.Errorf("%q: scheme must be http or https", ep)
}

func cleanPrefix(p string) string {
	p = strings.Trim(p, "/")
	if p == "" {
		return ""
	}
	return p + "/"
}
