package integrity

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/ip2a/ip2a-ops/pkg/storage"
)

type attachment struct {
	id   int64
	path string
}

// runFiles reads the live attachments from the snapshot in one query, then
// asks the store about each file (a stat on local disk, a HEAD request on
// S3) with at most FileConcurrency calls in flight. A path the store cannot
// hold (absolute, "..") counts as missing: no file can be found under it.
func runFiles(ctx context.Context, tx pgx.Tx, q *qctx, c *check, r *CheckResult) error {
	rows, err := tx.Query(ctx, `SELECT f0.id::bigint, f0.file_path FROM (`+c.query(q)+`) AS f0(id, file_path)`, args(q.opts))
	if err != nil {
		return err
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (attachment, error) {
		var a attachment
		err := row.Scan(&a.id, &a.path)
		return a, err
	})
	if err != nil {
		return err
	}
	q.prog.startFiles(len(list))
	missing, err := statAll(ctx, q.opts.Files, list, q.opts.FileConcurrency, q.prog.fileDone)
	q.prog.endFiles()
	if err != nil {
		return err
	}
	slices.Sort(missing)
	r.Count = int64(len(missing))
	r.SampleIDs = []string{}
	for _, id := range missing[:min(len(missing), q.opts.SampleSize)] {
		r.SampleIDs = append(r.SampleIDs, strconv.FormatInt(id, 10))
	}
	return nil
}

// statAll returns the ids of the attachments whose file store lacks. The
// first error other than "not there" stops it: the check could not verify.
func statAll(ctx context.Context, st storage.Store, list []attachment, workers int, statted func()) ([]int64, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	ch := make(chan attachment)
	var mu sync.Mutex
	var missing []int64
	var wg sync.WaitGroup
	for range min(workers, max(1, len(list))) {
		wg.Go(func() {
			for a := range ch {
				_, err := st.Stat(ctx, a.path)
				statted()
				switch {
				case err == nil:
				case errors.Is(err, storage.ErrNotExist), errors.Is(err, storage.ErrInvalidKey):
					mu.Lock()
					missing = append(missing, a.id)
					mu.Unlock()
				default:
					cancel(fmt.Errorf("stat %s (attachment %d): %w", a.path, a.id, err))
				}
			}
		})
	}
feed:
	for _, a := range list {
		select {
		case ch <- a:
		case <-ctx.Done():
			break feed
		}
	}
	close(ch)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return nil, err
	}
	return missing, nil
}
