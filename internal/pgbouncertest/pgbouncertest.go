// Package pgbouncertest runs a real PgBouncer in pool_mode = transaction in
// front of the test server, on its own loopback port with its own
// configuration and auth file in a temporary directory, so tests see what a
// transaction-pooling proxy does to ip2a-ops (no session between
// transactions, no server-side prepared statements). Without the pgbouncer
// binary the test is skipped, except in CI (CI=true), where it fails: CI
// installs Debian's pgbouncer.
package pgbouncertest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ip2a/ip2a-ops/internal/pgtest"
)

// ErrNotInstalled: no pgbouncer binary on PATH or in /usr/sbin.
var ErrNotInstalled = errors.New("pgbouncer is not installed (Debian: apt-get install pgbouncer)")

// Options configure New. Zero values mean defaults.
type Options struct {
	// Upstream is a postgres:// URL of the server to pool (its host, port,
	// user and password are used; any database on it can be reached).
	Upstream string
	// PoolSize is the number of server connections per database and user
	// (default 20).
	PoolSize int
}

// Bouncer is a running PgBouncer.
type Bouncer struct {
	// Addr is "127.0.0.1:<port>".
	Addr string

	dir  string
	cmd  *exec.Cmd
	log  string // PgBouncer's stderr
	done chan struct{}
	err  error // how the process ended, once done is closed
	once sync.Once
}

// Start runs a PgBouncer until the test ends (o.Upstream defaults to the
// pgtest server). It skips the test when pgbouncer is not installed, unless
// CI is set.
func Start(t testing.TB, o Options) *Bouncer {
	t.Helper()
	if o.Upstream == "" {
		o.Upstream = pgtest.AdminURL(t)
	}
	b, err := New(context.Background(), o)
	fail(t, err)
	t.Cleanup(func() {
		if err := b.Stop(); err != nil {
			t.Logf("pgbouncertest: %v", err)
		}
	})
	return b
}

var shared struct {
	once sync.Once
	b    *Bouncer
	err  error
}

// Shared returns one Bouncer in front of the pgtest server for the whole
// test binary (stop it with StopShared when the binary is done), skipping
// or failing like Start.
func Shared(t testing.TB) *Bouncer {
	t.Helper()
	admin := pgtest.AdminURL(t)
	shared.once.Do(func() { shared.b, shared.err = New(context.Background(), Options{Upstream: admin}) })
	fail(t, shared.err)
	return shared.b
}

// fail skips the test for a missing binary outside CI and fails it for
// any other error.
func fail(t testing.TB, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if errors.Is(err, ErrNotInstalled) && os.Getenv("CI") == "" {
		t.Skipf("pgbouncertest: %v", err)
	}
	t.Fatalf("pgbouncertest: %v", err)
}

// StopShared stops the Bouncer Shared started, if any.
func StopShared() {
	if shared.b != nil {
		_ = shared.b.Stop()
	}
}

// Binary returns the pgbouncer binary's path, or ErrNotInstalled.
func Binary() (string, error) {
	if p, err := exec.LookPath("pgbouncer"); err == nil {
		return p, nil
	}
	if st, err := os.Stat("/usr/sbin/pgbouncer"); err == nil && !st.IsDir() {
		return "/usr/sbin/pgbouncer", nil
	}
	return "", ErrNotInstalled
}

// New starts a PgBouncer and waits until it answers through to upstream.
func New(ctx context.Context, o Options) (*Bouncer, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	up, err := url.Parse(o.Upstream)
	if err != nil || (up.Scheme != "postgres" && up.Scheme != "postgresql") {
		return nil, fmt.Errorf("upstream must be a postgres:// URL")
	}
	if o.PoolSize <= 0 {
		o.PoolSize = 20
	}
	host, port := up.Hostname(), up.Port()
	if host == "" {
		host = "127.0.0.1"
	}
	if port == "" {
		port = "5432"
	}
	dbUser := up.User.Username()
	if dbUser == "" {
		dbUser = "postgres"
	}
	password, _ := up.User.Password()

	dir, err := os.MkdirTemp("", "pgbouncertest-")
	if err != nil {
		return nil, err
	}
	var lastErr error
	for range 3 { // a port picked free can be taken before pgbouncer binds it
		b, err := start(ctx, bin, dir, host, port, dbUser, password, o.PoolSize)
		if err == nil {
			return b, nil
		}
		lastErr = err
	}
	_ = os.RemoveAll(dir)
	return nil, lastErr
}

