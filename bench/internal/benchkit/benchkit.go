// Package benchkit is what the benchmark programs share: this tree's
// binary built once, a PostgreSQL server (the given one or a throwaway
// cluster), databases migrated for ip2a-ops, and readings of a process's
// memory and CPU (Linux /proc).
package benchkit

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ip2a/ip2a-ops/pkg/pgcluster"
)

// Env is a built binary and a server. Close removes what it made.
type Env struct {
	// Bin is ip2a-ops built from this tree.
	Bin string
	// Admin is a connection string to the server's postgres database.
	Admin string
	admin *pgxpool.Pool
	close []func()
}

// Setup builds the binary and connects to admin, or starts a throwaway
// cluster when admin is empty, and prints the PostgreSQL version, CPU count
// and Go version.
func Setup(ctx context.Context, admin string) (*Env, error) {
	e := &Env{}
	dir, err := os.MkdirTemp("", "ip2a-bench-")
	if err != nil {
		return nil, err
	}
	e.close = append(e.close, func() { _ = os.RemoveAll(dir) })
	e.Bin = filepath.Join(dir, "ip2a-ops")
	if out, err := exec.Command("go", "build", "-o", e.Bin, ".").CombinedOutput(); err != nil {
		e.Close()
		return nil, fmt.Errorf("build: %v\n%s", err, out)
	}
	if admin == "" {
		cl, err := pgcluster.Start(ctx, pgcluster.Options{})
		if err != nil {
			e.Close()
			return nil, err
		}
		e.close = append(e.close, func() { cl.Stop() })
		admin = cl.URL("postgres")
	}
	e.Admin = admin
	if e.admin, err = pgxpool.New(ctx, admin); err != nil {
		e.Close()
		return nil, err
	}
	e.close = append(e.close, e.admin.Close)
	var version string
	_ = e.admin.QueryRow(ctx, "SHOW server_version").Scan(&version)
	fmt.Printf("PostgreSQL %s, %d CPUs, %s\n", version, runtime.NumCPU(), runtime.Version())
	return e, nil
}

// Close drops nothing (see Database) but removes the binary and stops a
// throwaway cluster.
func (e *Env) Close() {
	for i := len(e.close) - 1; i >= 0; i-- {
		e.close[i]()
	}
	e.close = nil
}

// Database creates (or recreates) database name, migrated with `ip2a-ops
// migrate`, and returns its URL and a function that drops it.
func (e *Env) Database(ctx context.Context, name string) (string, func(), error) {
	_, _ = e.admin.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	if _, err := e.admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", nil, err
	}
	u, _ := url.Parse(e.Admin)
	u.Path = "/" + name
	drop := func() { _, _ = e.admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)") }
	if out, err := exec.Command(e.Bin, "--database-url", u.String(), "migrate").CombinedOutput(); err != nil {
		drop()
		return "", nil, fmt.Errorf("migrate: %v\n%s", err, out)
	}
	return u.String(), drop, nil
}

// RSSKB is the process's resident set size in KiB (0 when unreadable).
func RSSKB(pid int) int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			n, _ := strconv.Atoi(strings.Fields(l)[1])
			return n
		}
	}
	return 0
}

// CPUTicks is the process's user plus system time in clock ticks
// (USER_HZ, 100 a second on Linux).
func CPUTicks(pid int) int64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 > len(s) {
		return 0
	}
	f := strings.Fields(s[i+2:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return u + st
}

// Pct is the p-th percentile of sorted durations, rounded to the
// millisecond (0 for none).
func Pct(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := min(max((len(sorted)*p+99)/100, 1), len(sorted))
	return sorted[i-1].Round(time.Millisecond)
}

// Start starts the processes.
func Start(cs ...*exec.Cmd) error {
	for _, c := range cs {
		if err := c.Start(); err != nil {
			return err
		}
	}
	return nil
}

// Stop sends SIGTERM to the processes and waits for them to exit.
func Stop(cs ...*exec.Cmd) {
	for _, c := range cs {
		_ = c.Process.Signal(syscall.SIGTERM)
	}
	for _, c := range cs {
		_ = c.Wait()
	}
}
