package dbconn

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Pooling is what DetectPooling saw.
type Pooling struct {
	// Transaction is true when one client connection's transactions ran on
	// different server sessions, or two client connections shared one: a
	// proxy pooling by transaction (PgBouncer's pool_mode = transaction,
	// Supavisor's transaction mode) or by statement. Session state (SET,
	// LISTEN, session advisory locks, pg_dump's setup) does not survive
	// there.
	Transaction bool `json:"transaction_pooling"`
	// Evidence says what showed it, or what was seen when nothing did.
	Evidence string `json:"evidence"`
}

// probeRounds: one round shows a proxy that reuses the most recently
// released server (PgBouncer's default); more rounds catch round-robin
// reuse.
const probeRounds = 3

// DetectPooling tells whether connString goes through a transaction-pooling
// proxy. It opens two client connections, A and B, and in each round reads
// A's backend pid, opens a transaction on B and reads B's, then reads A's
// again while B's transaction holds its server. Directly, or through a
// session-pooling proxy, each client keeps one backend of its own for its
// whole life; through a transaction pool A's statements may move, and B may
// get the backend A just released. Any of that is proof; none of it in
// every round is taken as a session. The probe runs in the simple protocol
// (no server-side statements to lose) and changes nothing.
func DetectPooling(ctx context.Context, connString string) (Pooling, error) {
	cfg, err := pgx.ParseConfig(connString)
	if err != nil {
		return Pooling{}, fmt.Errorf("parse database URL %s: %s", Redact(connString), Redact(err.Error()))
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	connect := func() (*pgx.Conn, error) {
		c := cfg.Copy()
		NoCancelRequests(&c.Config)
		return pgx.ConnectConfig(ctx, c)
	}
	a, err := connect()
	if err != nil {
		return Pooling{}, fmt.Errorf("pooling probe: connect: %w", err)
	}
	defer closeQuietly(ctx, a)
	b, err := connect()
	if err != nil {
		return Pooling{}, fmt.Errorf("pooling probe: connect: %w", err)
	}
	defer closeQuietly(ctx, b)

	var first uint32
	for round := 1; round <= probeRounds; round++ {
		a1, err := backendPID(ctx, a)
		if err != nil {
			return Pooling{}, err
		}
		if round == 1 {
			first = a1
		}
		if a1 != first {
			return Pooling{true, fmt.Sprintf("one connection's transactions ran on backend pid %d, then %d", first, a1)}, nil
		}
		tx, err := b.Begin(ctx)
		if err != nil {
			return Pooling{}, fmt.Errorf("pooling probe: begin: %w", err)
		}
		b1, err := backendPID(ctx, tx)
		if err != nil {
			_ = tx.Rollback(ctx)
			return Pooling{}, err
		}
		if b1 == a1 {
			_ = tx.Rollback(ctx)
			return Pooling{true, fmt.Sprintf("a second connection got backend pid %d, which the first had used a moment before", b1)}, nil
		}
		// While B holds b1, A reads its pid again. A proxy with no other
		// free server makes A wait for B: end B's transaction after a
		// while so A can go on (and then lands on b1).
		type pidErr struct {
			pid uint32
			err error
		}
		got := make(chan pidErr, 1)
		go func() {
			pid, err := backendPID(ctx, a)
			got <- pidErr{pid, err}
		}()
		var r pidErr
		waited := false
		select {
		case r = <-got:
		case <-time.After(2 * time.Second):
			waited = true
			_ = tx.Rollback(ctx)
			r = <-got
		}
		_ = tx.Rollback(ctx)
		if r.err != nil {
			return Pooling{}, r.err
		}
		if r.pid != a1 {
			how := ""
			if waited {
				how = " after waiting for the other connection's transaction"
			}
			return Pooling{true, fmt.Sprintf("one connection's statements ran on backend pid %d, then %d%s", a1, r.pid, how)}, nil
		}
	}
	return Pooling{false, fmt.Sprintf("each connection kept its own backend (pid %d) across %d rounds of transactions", first, probeRounds)}, nil
}

func backendPID(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) (uint32, error) {
	var pid uint32
	if err := q.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		return 0, fmt.Errorf("pooling probe: %w", err)
	}
	return pid, nil
}

func closeQuietly(ctx context.Context, c *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = c.Close(ctx)
}
