package dbconn

import (
	"context"
	"io"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/internal/pgbouncertest"
	"github.com/ip2a/ip2a-ops/internal/pgtest"
)

// forwarder is a TCP relay in front of the server that counts the
// connections made to it and says when the first one is closed by the
// client.
type forwarder struct {
	ln          net.Listener
	dials       atomic.Int32
	firstClosed chan struct{}
	once        sync.Once
}

func newForwarder(t *testing.T, upstream string) *forwarder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	f := &forwarder{ln: ln, firstClosed: make(chan struct{})}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n := f.dials.Add(1)
			go func() {
				s, err := net.Dial("tcp", upstream)
				if err != nil {
					_ = c.Close()
					return
				}
				go func() { _, _ = io.Copy(c, s); _ = c.Close() }()
				_, _ = io.Copy(s, c) // returns when the client closes
				_ = s.Close()
				if n == 1 {
					f.once.Do(func() { close(f.firstClosed) })
				}
			}()
		}
	}()
	return f
}

// A work connection whose context is cancelled mid-query is closed without
// a cancel request (one connection to the server, none more), where a
// plain pgx connection dials a second time to send one.
func TestWorkConnectionClosesInsteadOfCancelling(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDatabase(t)
	u, err := url.Parse(db)
	require.NoError(t, err)
	for _, tc := range []struct {
		name      string
		connect   func(ctx context.Context, s string) (*pgx.Conn, error)
		wantDials int32
	}{
		{"work connection", ConnectWork, 1},
		{"plain pgx connection (control)", pgx.Connect, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newForwarder(t, u.Host)
			fu := *u
			fu.Host = f.ln.Addr().String()
			conn, err := tc.connect(t.Context(), fu.String())
			require.NoError(t, err)
			ctx, cancel := context.WithCancel(t.Context())
			time.AfterFunc(200*time.Millisecond, cancel)
			start := time.Now()
			_, err = conn.Exec(ctx, "SELECT pg_sleep(30)")
			require.Error(t, err)
			require.ErrorIs(t, err, context.Canceled)
			require.Less(t, time.Since(start), 20*time.Second, "the query must stop when its context is cancelled")
			select {
			case <-f.firstClosed:
			case <-time.After(10 * time.Second):
				t.Fatal("the connection was not closed within 10 s of the cancel")
			}
			require.True(t, conn.IsClosed())
			require.Equal(t, tc.wantDials, f.dials.Load())
		})
	}
}

// cancelAfter is a COPY destination that cancels the copy's context once
// data flows.
type cancelAfter struct {
	n      int
	cancel context.CancelFunc
}

func (w *cancelAfter) Write(p []byte) (int, error) {
	w.n += len(p)
	if w.n > 1<<20 {
		w.cancel()
	}
	return len(p), nil
}

// A COPY stopped by closing its work connection ends on the server too, no
// cancel request needed: directly and through PgBouncer. (The COPY would run
// for hours: 10^10 rows.)
func TestWorkConnectionCopyEndsOnTheServer(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDatabase(t)
	b := pgbouncertest.Start(t, pgbouncertest.Options{})
	admin := pgtest.Pool(t, db)
	for _, tc := range []struct{ name, url string }{
		{"direct", db},
		{"through pgbouncer", pgbouncertest.WithParam(b.URL(db), "default_query_exec_mode", "exec")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := ConnectWork(t.Context(), tc.url)
			require.NoError(t, err)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			tag := "copy-" + tc.name
			_, err = conn.Exec(ctx, "SELECT set_config('application_name', $1, false)", tag)
			require.NoError(t, err)
			var pid int
			require.NoError(t, admin.QueryRow(t.Context(), "SELECT pid FROM pg_stat_activity WHERE application_name = $1", tag).Scan(&pid))
			_, err = conn.PgConn().CopyTo(ctx, &cancelAfter{cancel: cancel}, "COPY (SELECT a, b, repeat('x', 100) FROM generate_series(1, 100000) a, generate_series(1, 100000) b) TO STDOUT")
			require.ErrorIs(t, err, context.Canceled)
			require.True(t, conn.IsClosed())
			deadline := time.Now().Add(10 * time.Second)
			for {
				var n int
				require.NoError(t, admin.QueryRow(t.Context(), "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND state = 'active'", pid).Scan(&n))
				if n == 0 {
					break
				}
				require.True(t, time.Now().Before(deadline), "the server still runs the COPY 10 s after the connection closed")
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}
