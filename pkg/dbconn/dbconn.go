// Package dbconn resolves, redacts and opens connections to the IP2A
// database. Precedence: an explicit URL (the --database-url flag), then
// DATABASE_URL, then libpq's PG* variables (PGHOST, PGPORT, PGUSER,
// PGPASSWORD, PGDATABASE, ...), which pgx reads itself.
package dbconn

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Source says where a connection string came from.
type Source string

const (
	FromFlag Source = "flag"
	FromEnv  Source = "DATABASE_URL"
	FromPG   Source = "PG* variables"
)

// Resolve returns the connection string to use and where it came from.
// flagValue wins, then DATABASE_URL from getenv, then "" (pgx then reads the
// PG* variables). An empty result with no PGHOST/PGDATABASE set is an error.
func Resolve(flagValue string, getenv func(string) string) (string, Source, error) {
	if flagValue != "" {
		return flagValue, FromFlag, nil
	}
	if v := getenv("DATABASE_URL"); v != "" {
		return v, FromEnv, nil
	}
	for _, k := range []string{"PGHOST", "PGDATABASE", "PGSERVICE", "PGPORT", "PGUSER"} {
		if getenv(k) != "" {
			return "", FromPG, nil
		}
	}
	return "", "", errors.New("no database configured: set --database-url or DATABASE_URL (postgres://user:pass@host:5432/db), or libpq PG* variables")
}

var kvPassword = regexp.MustCompile(`(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&"']+)`)

// Redact returns s with any password replaced by "xxxxx". It understands URLs
// (postgres://, postgresql://, s3:// or any scheme with user info) and libpq
// keyword/value strings, and also scrubs URLs embedded in longer text.
func Redact(s string) string {
	if s == "" {
		return s
	}
	s = kvPassword.ReplaceAllString(s, "${1}xxxxx")
	return urlInText.ReplaceAllStringFunc(s, redactURL)
}

var urlInText = regexp.MustCompile(`[a-zA-Z][a-zA-Z0-9+.-]*://[^\s"'<>]+`)

func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		// Fall back to blanking anything between "://user:" and "@".
		if i := strings.Index(raw, "://"); i >= 0 {
			rest := raw[i+3:]
			if at := strings.LastIndex(rest, "@"); at >= 0 {
				if c := strings.Index(rest[:at], ":"); c >= 0 {
					return raw[:i+3] + rest[:c] + ":xxxxx" + rest[at:]
				}
			}
		}
		return raw
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
	}
	q := u.Query()
	changed := false
	for k := range q {
		if strings.EqualFold(k, "password") || strings.EqualFold(k, "sslpassword") {
			q.Set(k, "xxxxx")
			changed = true
		}
	}
	if changed {
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// Options tune Open. Zero values mean defaults.
type Options struct {
	// MaxConns caps the pool (default 4).
	MaxConns int32
	// AppName is sent as application_name (default "ip2a-ops").
	AppName string
	// ConnectTimeout bounds the first connection (default 10s).
	ConnectTimeout time.Duration
}

// Open parses connString (postgres:// or postgresql://, keyword/value, or ""
// for PG* variables), opens a pool and checks that the server answers.
// Errors never contain the password.
func Open(ctx context.Context, connString string, opts Options) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(connString)
	if err != nil {
		return nil, fmt.Errorf("parse database URL %s: %s", Redact(connString), Redact(err.Error()))
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = 4
	}
	if opts.AppName == "" {
		opts.AppName = "ip2a-ops"
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = 10 * time.Second
	}
	cfg.MaxConns = opts.MaxConns
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = opts.ConnectTimeout
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = opts.AppName
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to database: %s", Redact(err.Error()))
	}
	pctx, cancel := context.WithTimeout(ctx, opts.ConnectTimeout)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("connect to database: %w", ctx.Err())
		}
		return nil, fmt.Errorf("connect to database %s: %s", Describe(cfg.ConnConfig), Redact(err.Error()))
	}
	return pool, nil
}

// Describe names a database for messages: user@host:port/db, no password.
func Describe(c *pgx.ConnConfig) string {
	return fmt.Sprintf("%s@%s:%d/%s", c.User, c.Host, c.Port, c.Database)
}

// QuoteIdent quotes an SQL identifier.
func QuoteIdent(s string) string { return pgx.Identifier{s}.Sanitize() }
