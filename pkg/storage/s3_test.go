package storage_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/internal/s3test"
	"github.com/ip2a/ip2a-ops/pkg/storage"
)

func openS3(t *testing.T, cfg storage.Config) storage.Store {
	t.Helper()
	st, err := storage.Open(t.Context(), cfg)
	require.NoError(t, err)
	return st
}

// TestS3Errors pins the one-line errors for the ways an S3 setup goes wrong:
// each wraps its sentinel, names what to check, and never shows the secret.
func TestS3Errors(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	tests := []struct {
		name     string
		mutate   func(c *storage.Config)
		sentinel error
		contains []string
	}{
		{name: "wrong secret", mutate: func(c *storage.Config) { c.SecretKey = "wrong-secret-value" },
			sentinel: storage.ErrAccessDenied, contains: []string{"access denied", "S3_SECRET_ACCESS_KEY", "SignatureDoesNotMatch"}},
		{name: "unknown access key", mutate: func(c *storage.Config) { c.AccessKey = "nobody" },
			sentinel: storage.ErrAccessDenied, contains: []string{"access denied", "S3_ACCESS_KEY_ID", "InvalidAccessKeyId"}},
		{name: "missing bucket", mutate: func(c *storage.Config) { c.URL = "s3://no-such-bucket/x" },
			sentinel: storage.ErrBucketNotFound, contains: []string{"bucket does not exist", "S3_BUCKET_NAME", "NoSuchBucket"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := srv.Config("p")
			tc.mutate(&cfg)
			st := openS3(t, cfg)
			_, err := st.Put(t.Context(), "backups/x", strings.NewReader("data"), storage.PutOptions{})
			require.ErrorIs(t, err, tc.sentinel)
			msg := err.Error()
			require.True(t, strings.HasPrefix(msg, "s3 put backups/x: "), msg)
			require.NotContains(t, msg, "\n")
			for _, c := range tc.contains {
				require.Contains(t, msg, c)
			}
			require.NotContains(t, msg, srv.SecretKey)
			require.NotContains(t, msg, cfg.SecretKey)

			// Check reports the same cause, naming its step.
			err = storage.Check(t.Context(), st)
			require.ErrorIs(t, err, tc.sentinel)
			require.Contains(t, err.Error(), "storage check s3://")
			require.Contains(t, err.Error(), "write probe")
			require.NotContains(t, err.Error(), cfg.SecretKey)
		})
	}
}

// TestS3EndpointStopped stops the server for real: every call then fails
// fast with ErrUnreachable and the connection-refused cause.
func TestS3EndpointStopped(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	st := openS3(t, srv.Config("p"))
	put(t, st, "before/stop", []byte("x"))
	srv.Stop()

	ctx := t.Context()
	calls := map[string]func() error{
		"put": func() error {
			_, err := st.Put(ctx, "after/stop", strings.NewReader("x"), storage.PutOptions{})
			return err
		},
		"get":    func() error { _, err := st.Get(ctx, "before/stop"); return err },
		"stat":   func() error { _, err := st.Stat(ctx, "before/stop"); return err },
		"list":   func() error { _, err := st.List(ctx, ""); return err },
		"delete": func() error { return st.Delete(ctx, "before/stop") },
		"check":  func() error { return storage.Check(ctx, st) },
	}
	for name, call := range calls {
		start := time.Now()
		err := call()
		require.ErrorIs(t, err, storage.ErrUnreachable, name)
		require.ErrorIs(t, err, syscall.ECONNREFUSED, name)
		require.Contains(t, err.Error(), "endpoint unreachable: check S3_ENDPOINT_URL", name)
		require.Contains(t, err.Error(), "connection refused", name)
		require.NotContains(t, err.Error(), "\n", name)
		require.Less(t, time.Since(start), 5*time.Second, "%s took too long to fail", name)
	}
}

