package storage

import (
	"context"
	"time"
)

// TempCleaner is implemented by stores that can be left with debris by a
// process killed in the middle of a Put: temp files for Local, incomplete
// multipart uploads (which S3 bills for) for S3. Jobs call it at the start
// of a run:
//
//	if c, ok := store.(storage.TempCleaner); ok {
//		n, err := c.CleanTemp(ctx, 24*time.Hour)
//	}
//
// Only debris older than olderThan is removed, so a Put running in another
// process at the same time is not disturbed as long as olderThan is longer
// than any Put takes. It returns how many leftovers it removed.
type TempCleaner interface {
	CleanTemp(ctx context.Context, olderThan time.Duration) (int, error)
}
