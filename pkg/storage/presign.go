package storage

import (
	"context"
	"fmt"
	"time"
)

// Presigner is a store that can hand out a time-limited link to an object
// (S3). A local store cannot.
type Presigner interface {
	// PresignGet returns a URL that downloads key without credentials
	// until expiry has passed (at most 7 days on S3).
	PresignGet(ctx context.Context, key string, expiry time.Duration) (string, error)
}

var _ Presigner = (*S3)(nil)

// PresignGet signs a GET of key valid for expiry.
func (s *S3) PresignGet(ctx context.Context, key string, expiry time.Duration) (string, error) {
	if err := ValidateKey(key); err != nil {
		return "", err
	}
	u, err := s.core.PresignedGetObject(ctx, s.bucket, s.object(key), expiry, nil)
	if err != nil {
		return "", fmt.Errorf("presign %s: %w", key, err)
	}
	return u.String(), nil
}
