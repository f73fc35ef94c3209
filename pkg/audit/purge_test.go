package audit_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/internal/s3test"
	"github.com/ip2a/ip2a-ops/pkg/audit"
	"github.com/ip2a/ip2a-ops/pkg/fixture"
	"github.com/ip2a/ip2a-ops/pkg/storage"
)

// useS3 points e at a fresh S3-protocol server instead of the local dir.
func useS3(t testing.TB, e *env) {
	t.Helper()
	srv := s3test.Start(t)
	st, err := storage.Open(t.Context(), srv.Config("audit"))
	require.NoError(t, err)
	e.store, e.cfg.Store = st, st
}

// storedKeys lists every key under the archive prefix.
func storedKeys(t testing.TB, st storage.Store) []string {
	t.Helper()
	objs, err := st.List(context.Background(), audit.DefaultPrefix+"/")
	require.NoError(t, err)
	keys := make([]string, 0, len(objs))
	for _, o := range objs {
		keys = append(keys, o.Key)
	}
	slices.Sort(keys)
	return keys
}

// monthStates returns the ops table's state of every month.
func monthStates(t testing.TB, e *env) map[string]string {
	t.Helper()
	rows, err := e.pool.Query(context.Background(), `SELECT to_char(month, 'YYYY-MM'), state FROM ip2a_ops.audit_archive_months`)
	require.NoError(t, err)
	out := map[string]string{}
	var m, s string
	_, err = pgx.ForEachRow(rows, []any{&m, &s}, func() error { out[m] = s; return nil })
	require.NoError(t, err)
	return out
}

func exists(t testing.TB, st storage.Store, key string) bool {
	t.Helper()
	_, err := st.Stat(context.Background(), key)
	if err == nil {
		return true
	}
	require.ErrorIs(t, err, storage.ErrNotExist)
	return false
}

// With 5 audit years ending 2026-11 and a retention of 4y at testNow
// (2026-11-15), archives of 2021-12 .. 2022-10 are past retention.
var retain4y = audit.Age{Years: 4}

