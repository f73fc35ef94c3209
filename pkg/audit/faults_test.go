package audit_test

import (
	"context"
	"io"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/internal/s3test"
	"github.com/ip2a/ip2a-ops/pkg/audit"
	"github.com/ip2a/ip2a-ops/pkg/fixture"
	"github.com/ip2a/ip2a-ops/pkg/storage"
)

// A stored archive altered after the run: verify fails, and the run that
// would delete it deletes nothing of that month.
func TestAlteredArchiveFailsVerifyAndDeletesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fixture.Newer, 5, 30)
	ctx := t.Context()
	res, err := audit.Run(ctx, audit.RunOptions{Config: e.cfg, KeepOnline: true})
	require.NoError(t, err)
	require.NotEmpty(t, res.Months)
	_, err = audit.Verify(ctx, audit.VerifyOptions{Config: e.cfg})
	require.NoError(t, err)

	victim := res.Months[2].Month
	key := audit.DataKey(audit.DefaultPrefix, victim)
	rc, err := e.store.Get(ctx, key)
	require.NoError(t, err)
	body, err := io.ReadAll(rc)
	rc.Close()
	require.NoError(t, err)
	body[len(body)/2] ^= 0x40
	_, err = e.store.Put(ctx, key, bytesReader(body), storage.PutOptions{})
	require.NoError(t, err)

	vr, err := audit.Verify(ctx, audit.VerifyOptions{Config: e.cfg})
	require.ErrorIs(t, err, audit.ErrMismatch)
	require.Equal(t, 1, vr.Failed)

	_, err = audit.InstallGuard(ctx, e.cfg)
	require.NoError(t, err)
	before := e.count(t, `SELECT count(*) FROM audit_logs WHERE changed_at >= $1::timestamp AND changed_at < $2::timestamp`,
		victim.Start().Format(time.DateTime), victim.End().Format(time.DateTime))
	rr, err := audit.Run(ctx, audit.RunOptions{Config: e.cfg})
	require.ErrorIs(t, err, audit.ErrMismatch)
	require.Equal(t, len(res.Months)-1, rr.MonthsDeleted, "the other months are deleted")
	after := e.count(t, `SELECT count(*) FROM audit_logs WHERE changed_at >= $1::timestamp AND changed_at < $2::timestamp`,
		victim.Start().Format(time.DateTime), victim.End().Format(time.DateTime))
	require.Equal(t, before, after, "nothing of the altered month was deleted")
}

// The delete transaction's connection is terminated mid-way: nothing of
// that month is deleted, and a rerun finishes with every row accounted for.
func TestTerminatedDuringDelete(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fixture.Newer, 5, 200)
	ctx := t.Context()
	original := e.ids(t)
	_, err := audit.InstallGuard(ctx, e.cfg)
	require.NoError(t, err)

	u, err := url.Parse(e.url)
	require.NoError(t, err)
	q := u.Query()
	q.Set("application_name", "audit_fault")
	u.RawQuery = q.Encode()
	victimPool, err := pgxpool.New(ctx, u.String())
	require.NoError(t, err)
	defer victimPool.Close()
	cfg := e.cfg
	cfg.Pool = victimPool

	var killed atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) && killed.Load() == 0 {
			var n int64
			// The delete runs one statement per id; catch it in its transaction.
			_ = e.pool.QueryRow(context.Background(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
WHERE application_name = 'audit_fault' AND query LIKE '%DELETE FROM audit_logs%' AND xact_start IS NOT NULL`).Scan(&n)
			killed.Add(n)
		}
	}()
	_, err = audit.Run(ctx, audit.RunOptions{Config: cfg, DeleteBatch: 1})
	<-done
	require.Positive(t, killed.Load())
	require.Error(t, err)
	// The killed month is whole in the table and still recorded verified.
	require.Zero(t, e.count(t, `SELECT count(*) FROM ip2a_ops.audit_archive_months a WHERE state = 'deleted'
  AND EXISTS (SELECT 1 FROM audit_logs l WHERE l.changed_at >= a.month AND l.changed_at < a.month + interval '1 month')`))
	requireConserved(t, e, e.store, original) // deleted months are in archives, the rest in the table

	_, err = audit.Run(ctx, audit.RunOptions{Config: e.cfg})
	require.NoError(t, err)
	require.Zero(t, e.count(t, `SELECT count(*) FROM audit_logs WHERE changed_at < '2023-11-01'`))
	requireConserved(t, e, e.store, original)
}

// failingStore stops the S3 server once the upload has started reading.
type stopReader struct {
	r    io.Reader
	n    int
	stop func()
}

func (s *stopReader) Read(p []byte) (int, error) {
	s.n += len(p)
	if s.n > 64<<10 {
		s.stop()
	}
	return s.r.Read(p)
}

type stoppingStore struct {
	storage.Store
	stop func()
}

func (s stoppingStore) Put(ctx context.Context, key string, r io.Reader, o storage.PutOptions) (storage.ObjectInfo, error) {
	return s.Store.Put(ctx, key, &stopReader{r: r, stop: s.stop}, o)
}

// Storage goes away in the middle of the first upload: the run fails,
// nothing is recorded or deleted; a rerun against working storage finishes.
func TestStorageGoneDuringUpload(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fixture.Newer, 5, 3000)
	ctx := t.Context()
	original := e.ids(t)
	_, err := audit.InstallGuard(ctx, e.cfg)
	require.NoError(t, err)
	srv := s3test.Start(t)
	s3, err := storage.Open(ctx, srv.Config("audit"))
	require.NoError(t, err)
	cfg := e.cfg
	cfg.Store = stoppingStore{Store: s3, stop: srv.Stop}
	_, err = audit.Run(ctx, audit.RunOptions{Config: cfg})
	require.Error(t, err)
	require.Zero(t, e.count(t, `SELECT count(*) FROM ip2a_ops.audit_archive_months`))
	require.Equal(t, original, e.ids(t))

	srv2 := s3test.Start(t)
	s3b, err := storage.Open(ctx, srv2.Config("audit"))
	require.NoError(t, err)
	cfg.Store = s3b
	res, err := audit.Run(ctx, audit.RunOptions{Config: cfg})
	require.NoError(t, err)
	require.Positive(t, res.RowsDeleted)
	requireConserved(t, e, s3b, original)
	_, err = audit.Verify(ctx, audit.VerifyOptions{Config: cfg})
	require.NoError(t, err)
}
