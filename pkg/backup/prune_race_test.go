package backup

import (
	"context"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/internal/fixturetest"
	"github.com/ip2a/ip2a-ops/pkg/fixture"
	"github.com/ip2a/ip2a-ops/pkg/storage"
)

// beforePut runs hook (once) just before the first Put of a key ending in
// suffix reaches the store underneath.
type beforePut struct {
	storage.Store
	suffix string
	once   sync.Once
	hook   func()
}

func (b *beforePut) Put(ctx context.Context, key string, r io.Reader, o storage.PutOptions) (storage.ObjectInfo, error) {
	if strings.HasSuffix(key, b.suffix) {
		b.once.Do(b.hook)
	}
	return b.Store.Put(ctx, key, r, o)
}

// TestPruneDuringVerify: a prune that deletes a backup at the worst moment
// of a verification (after the verification re-read the manifest, before it
// wrote the result back) wins: the verification says the backup is gone,
// and no manifest is left pointing at a deleted object.
func TestPruneDuringVerify(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	src := fixturetest.NewTestDB(t, fixture.Older, fixture.Options{Seed: 31})
	local := localStore(t)
	older, err := Run(ctx, Options{DatabaseURL: src, Store: local, WorkDir: t.TempDir()})
	require.NoError(t, err)
	_, err = Run(ctx, Options{DatabaseURL: src, Store: local, WorkDir: t.TempDir()})
	require.NoError(t, err)

	var pruned PruneResult
	st := &beforePut{Store: local, suffix: older.ID + "/" + manifestName, hook: func() {
		var perr error
		pruned, perr = Prune(ctx, PruneOptions{Store: local, Policy: Policy{KeepLast: 1}, Apply: true})
		require.NoError(t, perr)
	}}
	_, err = Verify(ctx, VerifyOptions{Store: st, ID: older.ID, Level: LevelChecksum, Record: true})
	require.ErrorIs(t, err, ErrNotFound)
	require.ErrorContains(t, err, "pruned while being verified")
	require.Len(t, pruned.Deleted, 1)
	require.Equal(t, older.ID, pruned.Deleted[0].ID)

	l, err := List(ctx, ListOptions{Store: local})
	require.NoError(t, err)
	require.Len(t, l.Backups, 1)
	require.NotEqual(t, older.ID, l.Backups[0].ID)
	objs, err := local.List(ctx, DefaultPrefix+older.ID+"/")
	require.NoError(t, err)
	require.Empty(t, objs, "nothing of the pruned backup may remain")
}