func TestPurge(t *testing.T) {
	t.Parallel()
	for _, backend := range []string{"local", "s3"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, fixture.Newer, 5, 20)
			if backend == "s3" {
				useS3(t, e)
			}
			ctx := t.Context()
			_, err := audit.InstallGuard(ctx, e.cfg)
			require.NoError(t, err)
			run, err := audit.Run(ctx, audit.RunOptions{Config: e.cfg})
			require.NoError(t, err)
			require.Len(t, run.Months, 23) // 2021-12 .. 2023-10
			held := audit.Month{Year: 2022, Month: 3}
			_, err = audit.PlaceHold(ctx, audit.HoldOptions{Config: e.cfg, Month: held, Reason: "NLRB case 19-CA-000001"})
			require.NoError(t, err)

			var pastRetention []audit.Month
			for m := (audit.Month{Year: 2021, Month: 12}); m.Before(audit.Month{Year: 2022, Month: 11}); m = m.Next() {
				pastRetention = append(pastRetention, m)
			}

			// Dry run: reports, changes nothing in storage or the ops tables.
			keysBefore, statesBefore := storedKeys(t, e.store), monthStates(t, e)
			dry, err := audit.Purge(ctx, audit.PurgeOptions{Config: e.cfg, Retain: retain4y})
			require.NoError(t, err)
			require.False(t, dry.Apply)
			require.Zero(t, dry.Purged)
			require.Equal(t, 1, dry.Kept)
			require.Len(t, dry.Months, len(pastRetention))
			for i, pm := range dry.Months {
				require.Equal(t, pastRetention[i], pm.Month)
				if pm.Month == held {
					require.Equal(t, "kept", pm.Action)
					require.Contains(t, pm.Reason, "NLRB case 19-CA-000001")
				} else {
					require.Equal(t, "would purge", pm.Action, pm.Month)
					require.Empty(t, pm.RecordKey)
				}
			}
			require.Equal(t, keysBefore, storedKeys(t, e.store))
			require.Equal(t, statesBefore, monthStates(t, e))
			require.Zero(t, e.count(t, `SELECT count(*) FROM ip2a_ops.audit_purges`))

			// Apply: every month past retention but the held one.
			res, err := audit.Purge(ctx, audit.PurgeOptions{Config: e.cfg, Retain: retain4y, Apply: true})
			require.NoError(t, err)
			require.Equal(t, len(pastRetention)-1, res.Purged)
			require.Equal(t, 1, res.Kept)
			recs := records(t, e)
			for _, pm := range res.Months {
				rec := recs[pm.Month]
				dataKey, manifestKey := audit.DataKey(audit.DefaultPrefix, pm.Month), audit.ManifestKey(audit.DefaultPrefix, pm.Month)
				if pm.Month == held {
					require.Equal(t, "kept", pm.Action)
					require.Equal(t, audit.StateDeleted, rec.State)
					require.True(t, exists(t, e.store, dataKey))
					require.True(t, exists(t, e.store, manifestKey))
					require.False(t, exists(t, e.store, audit.PurgeRecordKey(audit.DefaultPrefix, pm.Month)))
					continue
				}
				require.Equal(t, "purged", pm.Action)
				require.Equal(t, audit.PurgeRecordKey(audit.DefaultPrefix, pm.Month), pm.RecordKey)
				require.Equal(t, audit.StatePurged, rec.State)
				require.Equal(t, pm.RecordKey, rec.PurgeRecordKey)
				require.NotNil(t, rec.PurgedAt)
				require.False(t, exists(t, e.store, dataKey), dataKey)
				require.False(t, exists(t, e.store, manifestKey), manifestKey)

				// The deletion record names the month and keeps its manifest.
				pr := readPurgeRecord(t, e.store, pm.RecordKey)
				require.Equal(t, pm.Month, pr.Month)
				require.Equal(t, rec.RowCount, pr.RowCount)
				require.Equal(t, rec.ManifestSHA256, pr.ManifestSHA256)
				sum := sha256.Sum256([]byte(pr.Manifest))
				require.Equal(t, rec.ManifestSHA256, hex.EncodeToString(sum[:]))
				var m audit.Manifest
				require.NoError(t, json.Unmarshal([]byte(pr.Manifest), &m))
				require.Equal(t, pm.Month, m.Month)
				require.Contains(t, pr.Reason, "4y")
			}
			// One audit_purges row per purged month.
			require.Equal(t, int64(res.Purged), e.count(t, `SELECT count(*) FROM ip2a_ops.audit_purges`))
			require.Equal(t, int64(res.Purged), e.count(t, `SELECT count(DISTINCT p.month) FROM ip2a_ops.audit_purges p
  JOIN ip2a_ops.audit_archive_months a USING (month)
  WHERE a.state = 'purged' AND p.record_key = a.purge_record_key AND p.manifest_sha256 = a.manifest_sha256 AND p.row_count = a.row_count`))
			// Months within retention are untouched.
			for m := (audit.Month{Year: 2022, Month: 11}); m.Before(audit.Month{Year: 2023, Month: 11}); m = m.Next() {
				require.Equal(t, audit.StateDeleted, recs[m].State, m)
				require.True(t, exists(t, e.store, audit.DataKey(audit.DefaultPrefix, m)), m)
			}

			// The chain still verifies: purged months through their records.
			vr, err := audit.Verify(ctx, audit.VerifyOptions{Config: e.cfg})
			require.NoError(t, err)
			require.Equal(t, len(run.Months), vr.OK)
			require.Zero(t, vr.Failed)
			require.Empty(t, vr.Unrecorded)

			// A rerun has nothing more to purge; releasing the hold lets the
			// held month (in the middle of the chain) go too.
			res, err = audit.Purge(ctx, audit.PurgeOptions{Config: e.cfg, Retain: retain4y, Apply: true})
			require.NoError(t, err)
			require.Zero(t, res.Purged)
			require.Equal(t, []audit.PurgedMonth{{Month: held, Rows: recs[held].RowCount, Action: "kept", Reason: "legal hold: NLRB case 19-CA-000001"}}, res.Months)
			_, err = audit.ReleaseHold(ctx, audit.HoldOptions{Config: e.cfg, Month: held})
			require.NoError(t, err)
			res, err = audit.Purge(ctx, audit.PurgeOptions{Config: e.cfg, Retain: retain4y, Apply: true})
			require.NoError(t, err)
			require.Equal(t, 1, res.Purged)
			require.Equal(t, int64(len(pastRetention)), e.count(t, `SELECT count(*) FROM ip2a_ops.audit_purges`))
			vr, err = audit.Verify(ctx, audit.VerifyOptions{Config: e.cfg})
			require.NoError(t, err)
			require.Equal(t, len(run.Months), vr.OK)

			// Search says which months of its range no longer exist anywhere.
			sr, err := audit.Search(ctx, audit.SearchOptions{Config: e.cfg, From: pastRetention[0].Start(), To: audit.Month{Year: 2022, Month: 12}.Start(), Out: io.Discard})
			require.NoError(t, err)
			require.Equal(t, pastRetention, sr.Purged)
			require.Equal(t, []audit.Month{{Year: 2022, Month: 11}}, sr.Archives)

			// The chain tolerates purged months only through their deletion
			// records: one gone is a broken chain, not silently skipped.
			require.NoError(t, e.store.Delete(ctx, audit.PurgeRecordKey(audit.DefaultPrefix, pastRetention[4])))
			vr, err = audit.Verify(ctx, audit.VerifyOptions{Config: e.cfg})
			require.ErrorIs(t, err, audit.ErrMismatch)
			require.Equal(t, 1, vr.Failed)
			require.Contains(t, vr.Months[4].Problem, "deletion record")
		})
	}
}

