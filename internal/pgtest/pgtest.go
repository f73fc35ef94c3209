// Package pgtest gives every test its own PostgreSQL database on a real
// server: TEST_DATABASE_URL when set, else the local server at
// 127.0.0.1:5432, else a throwaway cluster started from the machine's
// PostgreSQL binaries and stopped when the test binary exits (call Main from
// TestMain). In CI (CI=true) a missing server fails the test; elsewhere it is
// skipped.
package pgtest

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ip2a/ip2a-ops/pkg/pgcluster"
)

// server is process-wide on purpose: one cluster serves every test of a
// package, and tests get isolation from their own databases.
var server struct {
	once    sync.Once
	admin   string
	cluster *pgcluster.Cluster
	err     error
}

// Main runs the tests and stops a cluster the harness started. Use it as
// func TestMain(m *testing.M) { pgtest.Main(m) }.
func Main(m *testing.M) {
	code := m.Run()
	Stop()
	os.Exit(code)
}

// Stop stops a cluster the harness started (a no-op otherwise). Call it
// when the test binary is done, if you cannot use Main.
func Stop() {
	if server.cluster != nil {
		_ = server.cluster.Stop()
	}
}

// AdminURL returns a superuser connection string to the test server's
// "postgres" database, starting a server if needed.
func AdminURL(t testing.TB) string {
	t.Helper()
	server.once.Do(func() { server.admin, server.err = findServer() })
	if server.err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("no PostgreSQL for tests: %v", server.err)
		}
		t.Skipf("no PostgreSQL for tests: %v", server.err)
	}
	return server.admin
}

func findServer() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		if err := ping(ctx, u); err != nil {
			return "", fmt.Errorf("TEST_DATABASE_URL: %w", err)
		}
		return u, nil
	}
	local := "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	if err := ping(ctx, local); err == nil {
		return local, nil
	}
	c, err := pgcluster.Start(ctx, pgcluster.Options{})
	if err != nil {
		return "", err
	}
	server.cluster = c
	return c.URL("postgres"), nil
}

func ping(ctx context.Context, u string) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		return err
	}
	return conn.Close(ctx)
}

// NewDatabase creates an empty database for this test and returns its URL.
// The database is dropped (forcing off other sessions) when the test ends.
func NewDatabase(t testing.TB) string {
	t.Helper()
	url, drop, err := CreateDatabase(context.Background(), AdminURL(t))
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() {
		if err := drop(); err != nil {
			t.Logf("%v", err)
		}
	})
	return url
}

// CreateDatabase creates an empty database on the server admin points at
// and returns its URL and a function that drops it.
func CreateDatabase(ctx context.Context, admin string) (string, func() error, error) {
	u, drop, err := pgcluster.CreateDatabase(ctx, admin, "ip2a_test")
	if err != nil {
		return "", nil, fmt.Errorf("test database: %w", err)
	}
	return u, drop, nil
}

// WithDatabase returns u with its database name replaced by db.
func WithDatabase(t testing.TB, u, db string) string {
	t.Helper()
	p, err := url.Parse(u)
	if err != nil {
		t.Fatalf("parse database URL: %v", err)
	}
	p.Path = "/" + db
	return p.String()
}

// Pool opens a pool on url for this test, closed when the test ends.
func Pool(t testing.TB, url string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatalf("open pool: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}
