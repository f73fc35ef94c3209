package backup

import (
	"io"
	"testing"

	"filippo.io/age"
	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/internal/fixturetest"
	"github.com/ip2a/ip2a-ops/internal/pgtest"
	"github.com/ip2a/ip2a-ops/internal/s3test"
	"github.com/ip2a/ip2a-ops/pkg/fixture"
	"github.com/ip2a/ip2a-ops/pkg/storage"
)

// TestSplitUpload stores the head frame and the tail compressed during the
// dump straight from their scratch files (unencrypted) or through age, to
// a local directory and to S3, and checks what was stored: its SHA-256 is
// the manifest's, the early checksum check is recorded, the decoded archive
// hashes to the manifest's dump SHA-256 (the raw pass that ran beside the
// upload), and the backup restores with exact counts.
func TestSplitUpload(t *testing.T) {
	t.Parallel()
	src := fixturetest.NewTestDB(t, fixture.Newer, fixture.Options{Seed: 12, AuditYears: 2})
	id, err := age.GenerateX25519Identity()
	require.NoError(t, err)
	tests := []struct {
		name      string
		s3        bool
		encrypted bool
		verify    Level
	}{
		{"local plain", false, false, LevelChecksum},
		{"local encrypted", false, true, LevelChecksum},
		{"s3 plain", true, false, LevelChecksum},
		{"s3 encrypted, no check", true, true, LevelNone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var st storage.Store = localStore(t)
			if tt.s3 {
				srv := s3test.Start(t)
				var err error
				st, err = storage.Open(t.Context(), srv.Config("prod"))
				require.NoError(t, err)
			}
			var recipients []string
			var identities [][]byte
			if tt.encrypted {
				recipients = []string{id.Recipient().String()}
				identities = [][]byte{[]byte(id.String())}
			}
			work := t.TempDir()
			res, err := Run(t.Context(), Options{DatabaseURL: src, Store: st, WorkDir: work, Recipients: recipients,
				Verify: tt.verify, headSize: 400 << 10})
			require.NoError(t, err)
			require.True(t, res.CompressedDuringDump)
			require.Greater(t, res.DumpBytes, int64(800<<10))
			requireEmptyDir(t, work)

			m := res.Manifest
			require.Equal(t, res.StoredBytes, m.Object.Size)
			rc, err := st.Get(t.Context(), m.Object.Key)
			require.NoError(t, err)
			hr := newHashingReader(rc)
			_, err = io.Copy(io.Discard, hr)
			require.NoError(t, err)
			require.NoError(t, rc.Close())
			require.Equal(t, m.Object.SHA256, hr.sum())
			require.Equal(t, m.Object.Size, hr.n)
			if tt.verify == LevelChecksum {
				require.Len(t, m.Verifications, 1)
				require.True(t, m.Verifications[0].OK, m.Verifications[0].Error)
				require.True(t, res.Verified)
			} else {
				require.Empty(t, m.Verifications)
				require.False(t, res.Verified)
			}

			v, err := Verify(t.Context(), VerifyOptions{Store: st, ID: res.ID, Level: LevelRestore, ScratchURL: pgtest.AdminURL(t),
				Identities: identities, WorkDir: t.TempDir()})
			require.NoError(t, err)
			require.True(t, v.OK, v.Error)
			require.Empty(t, v.Mismatches)
		})
	}
}