// A month archived but still online (kept online, or its delete not yet
// done) is never purged: its archive is the only copy once the rows go.
func TestPurgeKeepsMonthsStillOnline(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fixture.Newer, 5, 10)
	ctx := t.Context()
	_, err := audit.Run(ctx, audit.RunOptions{Config: e.cfg, KeepOnline: true})
	require.NoError(t, err)
	keys := storedKeys(t, e.store)
	res, err := audit.Purge(ctx, audit.PurgeOptions{Config: e.cfg, Retain: retain4y, Apply: true})
	require.NoError(t, err)
	require.Zero(t, res.Purged)
	require.Equal(t, 11, res.Kept)
	for _, pm := range res.Months {
		require.Equal(t, "kept", pm.Action)
		require.Contains(t, pm.Reason, "still in audit_logs")
	}
	require.Equal(t, keys, storedKeys(t, e.store))
	require.Zero(t, e.count(t, `SELECT count(*) FROM ip2a_ops.audit_purges`))
}

func TestPurgeRejectsRetainShorterThanArchiveAfter(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fixture.Newer, 1, 1)
	_, err := audit.Purge(t.Context(), audit.PurgeOptions{Config: e.cfg, Retain: audit.Age{Years: 2}, Apply: true})
	require.ErrorContains(t, err, "Retain")
}

func records(t testing.TB, e *env) map[audit.Month]audit.Record {
	t.Helper()
	st, err := audit.Status(context.Background(), audit.StatusOptions{Config: e.cfg})
	require.NoError(t, err)
	out := map[audit.Month]audit.Record{}
	for _, r := range st.Months {
		out[r.Month] = r
	}
	return out
}

func readPurgeRecord(t testing.TB, st storage.Store, key string) audit.PurgeRecord {
	t.Helper()
	rc, err := st.Get(context.Background(), key)
	require.NoError(t, err)
	defer rc.Close()
	var pr audit.PurgeRecord
	require.NoError(t, json.NewDecoder(rc).Decode(&pr))
	return pr
}

// dyingStore deletes the manifest and then fails, as a purge killed right
// after its last storage call would leave things.
type dyingStore struct {
	storage.Store
}

func (s dyingStore) Delete(ctx context.Context, key string) error {
	if err := s.Store.Delete(ctx, key); err != nil {
		return err
	}
	if strings.HasSuffix(key, ".manifest.json") {
		return errors.New("killed")
	}
	return nil
}

// A purge that dies after deleting a month's objects but before recording
// it: the rerun finds the manifest only in the deletion record, checks it
// against the recorded SHA-256, and finishes; the chain still verifies.
func TestPurgeResumesFromDeletionRecord(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fixture.Newer, 5, 10)
	ctx := t.Context()
	_, err := audit.InstallGuard(ctx, e.cfg)
	require.NoError(t, err)
	_, err = audit.Run(ctx, audit.RunOptions{Config: e.cfg})
	require.NoError(t, err)
	first := audit.Month{Year: 2021, Month: 12}

	cfg := e.cfg
	cfg.Store = dyingStore{e.store}
	_, err = audit.Purge(ctx, audit.PurgeOptions{Config: cfg, Retain: retain4y, Apply: true})
	require.ErrorContains(t, err, "killed")
	require.Equal(t, audit.StateDeleted, records(t, e)[first].State)
	require.False(t, exists(t, e.store, audit.ManifestKey(audit.DefaultPrefix, first)))
	require.True(t, exists(t, e.store, audit.PurgeRecordKey(audit.DefaultPrefix, first)))
	require.Zero(t, e.count(t, `SELECT count(*) FROM ip2a_ops.audit_purges`))

	res, err := audit.Purge(ctx, audit.PurgeOptions{Config: e.cfg, Retain: retain4y, Apply: true})
	require.NoError(t, err)
	require.Equal(t, 11, res.Purged)
	require.Equal(t, audit.StatePurged, records(t, e)[first].State)
	require.Equal(t, int64(11), e.count(t, `SELECT count(DISTINCT month) FROM ip2a_ops.audit_purges`))
	_, err = audit.Verify(ctx, audit.VerifyOptions{Config: e.cfg})
	require.NoError(t, err)
}
