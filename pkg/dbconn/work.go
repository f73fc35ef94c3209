package dbconn

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
)

// errNoCancel is what a cancel request's dial gets on a work connection.
var errNoCancel = errors.New("cancel requests are off for this connection: it is closed instead")

// closeOnCancel ends a cancelled query at once (an immediate deadline:
// the caller gets context.Canceled, as with pgx's default) and then closes
// the socket, so the server sees the connection end, or fails its next
// write to it. pgx's default would send a cancel request and read on for up
// to 15 s, while the server, never told, streams the rest of a COPY. A
// work connection whose context is cancelled is done with, even if its
// query happened to finish first.
type closeOnCancel struct{ pc *pgconn.PgConn }

func (h closeOnCancel) HandleCancel(context.Context) { _ = h.pc.Conn().SetDeadline(time.Now()) }
func (h closeOnCancel) HandleUnwatchAfterCancel()    { _ = h.pc.Conn().Close() }

// ConnectWork opens one connection for a long stream (a COPY, an exported
// snapshot's transaction) that is stopped by closing it. When ctx is
// cancelled mid-query, pgx closes the socket, and before that it would send
// a cancel request on a new connection to the same address: through a
// pooling proxy that request is forwarded to whichever server the proxy
// thinks the client holds (PgBouncer 1.18 was seen to crash doing so). The
// streams this opens end on their own once the socket closes (the server
// fails its next write or read), so the request is never sent.
func ConnectWork(ctx context.Context, connString string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(connString)
	if err != nil {
		return nil, fmt.Errorf("parse database URL %s: %s", Redact(connString), Redact(err.Error()))
	}
	NoCancelRequests(&cfg.Config)
	return pgx.ConnectConfig(ctx, cfg)
}

// NoCancelRequests makes the one connection c will open close its socket as
// soon as a query's context is cancelled (see closeOnCancel), and never
// send a cancel request: once it is connected, any further dial (pgx dials
// only to cancel) fails at once. c must serve one connection
// (pgx.ConnectConfig, not a pool's config).
func NoCancelRequests(c *pgconn.Config) {
	c.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler { return closeOnCancel{pc} }
	dial := c.DialFunc
	var connected atomic.Bool
	c.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if connected.Load() {
			return nil, errNoCancel
		}
		return dial(ctx, network, addr)
	}
	after := c.AfterConnect
	c.AfterConnect = func(ctx context.Context, pc *pgconn.PgConn) error {
		connected.Store(true)
		if after != nil {
			return after(ctx, pc)
		}
		return nil
	}
}
