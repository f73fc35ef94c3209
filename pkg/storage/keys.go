package storage

import (
	"errors"
	"fmt"
	"strings"
)

// Errors callers branch on. Every store returns them wrapped, so test with
// errors.Is.
var (
	// ErrChecksumMismatch: the content did not match PutOptions.SHA256 (or
	// PutOptions.Size). Nothing was stored under the key.
	ErrChecksumMismatch = errors.New("checksum mismatch")
	// ErrInvalidKey: the key or list prefix is not a clean relative
	// slash-separated path (see ValidateKey).
	ErrInvalidKey = errors.New("invalid key")
	// ErrAccessDenied: the S3 endpoint refused the credentials or the
	// permission.
	ErrAccessDenied = errors.New("access denied")
	// ErrBucketNotFound: the S3 bucket does not exist.
	ErrBucketNotFound = errors.New("bucket does not exist")
	// ErrUnreachable: the S3 endpoint could not be reached (DNS, refused
	// connection, TLS, timeout).
	ErrUnreachable = errors.New("endpoint unreachable")
)

// tempPrefix starts the name of every in-progress local file. Keys may not
// have a segment starting with it, so a temp file can never be mistaken for an
// object (and List can skip them by name alone).
const tempPrefix = ".tmp-"

// ValidateKey reports whether key is usable by every store: a non-empty
// relative path of slash-separated segments, none empty, ".", "..", or
// starting with ".tmp-", and no backslash or NUL. The error wraps
// ErrInvalidKey. Both stores apply the same rule so that a key that works on
// local disk works on S3 and the other way round.
func ValidateKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w: empty key", ErrInvalidKey)
	}
	if strings.HasPrefix(key, "/") {
		return fmt.Errorf("%w %q: absolute path", ErrInvalidKey, key)
	}
	for _, seg := range strings.Split(key, "/") {
		if err := validateSegment(key, seg); err != nil {
			return err
		}
	}
	return nil
}

// validatePrefix accepts "" and any prefix of a valid key: its last segment
// may be empty (a trailing slash) or partial.
func validatePrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if strings.HasPrefix(prefix, "/") {
		return fmt.Errorf("%w: list prefix %q: absolute path", ErrInvalidKey, prefix)
	}
	segs := strings.Split(prefix, "/")
	for i, seg := range segs {
		last := i == len(segs)-1
		if last && (seg == "" || seg == ".") {
			// "a/" or "a/." are only partial; nothing can match "." alone
			// beyond what "a/" matches, and a key never has a "." segment.
			continue
		}
		if last && strings.HasPrefix(tempPrefix, seg) {
			continue // ".tm" is a fine prefix of ".tmpfoo"
		}
		if err := validateSegment(prefix, seg); err != nil {
			return fmt.Errorf("list prefix: %w", err)
		}
	}
	return nil
}

func validateSegment(key, seg string) error {
	switch {
	case seg == "":
		return fmt.Errorf("%w %q: empty path segment", ErrInvalidKey, key)
	case seg == "." || seg == "..":
		return fmt.Errorf("%w %q: %q segment", ErrInvalidKey, key, seg)
	case strings.HasPrefix(seg, tempPrefix):
		return fmt.Errorf("%w %q: segment starts with %q (reserved for temp files)", ErrInvalidKey, key, tempPrefix)
	case strings.ContainsAny(seg, "\\\x00"):
		return fmt.Errorf("%w %q: backslash or NUL", ErrInvalidKey, key)
	}
	return nil
}
