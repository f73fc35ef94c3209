package dbconn

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/internal/pgbouncertest"
	"github.com/ip2a/ip2a-ops/internal/pgtest"
)

// DetectPooling tells a direct connection from PgBouncer in transaction
// mode, with README's URL form and with pgx's default exec mode.
func TestDetectPooling(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDatabase(t)
	b := pgbouncertest.Start(t, pgbouncertest.Options{})
	small := pgbouncertest.Start(t, pgbouncertest.Options{PoolSize: 1})
	for _, tc := range []struct {
		name string
		url  string
		want bool
	}{
		{"direct", db, false},
		{"direct, exec mode", pgbouncertest.WithParam(db, "default_query_exec_mode", "exec"), false},
		{"pgbouncer transaction mode", b.URL(db), true},
		{"pgbouncer, README's form", pgbouncertest.WithParam(b.URL(db), "default_query_exec_mode", "exec"), true},
		{"pgbouncer with one server connection", small.URL(db), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := DetectPooling(t.Context(), tc.url)
			require.NoError(t, err)
			require.Equal(t, tc.want, p.Transaction, p.Evidence)
			require.NotEmpty(t, p.Evidence)
			t.Log(p.Evidence)
		})
	}
}
