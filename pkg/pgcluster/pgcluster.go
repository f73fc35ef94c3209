// Package pgcluster starts and stops throwaway PostgreSQL clusters from the
// machine's own PostgreSQL binaries (initdb, pg_ctl). The demo, restore drills
// and the test harness use it when no server is given.
package pgcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrNoBinaries is returned when initdb/pg_ctl cannot be found.
var ErrNoBinaries = errors.New("PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or under /usr/lib/postgresql/*/bin; install the Debian package postgresql (or postgresql-15)")

// FindBinDir returns the directory holding initdb and pg_ctl: the newest
// /usr/lib/postgresql/N/bin first, then the directory of initdb on PATH.
// minMajor > 0 skips versions older than that.
func FindBinDir(minMajor int) (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return majorOf(dirs[i]) > majorOf(dirs[j]) })
	for _, d := range dirs {
		if minMajor > 0 && majorOf(d) < minMajor {
			continue
		}
		if isExec(filepath.Join(d, "initdb")) && isExec(filepath.Join(d, "pg_ctl")) {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		d := filepath.Dir(p)
		if isExec(filepath.Join(d, "pg_ctl")) {
			return d, nil
		}
	}
	return "", ErrNoBinaries
}

func majorOf(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

func isExec(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

// Options configure Start. Zero values mean defaults.
type Options struct {
	// BinDir holds initdb and pg_ctl; empty means FindBinDir(MinMajor).
	BinDir string
	// MinMajor is the lowest acceptable server major version when searching.
	MinMajor int
	// Dir is the parent directory for the cluster; empty means a new temp dir.
	Dir string
	// Port to listen on (127.0.0.1 only); 0 picks a free one.
	Port int
	// Settings are extra postgresql.conf lines (name = value).
	Settings map[string]string
}

// Cluster is a running throwaway cluster.
type Cluster struct {
	BinDir  string
	DataDir string
	Port    int
	root    string
	cred    *syscall.Credential
	ownRoot bool
}

// URL returns a connection string for database db as the postgres superuser.
func (c *Cluster) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.Port, db)
}

// Start runs initdb and starts the server, waiting until it accepts
// connections. initdb refuses to run as root, so when the caller is root the
// server runs as the "postgres" (or "nobody") system user.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	bin := opts.BinDir
	if bin == "" {
		var err error
		if bin, err = FindBinDir(opts.MinMajor); err != nil {
			return nil, err
		}
	}
	c := &Cluster{BinDir: bin}
	if opts.Dir != "" {
		c.root = opts.Dir
	} else {
		// As root the server runs as another user, who must be able to
		// reach the directory: $TMPDIR may sit inside a private one (go
		// test, testscript), while /tmp is open to all.
		parent := ""
		if os.Geteuid() == 0 {
			parent = "/tmp"
		}
		d, err := os.MkdirTemp(parent, "ip2a-ops-pg-")
		if err != nil {
			return nil, fmt.Errorf("create cluster directory: %w", err)
		}
		c.root, c.ownRoot = d, true
	}
	c.DataDir = filepath.Join(c.root, "data")
	if os.Geteuid() == 0 {
		cred, err := unprivileged()
		if err != nil {
			c.cleanup()
			return nil, err
		}
		c.cred = cred
		if err := os.Chown(c.root, int(cred.Uid), int(cred.Gid)); err != nil {
			c.cleanup()
			return nil, fmt.Errorf("hand cluster directory to uid %d: %w", cred.Uid, err)
		}
	}
	port := opts.Port
	if port == 0 {
		p, err := FreePort()
		if err != nil {
			c.cleanup()
			return nil, err
		}
		port = p
	}
	c.Port = port
	if out, err := c.run(ctx, "initdb", "-D", c.DataDir, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"); err != nil {
		c.cleanup()
		return nil, fmt.Errorf("initdb: %w: %s", err, lastLines(out, 5))
	}
	conf := []string{
		"listen_addresses = '127.0.0.1'",
		fmt.Sprintf("port = %d", port),
		fmt.Sprintf("unix_socket_directories = '%s'", c.root),
		"fsync = off", "synchronous_commit = off", "full_page_writes = off",
		"max_connections = 200", "shared_buffers = 128MB", "timezone = 'UTC'",
	}
	keys := make([]string, 0, len(opts.Settings))
	for k := range opts.Settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		conf = append(conf, fmt.Sprintf("%s = %s", k, opts.Settings[k]))
	}
	f, err := os.OpenFile(filepath.Join(c.DataDir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		c.cleanup()
		return nil, fmt.Errorf("configure cluster: %w", err)
	}
	_, err = f.WriteString("\n" + strings.Join(conf, "\n") + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		c.cleanup()
		return nil, fmt.Errorf("configure cluster: %w", err)
	}
	logFile := filepath.Join(c.root, "server.log")
	if out, err := c.run(ctx, "pg_ctl", "-D", c.DataDir, "-l", logFile, "-w", "-t", "60", "start"); err != nil {
		log, _ := os.ReadFile(logFile)
		c.cleanup()
		return nil, fmt.Errorf("pg_ctl start: %w: %s %s", err, lastLines(out, 3), lastLines(log, 5))
	}
	return c, nil
}

// Stop stops the server immediately and removes the cluster's files when
// Start created the directory. It is safe to call more than once.
func (c *Cluster) Stop() error {
	if c == nil || c.DataDir == "" {
		return nil
	}
	_, err := c.run(context.Background(), "pg_ctl", "-D", c.DataDir, "-m", "immediate", "-w", "stop")
	c.cleanup()
	c.DataDir = ""
	if err != nil {
		return fmt.Errorf("pg_ctl stop: %w", err)
	}
	return nil
}

// Root is the directory that holds the cluster (data, socket, log).
func (c *Cluster) Root() string { return c.root }

func (c *Cluster) cleanup() {
	if c.ownRoot {
		_ = os.RemoveAll(c.root)
	}
}

func (c *Cluster) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(c.BinDir, name), args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Dir = c.root
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
	err := cmd.Run()
	return out.Bytes(), err
}

func unprivileged() (*syscall.Credential, error) {
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
	}
	return nil, errors.New("running as root and no 'postgres' or 'nobody' user to run the server as")
}

// FreePort asks the kernel for a free loopback TCP port.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// WaitReady polls addr until it accepts TCP connections or the deadline passes.
func WaitReady(ctx context.Context, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			return conn.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("wait for %s: %w", addr, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
