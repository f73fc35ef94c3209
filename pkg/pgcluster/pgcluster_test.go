package pgcluster

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

func TestStartStop(t *testing.T) {
	if _, err := FindBinDir(0); err != nil {
		t.Skip(err)
	}
	ctx := t.Context()
	c, err := Start(ctx, Options{})
	require.NoError(t, err)
	root := c.Root()
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	require.NoError(t, err)
	var one int
	require.NoError(t, conn.QueryRow(ctx, "select 1").Scan(&one))
	require.Equal(t, 1, one)
	require.NoError(t, conn.Close(context.Background()))
	require.NoError(t, c.Stop())
	require.NoDirExists(t, root)
	require.NoError(t, c.Stop(), "second stop is a no-op")
}
