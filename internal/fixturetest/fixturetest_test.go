package fixturetest

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/internal/pgtest"
	"github.com/ip2a/ip2a-ops/pkg/fixture"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func TestNewTestDB(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		gen         fixture.Generation
		enrollments bool
	}{
		{name: "newer", gen: fixture.Newer, enrollments: true},
		{name: "older", gen: fixture.Older, enrollments: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			url := NewTestDB(t, tt.gen, fixture.Options{Members: 30})
			t.Logf("database ready in %v", time.Since(start))
			conn, err := pgx.Connect(t.Context(), url)
			require.NoError(t, err)
			defer conn.Close(t.Context())
			var members int
			require.NoError(t, conn.QueryRow(t.Context(), `SELECT count(*) FROM members`).Scan(&members))
			require.Equal(t, 30, members)
			var has bool
			require.NoError(t, conn.QueryRow(t.Context(),
				`SELECT to_regclass('grant_enrollments') IS NOT NULL`).Scan(&has))
			require.Equal(t, tt.enrollments, has)
		})
	}
}
