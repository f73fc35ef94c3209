package pgbouncertest_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/internal/pgbouncertest"
	"github.com/ip2a/ip2a-ops/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// The proxy pools by transaction: with one server connection two clients
// share it, session state set by one is seen by the other, and Stop closes
// the port.
func TestStartPoolsByTransaction(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDatabase(t)
	b := pgbouncertest.Start(t, pgbouncertest.Options{PoolSize: 1})
	url := b.URL(db) + "&default_query_exec_mode=simple_protocol"
	ctx := t.Context()
	a, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer a.Close(ctx)
	c, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer c.Close(ctx)
	var pa, pc int
	require.NoError(t, a.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pa))
	require.NoError(t, c.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pc))
	require.Equal(t, pa, pc, "with one server connection both clients must share it")
	_, err = a.Exec(ctx, "SET ip2a.probe = 'set by a'")
	require.NoError(t, err)
	var v string
	require.NoError(t, c.QueryRow(ctx, "SELECT current_setting('ip2a.probe', true)").Scan(&v))
	require.Equal(t, "set by a", v, "session state belongs to the server connection, not the client")

	require.NoError(t, b.Stop())
	d := net.Dialer{Timeout: time.Second}
	_, err = d.DialContext(context.Background(), "tcp", b.Addr)
	require.Error(t, err, "the port must be closed after Stop")
}