func start(ctx context.Context, bin, dir, host, port, dbUser, password string, poolSize int) (*Bouncer, error) {
	listen, err := freePort()
	if err != nil {
		return nil, err
	}
	// PgBouncer refuses to run as root; it drops to "user" itself. The
	// files it reads at start are read before that.
	runAs := ""
	if os.Geteuid() == 0 {
		runAs = "nobody"
		if _, err := user.Lookup(runAs); err != nil {
			return nil, fmt.Errorf("running as root and there is no user %q to run pgbouncer as", runAs)
		}
	}
	users := []string{dbUser}
	if dbUser != "postgres" {
		users = append(users, "postgres")
	}
	var auth strings.Builder
	for _, u := range users {
		pw := ""
		if u == dbUser {
			pw = password
		}
		fmt.Fprintf(&auth, "%s %s\n", quote(u), quote(pw))
	}
	if err := os.WriteFile(filepath.Join(dir, "users.txt"), []byte(auth.String()), 0o644); err != nil {
		return nil, err
	}
	ini := fmt.Sprintf(`[databases]
* = host=%s port=%s

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = trust
auth_file = %s
pool_mode = transaction
default_pool_size = %d
max_client_conn = 1000
server_login_retry = 1
ignore_startup_parameters = extra_float_digits
log_connections = 0
log_disconnections = 0
`, host, port, listen, filepath.Join(dir, "users.txt"), poolSize)
	if runAs != "" {
		ini += "user = " + runAs + "\n"
	}
	cfg := filepath.Join(dir, "pgbouncer.ini")
	if err := os.WriteFile(cfg, []byte(ini), 0o644); err != nil {
		return nil, err
	}
	b := &Bouncer{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(listen)), dir: dir, log: filepath.Join(dir, "pgbouncer.log"), done: make(chan struct{})}
	logf, err := os.Create(b.log)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child has its own descriptor
	b.cmd = exec.Command(bin, cfg)
	b.cmd.Stdout, b.cmd.Stderr = logf, logf
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := b.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start pgbouncer: %w", err)
	}
	go func() {
		b.err = b.cmd.Wait()
		close(b.done)
	}()
	if err := b.waitReady(ctx, dbUser, password); err != nil {
		b.kill()
		return nil, err
	}
	return b, nil
}

// waitReady polls until a query goes through the proxy to the server.
func (b *Bouncer) waitReady(ctx context.Context, dbUser, password string) error {
	u := &url.URL{Scheme: "postgres", Host: b.Addr, Path: "/postgres", RawQuery: "sslmode=disable&default_query_exec_mode=simple_protocol&connect_timeout=2"}
	u.User = url.User(dbUser)
	if password != "" {
		u.User = url.UserPassword(dbUser, password)
	}
	deadline := time.Now().Add(15 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-b.done:
			return fmt.Errorf("pgbouncer exited (%v): %s", b.err, b.Log())
		default:
		}
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		c, err := pgx.Connect(cctx, u.String())
		if err == nil {
			err = c.QueryRow(cctx, "SELECT 1").Scan(new(int))
			_ = c.Close(cctx)
		}
		cancel()
		if err == nil {
			return nil
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("pgbouncer did not answer within 15s: %v; its log: %s", last, b.Log())
}

// URL returns dbURL, a URL of a database on the upstream server, rewritten
// to go through the proxy; query parameters are kept.
func (b *Bouncer) URL(dbURL string) string {
	u, err := url.Parse(dbURL)
	if err != nil {
		return dbURL
	}
	u.Host = b.Addr
	return u.String()
}

// Log returns the end of PgBouncer's log (its stderr).
func (b *Bouncer) Log() string {
	data, _ := os.ReadFile(b.log)
	if len(data) > 8<<10 {
		data = data[len(data)-8<<10:]
	}
	return string(data)
}

// Stop shuts PgBouncer down (closing its connections) and removes its
// directory. It reports an exit other than the one it asked for.
func (b *Bouncer) Stop() error {
	var err error
	b.once.Do(func() {
		select {
		case <-b.done:
			err = fmt.Errorf("pgbouncer had exited before Stop (%v): %s", b.err, b.Log())
		default:
			// SIGTERM: immediate shutdown.
			_ = b.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-b.done:
			case <-time.After(10 * time.Second):
				b.kill()
				err = errors.New("pgbouncer did not stop within 10s of SIGTERM; killed")
			}
		}
		_ = os.RemoveAll(b.dir)
	})
	return err
}

func (b *Bouncer) kill() {
	_ = syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
	<-b.done
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// quote writes s as an auth_file field: double quotes, doubled inside.
func quote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// ExecModes are every default_query_exec_mode pgx knows. A transaction
// pool needs one that prepares nothing on the server (exec,
// simple_protocol, cache_describe); exec and simple_protocol send
// parameters as text.
var ExecModes = []string{"cache_statement", "cache_describe", "describe_exec", "exec", "simple_protocol"}

// WithParam returns the URL u with query parameter key set to value (the
// form README gives for the proxy: ...?default_query_exec_mode=exec).
func WithParam(u, key, value string) string {
	p, err := url.Parse(u)
	if err != nil {
		return u
	}
	q := p.Query()
	q.Set(key, value)
	p.RawQuery = q.Encode()
	return p.String()
}
