// Package fixturetest gives other packages' tests a fresh database holding
// the IP2A schema and sample data: one call, well under a second at the
// default size.
package fixturetest

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ip2a/ip2a-ops/internal/pgtest"
	"github.com/ip2a/ip2a-ops/pkg/fixture"
)

// NewTestDB creates a database with pgtest.NewDatabase (dropped when the
// test ends), loads generation g and generates opts' data into it (zero
// Options: the small demo size, seed 0, fixture.DefaultNow as the clock),
// and returns its URL. Options.Generation is set to g.
func NewTestDB(t testing.TB, g fixture.Generation, opts fixture.Options) string {
	t.Helper()
	url := pgtest.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatalf("fixturetest: connect: %v", err)
	}
	defer pool.Close()
	if err := fixture.LoadSchema(ctx, pool, g); err != nil {
		t.Fatalf("fixturetest: %v", err)
	}
	opts.Generation = g
	if _, err := fixture.Generate(ctx, pool, opts); err != nil {
		t.Fatalf("fixturetest: %v", err)
	}
	return url
}
