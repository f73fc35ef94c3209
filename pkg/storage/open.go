package storage

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"strings"
)

// Config selects and configures a store. Zero values mean defaults.
type Config struct {
	// URL picks the store: "file:///abs/dir" or a plain path -> Local;
	// "s3://bucket/prefix" -> S3 (overriding Bucket and Prefix). Empty: S3
	// when Bucket is set, else an error.
	URL string
	// Endpoint of the S3-compatible service: "https://host:port",
	// "http://host:port" or "host:port" (https unless Insecure). Empty: AWS.
	Endpoint string
	// Bucket and Prefix (a key prefix inside the bucket, slashes trimmed)
	// when URL does not give them.
	Bucket string
	Prefix string
	// Region; empty lets the client ask the bucket for its location.
	Region string
	// AccessKey and SecretKey authenticate to S3. They never appear in
	// String, errors or logs.
	AccessKey string
	SecretKey string
	// PathStyle forces https://host/bucket/key requests (MinIO and many
	// self-hosted services need it); false picks virtual-host style for AWS
	// and path style elsewhere.
	PathStyle bool
	// Insecure uses plain http for an Endpoint given without a scheme.
	Insecure bool
	// PartSize of multipart uploads in bytes: 0 means DefaultPartSize; at
	// least MinPartSize. Memory per Put is about one part.
	PartSize int
	// MaxRetries per request on network errors; 0 means 5.
	MaxRetries int
}

// String describes the config without secrets, so a Config printed with %v
// or logged by accident does not leak the secret key.
func (c Config) String() string {
	key := ""
	if c.AccessKey != "" {
		key = " access_key=" + c.AccessKey
	}
	secret := ""
	if c.SecretKey != "" {
		secret = " secret_key=REDACTED"
	}
	return fmt.Sprintf("storage.Config{url=%q endpoint=%q bucket=%q prefix=%q region=%q path_style=%t insecure=%t%s%s}",
		redactURL(c.URL), c.Endpoint, c.Bucket, c.Prefix, c.Region, c.PathStyle, c.Insecure, key, secret)
}

func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	u.User = url.User("REDACTED")
	return u.String()
}

// validateS3 names the first bad field for an S3 store.
func (c Config) validateS3() error {
	switch {
	case c.Bucket == "":
		return errors.New("Bucket: required (S3_BUCKET_NAME or an s3://bucket URL)")
	case c.AccessKey == "":
		return errors.New("AccessKey: required (S3_ACCESS_KEY_ID)")
	case c.SecretKey == "":
		return errors.New("SecretKey: required (S3_SECRET_ACCESS_KEY)")
	case c.PartSize != 0 && c.PartSize < MinPartSize:
		return fmt.Errorf("PartSize: %d is below the S3 minimum of %d", c.PartSize, MinPartSize)
	case c.MaxRetries < 0:
		return fmt.Errorf("MaxRetries: %d is negative", c.MaxRetries)
	}
	return nil
}

// Open returns the store cfg selects (see Config.URL). It does not touch the
// network; call Check for an early, clear error about credentials, bucket
// or endpoint.
func Open(ctx context.Context, cfg Config) (Store, error) {
	_ = ctx // reserved: opening does no I/O today
	raw := cfg.URL
	switch {
	case raw == "" && cfg.Bucket != "":
		return NewS3(cfg)
	case raw == "":
		return nil, errors.New("open storage: no storage URL or bucket configured")
	case strings.HasPrefix(raw, "s3://"):
		u, err := url.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("open storage: URL %q: %w", redactURL(raw), err)
		}
		if u.Host == "" || u.User != nil || u.RawQuery != "" {
			return nil, fmt.Errorf("open storage: URL %q: want s3://bucket[/prefix]", redactURL(raw))
		}
		cfg.Bucket = u.Host
		cfg.Prefix = strings.Trim(u.Path, "/")
		return NewS3(cfg)
	case strings.HasPrefix(raw, "file://"):
		u, err := url.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("open storage: URL %q: %w", raw, err)
		}
		if (u.Host != "" && u.Host != "localhost") || !filepath.IsAbs(u.Path) {
			return nil, fmt.Errorf("open storage: URL %q: want file:///absolute/path", raw)
		}
		return NewLocal(u.Path)
	case strings.Contains(raw, "://"):
		return nil, fmt.Errorf("open storage: URL %q: unsupported scheme (want file:// or s3://)", redactURL(raw))
	}
	return NewLocal(raw)
}

