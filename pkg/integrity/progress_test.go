package integrity

import (
	"context"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/pkg/fixture"
	"github.com/ip2a/ip2a-ops/pkg/progress"
	"github.com/ip2a/ip2a-ops/pkg/storage"
)

// TestProgressCountsChecksAndFiles watches the tracker while a run with a
// file store goes: the files phase counts every live attachment, and the
// run ends with every check counted.
func TestProgressCountsChecksAndFiles(t *testing.T) {
	t.Parallel()
	pool, _ := cloneDB(t, fixture.Newer)
	var attachments int64
	require.NoError(t, pool.QueryRow(t.Context(), `SELECT count(*) FROM file_attachments
		WHERE NOT is_deleted AND deleted_at IS NULL`).Scan(&attachments))
	require.Positive(t, attachments)

	tr := progress.NewTracker(nil)
	var mu sync.Mutex
	seen := map[string]progress.State{}
	files := &watchingStore{Store: fileStore(t), look: func() {
		st, _ := tr.Snapshot()
		mu.Lock()
		if st.Phase == "files" && st.Done >= seen["files"].Done {
			seen["files"] = st
		}
		mu.Unlock()
	}}
	res, err := Run(t.Context(), Options{Pool: pool, Files: files, FileConcurrency: 1, Workers: 3, Tracker: tr,
		Progress: func(CheckResult) {
			st, _ := tr.Snapshot()
			mu.Lock()
			if st.Done >= seen[st.Phase].Done {
				seen[st.Phase] = st
			}
			mu.Unlock()
		}})
	require.NoError(t, err)
	ran := 0
	for _, c := range res.Checks {
		if c.Status != StatusSkipped {
			ran++
		}
	}
	final, ok := tr.Snapshot()
	require.True(t, ok)
	require.Equal(t, "checks", final.Phase)
	require.Equal(t, int64(ran), final.Done)
	require.Equal(t, int64(ran), final.Total)
	require.Contains(t, seen, "checks")
	require.LessOrEqual(t, seen["checks"].Done, int64(ran))
	// By the last Stat, every file but that one was counted, of all of them.
	require.Equal(t, attachments, seen["files"].Total)
	require.Equal(t, attachments-1, seen["files"].Done)
}

// watchingStore looks at the tracker before each Stat.
type watchingStore struct {
	storage.Store
	look func()
}

func (w *watchingStore) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	w.look()
	return w.Store.Stat(ctx, key)
}
