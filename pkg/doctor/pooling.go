package doctor

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ip2a/ip2a-ops/pkg/dbconn"
)

// SessionNeed is a job that needs a connection with a session of its own,
// and why a transaction-pooling proxy does not do for it.
type SessionNeed struct {
	Job string `json:"job"`
	Why string `json:"why"`
}

// SessionNeeds are the jobs that use the direct URL (--direct-url,
// DATABASE_DIRECT_URL) when one is set. Everything else runs one statement
// or one transaction at a time and works through a transaction pool.
var SessionNeeds = []SessionNeed{
	{"backup", "pg_dump sets up its session (search_path, row_security, timeouts) before its transaction: through a " +
		"transaction pool those settings land on server connections other clients then get, and its exported " +
		"snapshot's COPY connections each hold a server for the whole dump"},
	{"worker", "River LISTENs for new tasks on a connection it keeps: through a transaction pool the LISTEN stays " +
		"on a server connection other clients get, and the notifications go to them"},
}

// sessionJobs names the SessionNeeds jobs for a message.
func sessionJobs() string {
	names := make([]string, len(SessionNeeds))
	for i, n := range SessionNeeds {
		names[i] = n.Job
	}
	return strings.Join(names, ", ")
}

// checkPooling tells whether the database URL goes through a
// transaction-pooling proxy and, when it does, whether the settings that
// makes necessary are there: an exec mode without server-side prepared
// statements, and a direct URL for the jobs that need a session.
func checkPooling(ctx context.Context, o Options) []Check {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	connString := o.Pool.Config().ConnString()
	c := Check{Name: "connection pooling"}
	p, err := dbconn.DetectPooling(ctx, connString)
	if err != nil {
		c.Status, c.Detail = Warning, "could not tell whether the database URL goes through a pooling proxy: "+dbconn.Redact(err.Error())
		c.Fix = "check that the URL answers two connections at once"
		return []Check{c}
	}
	if !p.Transaction {
		c.Status, c.Detail = OK, "the database URL gives each connection a session of its own ("+p.Evidence+"): every job can use it"
		return []Check{c}
	}
	c.Detail = "the database URL goes through a transaction-pooling proxy (" + p.Evidence + ")"
	c.Status = OK
	if mode := execMode(connString); mode != "" {
		c.Status = Problem
		c.Detail += fmt.Sprintf("; pgx's exec mode %s prepares statements on a server connection the proxy does not keep for it", mode)
		c.Fix = "add default_query_exec_mode=exec to the database URL (DATABASE_URL)"
	} else {
		c.Detail += "; the URL's exec mode prepares nothing on the server"
	}
	return []Check{c, checkDirect(ctx, o.DirectURL)}
}

// execMode returns the URL's pgx exec mode when it cannot work through a
// transaction pool (named or separately described statements), else "".
func execMode(connString string) string {
	cfg, err := pgx.ParseConfig(connString)
	if err != nil {
		return ""
	}
	switch cfg.DefaultQueryExecMode {
	case pgx.QueryExecModeCacheStatement:
		return "cache_statement (the default)"
	case pgx.QueryExecModeDescribeExec:
		return "describe_exec"
	}
	return ""
}

// checkDirect checks the direct URL the jobs needing a session use behind
// a transaction pool.
func checkDirect(ctx context.Context, direct string) Check {
	c := Check{Name: "direct connection"}
	if direct == "" {
		c.Status = Problem
		c.Detail = "no direct URL: " + sessionJobs() + " would run through the transaction pool"
		for _, n := range SessionNeeds {
			c.Detail += ". " + n.Job + ": " + n.Why
		}
		c.Fix = "set --direct-url / DATABASE_DIRECT_URL to a connection that bypasses the proxy (the database's own host and port)"
		return c
	}
	p, err := dbconn.DetectPooling(ctx, direct)
	if err != nil {
		c.Status, c.Detail = Problem, "the direct URL does not answer: "+dbconn.Redact(err.Error())
		c.Fix = "check --direct-url / DATABASE_DIRECT_URL"
		return c
	}
	if p.Transaction {
		c.Status, c.Detail = Problem, "the direct URL goes through a transaction-pooling proxy too ("+p.Evidence+")"
		c.Fix = "point --direct-url / DATABASE_DIRECT_URL at the database itself, or at a session-pooling port"
		return c
	}
	c.Status, c.Detail = OK, "the direct URL gives a session of its own; "+sessionJobs()+" use it"
	return c
}