// ConfigFromEnv reads the IP2A app's S3 variables (S3_ENDPOINT_URL,
// S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY, S3_BUCKET_NAME, S3_REGION), each
// overridden by its ip2a-ops twin when that is set (IP2A_OPS_S3_ENDPOINT,
// IP2A_OPS_S3_ACCESS_KEY_ID, IP2A_OPS_S3_SECRET_ACCESS_KEY,
// IP2A_OPS_S3_BUCKET, IP2A_OPS_S3_REGION), plus IP2A_OPS_S3_PATH_STYLE
// (1/true/yes/on, any case). URL is left empty: the caller sets it from its
// flag. Pass os.Getenv.
func ConfigFromEnv(getenv func(string) string) Config {
	pick := func(ours, app string) string {
		if v := getenv(ours); v != "" {
			return v
		}
		return getenv(app)
	}
	c := Config{
		Endpoint:  pick("IP2A_OPS_S3_ENDPOINT", "S3_ENDPOINT_URL"),
		AccessKey: pick("IP2A_OPS_S3_ACCESS_KEY_ID", "S3_ACCESS_KEY_ID"),
		SecretKey: pick("IP2A_OPS_S3_SECRET_ACCESS_KEY", "S3_SECRET_ACCESS_KEY"),
		Bucket:    pick("IP2A_OPS_S3_BUCKET", "S3_BUCKET_NAME"),
		Region:    pick("IP2A_OPS_S3_REGION", "S3_REGION"),
	}
	switch strings.ToLower(strings.TrimSpace(getenv("IP2A_OPS_S3_PATH_STYLE"))) {
	case "1", "t", "true", "yes", "y", "on":
		c.PathStyle = true
	}
	return c
}

// probePrefix holds Check's probe objects; a probe left by a killed Check is
// tiny and harmless.
const probePrefix = ".ip2a-ops-check/"

// Check writes a small probe object (with its SHA-256, as real uploads do),
// reads it back, compares, deletes it and confirms it is gone. The error
// names the failing step and wraps the store's error (ErrAccessDenied,
// ErrBucketNotFound, ErrUnreachable, syscall errors...). On a bucket whose
// default Object Lock retention applies, the delete leaves a retained
// version of the few-byte probe behind.
func Check(ctx context.Context, s Store) error {
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	key := probePrefix + "probe-" + hex.EncodeToString(rnd[:])
	body := []byte("ip2a-ops storage check " + key + "\n")
	sum := sha256.Sum256(body)
	fail := func(step string, err error) error {
		return fmt.Errorf("storage check %s: %s: %w", s, step, err)
	}
	if _, err := s.Put(ctx, key, bytes.NewReader(body), PutOptions{SHA256: hex.EncodeToString(sum[:]), Size: int64(len(body)), ContentType: "text/plain"}); err != nil {
		return fail("write probe", err)
	}
	rc, err := s.Get(ctx, key)
	if err != nil {
		_ = s.Delete(ctx, key)
		return fail("read probe", err)
	}
	got, err := io.ReadAll(rc)
	_ = rc.Close()
	if err != nil {
		_ = s.Delete(ctx, key)
		return fail("read probe", err)
	}
	if !bytes.Equal(got, body) {
		_ = s.Delete(ctx, key)
		return fail("read probe", fmt.Errorf("%w: read back %d bytes that differ from the %d written", ErrChecksumMismatch, len(got), len(body)))
	}
	if err := s.Delete(ctx, key); err != nil {
		return fail("delete probe", err)
	}
	if _, err := s.Stat(ctx, key); !errors.Is(err, ErrNotExist) {
		if err == nil {
			err = errors.New("probe still exists after delete")
		}
		return fail("confirm delete", err)
	}
	return nil
}
