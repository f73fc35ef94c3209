// Package storage is the one object-store contract that backups and audit
// archives are kept behind: a local directory or an S3-compatible bucket.
// Keys are slash-separated relative paths ("backups/2026/11/29/x.dump").
package storage

import (
	"context"
	"errors"
	"io"
	"time"
)

// ErrNotExist is returned (wrapped) by Get and Stat when no object has the key.
var ErrNotExist = errors.New("object does not exist")

// ObjectInfo describes a stored object.
type ObjectInfo struct {
	Key      string    `json:"key"`
	Size     int64     `json:"size"`
	Modified time.Time `json:"modified"`
}

// PutOptions tune one Put. Zero values mean defaults.
type PutOptions struct {
	// SHA256 is the hex SHA-256 of the content when the caller knows it. An S3
	// store sends it as the upload checksum (buckets with Object Lock require
	// one) and the server rejects a body that does not match; a local store
	// verifies it before the object becomes visible.
	SHA256 string
	// Size is the content length when known (-1 or 0 means unknown).
	Size int64
	// RetainUntil, when set, asks for an Object Lock retention (S3, compliance
	// mode) until that time; a local store records nothing.
	RetainUntil time.Time
	// ContentType of the object; empty means application/octet-stream.
	ContentType string
}

// Store is an object store. Implementations are safe for concurrent use.
type Store interface {
	// Put stores r under key. The object becomes visible only when whole: a
	// failed or cancelled Put leaves no object under key (an existing object
	// with that key is replaced only by a whole new one).
	Put(ctx context.Context, key string, r io.Reader, opts PutOptions) (ObjectInfo, error)
	// Get opens the object for reading; the caller closes it. Missing: ErrNotExist.
	Get(ctx context.Context, key string) (io.ReadCloser, error)
	// Stat returns the object's info. Missing: ErrNotExist.
	Stat(ctx context.Context, key string) (ObjectInfo, error)
	// List returns every object whose key starts with prefix, sorted by key.
	List(ctx context.Context, prefix string) ([]ObjectInfo, error)
	// Delete removes the object. Deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// String describes the store for logs and output, without secrets
	// ("file:///var/backups/ip2a", "s3://ip2a-backups/prod at https://host").
	String() string
}