// TestS3UploadHeaders checks what the S3 store sends, through what the server
// stored: the hex SHA-256 as x-amz-meta-sha256, the SHA-256 upload checksum,
// and Object Lock compliance retention. The test server does not verify
// checksums or enforce Object Lock (see package s3test), so only the
// headers are asserted here.
func TestS3UploadHeaders(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	cfg := srv.Config("prod")
	cfg.PartSize = testPartSize
	st := openS3(t, cfg)
	retain := time.Date(2033, 1, 2, 3, 4, 5, 0, time.UTC)

	tests := []struct {
		name          string
		size          int
		giveSHA       bool
		wantChecksum  bool // single PUT carries the whole-object checksum
		wantAlgorithm bool // multipart declares composite SHA256 checksums
		wantMetaSHA   bool
	}{
		{name: "single put, sha computed", size: 1000, wantChecksum: true, wantMetaSHA: true},
		{name: "single put, sha given", size: 1000, giveSHA: true, wantChecksum: true, wantMetaSHA: true},
		{name: "multipart, sha given", size: testPartSize + 10, giveSHA: true, wantAlgorithm: true, wantMetaSHA: true},
		{name: "multipart, sha unknown", size: testPartSize + 10, wantAlgorithm: true},
	}
	for i, tc := range tests {
		data := randomBytes(tc.size, uint64(i))
		opts := storage.PutOptions{RetainUntil: retain, ContentType: "application/zstd"}
		if tc.giveSHA {
			opts.SHA256 = sha(data)
		}
		key := "h/" + string(rune('a'+i))
		_, err := st.Put(t.Context(), key, bytes.NewReader(data), opts)
		require.NoError(t, err, tc.name)
		meta := srv.Metadata(t, "prod/"+key)

		require.Equal(t, "COMPLIANCE", meta["X-Amz-Object-Lock-Mode"], tc.name)
		require.Equal(t, "2033-01-02T03:04:05Z", meta["X-Amz-Object-Lock-Retain-Until-Date"], tc.name)
		require.Equal(t, "application/zstd", meta["Content-Type"], tc.name)
		if tc.wantMetaSHA {
			require.Equal(t, sha(data), meta["X-Amz-Meta-Sha256"], tc.name)
		} else {
			require.NotContains(t, meta, "X-Amz-Meta-Sha256", tc.name)
		}
		if tc.wantChecksum {
			raw, _ := hex.DecodeString(sha(data))
			require.Equal(t, base64.StdEncoding.EncodeToString(raw), meta["X-Amz-Checksum-Sha256"], tc.name)
		}
		if tc.wantAlgorithm {
			require.Equal(t, "SHA256", meta["X-Amz-Checksum-Algorithm"], tc.name)
		}
	}
	// Not tested here: that the server enforces Object Lock retention or
	// verifies x-amz-checksum-sha256 (s3test, gofakes3 v1.2.0, does
	// neither); the headers are asserted above and the store's own
	// verification by TestContractChecksumMismatch.
}

// TestS3CleanTemp leaves an incomplete multipart upload behind, as a killed
// process would, and checks that CleanTemp aborts it only once it is old
// enough, and only under the store's prefix.
func TestS3CleanTemp(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	st := openS3(t, srv.Config("prod"))
	core, err := minio.NewCore(strings.TrimPrefix(srv.Endpoint, "http://"), &minio.Options{
		Creds:        credentials.NewStaticV4(srv.AccessKey, srv.SecretKey, ""),
		Region:       srv.Region,
		BucketLookup: minio.BucketLookupPath,
	})
	require.NoError(t, err)
	ctx := context.Background()
	_, err = core.NewMultipartUpload(ctx, srv.Bucket, "prod/backups/killed.dump", minio.PutObjectOptions{})
	require.NoError(t, err)
	_, err = core.NewMultipartUpload(ctx, srv.Bucket, "other/not-ours", minio.PutObjectOptions{})
	require.NoError(t, err)

	cleaner := st.(storage.TempCleaner)
	n, err := cleaner.CleanTemp(t.Context(), time.Hour)
	require.NoError(t, err)
	require.Zero(t, n, "a fresh upload may belong to a running Put")

	n, err = cleaner.CleanTemp(t.Context(), 0)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	n, err = cleaner.CleanTemp(t.Context(), 0)
	require.NoError(t, err)
	require.Zero(t, n)

	other, err := core.ListMultipartUploads(ctx, srv.Bucket, "other/", "", "", "", 10)
	require.NoError(t, err)
	require.Len(t, other.Uploads, 1, "an upload outside the prefix was touched")
}

func TestS3String(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	cfg := srv.Config("prod/ip2a")
	st := openS3(t, cfg)
	require.Equal(t, "s3://ip2a-test/prod/ip2a at "+srv.Endpoint, st.String())
	require.NotContains(t, st.String(), cfg.SecretKey)
	require.NotContains(t, cfg.String(), cfg.SecretKey)
	require.Contains(t, cfg.String(), "secret_key=REDACTED")
}

// TestS3ObjectLockMissingHint replays the answer AWS gives to a retention
// request on a bucket without Object Lock, which the test server cannot
// produce, and checks the error says what to fix.
func TestS3ObjectLockMissingHint(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>InvalidRequest</Code><Message>Bucket is missing Object Lock Configuration</Message></Error>`)
	}))
	t.Cleanup(srv.Close)
	st := openS3(t, storage.Config{URL: "s3://bkt/p", Endpoint: srv.URL, Region: "us-east-1", AccessKey: "ak", SecretKey: "sk", PathStyle: true})
	_, err := st.Put(t.Context(), "k", strings.NewReader("x"), storage.PutOptions{RetainUntil: time.Now().Add(time.Hour)})
	require.EqualError(t, err, "s3 put k: retention needs a bucket created with Object Lock enabled (InvalidRequest: Bucket is missing Object Lock Configuration)")
}
