package scheduler

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Claim kinds.
const (
	KindScheduled = "scheduled"
	KindCatchUp   = "catchup"
)

// Claims is the slot_claims table of one ip2a-ops schema (migration 005).
// Each call is one statement, so it works behind a transaction pooler.
type Claims struct {
	pool   *pgxpool.Pool
	schema string
	table  string
	runs   string
}

// NewClaims returns the claims table of schema (which must be migrated).
func NewClaims(pool *pgxpool.Pool, schema string) *Claims {
	return &Claims{pool: pool, schema: schema, table: pgx.Identifier{schema, "slot_claims"}.Sanitize(), runs: pgx.Identifier{schema, "runs"}.Sanitize()}
}

// Pool is the connection pool the claims use.
func (c *Claims) Pool() *pgxpool.Pool { return c.pool }

// Schema is the ip2a-ops schema the claims live in.
func (c *Claims) Schema() string { return c.schema }

// ClaimParams name a slot and who claims it.
type ClaimParams struct {
	Entry, Job string
	Slot       time.Time
	Kind       string
	Host       string
	PID        int
}

// Claim inserts the (entry, slot) row and reports whether this caller won
// it: exactly one of any number of concurrent callers gets true.
func (c *Claims) Claim(ctx context.Context, p ClaimParams) (bool, error) {
	return c.claim(ctx, c.pool, p)
}

// claim is Claim through q: the pool, or a transaction whose commit the
// claim waits for.
func (c *Claims) claim(ctx context.Context, q interface {
	Exec(context.Context, string, ...any) (pgconn.CommandTag, error)
}, p ClaimParams) (bool, error) {
	if p.Kind == "" {
		p.Kind = KindScheduled
	}
	tag, err := q.Exec(ctx, `INSERT INTO `+c.table+` (entry, job, slot, kind, host, pid) VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (entry, slot) DO NOTHING`, p.Entry, p.Job, p.Slot.UTC(), p.Kind, p.Host, p.PID)
	if err != nil {
		return false, fmt.Errorf("claim slot %s of %s: %w", p.Slot.UTC().Format(time.RFC3339), p.Entry, err)
	}
	return tag.RowsAffected() == 1, nil
}

// RanSince reports whether the ledger has a run of job (other than a skip)
// that started at or after t or filled a slot at or after t, whatever
// started it: a manual or cron run after a missed slot makes catching up
// pointless.
func (c *Claims) RanSince(ctx context.Context, job string, t time.Time) (bool, error) {
	var ok bool
	err := c.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM `+c.runs+` WHERE job = $1 AND state <> 'skipped' AND (started_at >= $2 OR slot >= $2))`, job, t.UTC()).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("read ledger for %s: %w", job, err)
	}
	return ok, nil
}

// Prune deletes claims older than age; catch-up never looks further back
// than an entry's window, and the ledger keeps the runs themselves.
func (c *Claims) Prune(ctx context.Context, age time.Duration) (int64, error) {
	tag, err := c.pool.Exec(ctx, `DELETE FROM `+c.table+` WHERE slot < now() - $1::interval`, age.String())
	if err != nil {
		return 0, fmt.Errorf("prune slot claims: %w", err)
	}
	return tag.RowsAffected(), nil
}
