// Package doctor checks that a deployment of ip2a-ops can do its jobs
// before a 02:00 run finds out: whether the database URL goes through a
// transaction-pooling proxy and, if so, the settings that needs (exec
// mode, a direct URL for the jobs needing a session), pg_dump against the
// server's version, the privileges each job needs, a scratch database for
// restore drills, storage
// reachable and writable, audit_logs' immutability trigger and ip2a-ops's
// archive guard, the ops schema version, and a crontab's fitness for
// Railway. Each check says what to fix. It changes nothing but a probe
// object in storage, which it deletes.
package doctor

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ip2a/ip2a-ops/pkg/audit"
	"github.com/ip2a/ip2a-ops/pkg/dbschema"
	"github.com/ip2a/ip2a-ops/pkg/migrate"
	"github.com/ip2a/ip2a-ops/pkg/scheduler"
	"github.com/ip2a/ip2a-ops/pkg/storage"
)

// Check statuses.
const (
	OK      = "ok"
	Problem = "problem" // something a job needs is missing: exit 3
	Warning = "warning" // worth fixing, no job fails because of it
	Skipped = "skipped" // not configured or not applicable
)

// Check is one verdict.
type Check struct {
	Name   string `json:"name"`
	Status string `json:"status"`
	Detail string `json:"detail"`
	// Fix says what to do when Status is problem or warning.
	Fix string `json:"fix,omitempty"`
}

// Result lists every check in order.
type Result struct {
	Checks   []Check `json:"checks"`
	Problems int     `json:"problems"`
	Warnings int     `json:"warnings"`
}

func (r *Result) add(c Check) {
	switch c.Status {
	case Problem:
		r.Problems++
	case Warning:
		r.Warnings++
	}
	r.Checks = append(r.Checks, c)
}

// Options configure Run. Zero values mean the defaults in brackets.
type Options struct {
	Pool *pgxpool.Pool
	// AppSchema holds the app's tables ["public"]; OpsSchema ip2a-ops's
	// own ["ip2a_ops"].
	AppSchema string
	OpsSchema string
	// PgDump is the pg_dump to check: a path, or a name looked up on PATH
	// ["pg_dump"].
	PgDump string
	// ScratchURL is the database restore drills restore into; empty means
	// they create one, which needs CREATEDB.
	ScratchURL string
	// DirectURL is the connection the jobs in SessionNeeds use when Pool's
	// URL goes through a transaction-pooling proxy; empty means none is
	// set (they use Pool's URL).
	DirectURL string
	// Store, when set, is checked with storage.Check; StoreErr is the error
	// opening it gave (reported as the storage problem).
	Store    storage.Store
	StoreErr error
	// Crontab, when set, is checked for Railway (CrontabName names it);
	// Resolve names each entry's job (required with Crontab).
	Crontab     []byte
	CrontabName string
	Resolve     scheduler.Resolver
	// Needs are the table privileges the jobs need (the job registry's).
	Needs []Need
	// MinInterval between two runs of one crontab entry [5m, Railway's].
	MinInterval time.Duration
	// Now starts the crontab simulation [time.Now()].
	Now time.Time
}

// Validate names the first bad field.
func (o Options) Validate() error {
	switch {
	case o.Pool == nil:
		return errors.New("Pool: required")
	case o.MinInterval < 0:
		return fmt.Errorf("MinInterval: %s is negative", o.MinInterval)
	case o.Crontab != nil && o.Resolve == nil:
		return errors.New("Resolve: required with Crontab")
	}
	return nil
}

// Run performs every check. The error is only for "could not run at all"
// (the database does not answer); everything else is a Check.
func Run(ctx context.Context, o Options) (Result, error) {
	if err := o.Validate(); err != nil {
		return Result{}, fmt.Errorf("doctor: %w", err)
	}
	if o.AppSchema == "" {
		o.AppSchema = "public"
	}
	if o.OpsSchema == "" {
		o.OpsSchema = migrate.DefaultSchema
	}
	if o.PgDump == "" {
		o.PgDump = "pg_dump"
	}
	if o.MinInterval == 0 {
		o.MinInterval = 5 * time.Minute
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	// First, as a proxy can make the queries below fail.
	pooling := checkPooling(ctx, o)
	var serverNum int
	var role string
	var super, createdb bool
	err := o.Pool.QueryRow(ctx, `SELECT current_setting('server_version_num')::int, current_user, rolsuper, rolcreatedb
		FROM pg_roles WHERE rolname = current_user`).Scan(&serverNum, &role, &super, &createdb)
	if err != nil {
		if pooling[0].Status == Problem {
			return Result{}, fmt.Errorf("doctor: read server version and role: %w (%s: %s)", err, pooling[0].Detail, pooling[0].Fix)
		}
		return Result{}, fmt.Errorf("doctor: read server version and role: %w", err)
	}
	info, err := dbschema.Inspect(ctx, o.Pool, o.AppSchema)
	if err != nil {
		return Result{}, fmt.Errorf("doctor: %w", err)
	}
	var res Result
	for _, c := range pooling {
		res.add(c)
	}
	res.add(checkPgDump(ctx, o.PgDump, serverNum))
	for _, c := range checkPrivileges(ctx, o, info, role) {
		res.add(c)
	}
	res.add(checkScratch(ctx, o.ScratchURL, role, super, createdb))
	res.add(checkOpsSchema(ctx, o))
	for _, c := range checkAudit(ctx, o, info) {
		res.add(c)
	}
	res.add(checkStorage(ctx, o))
	res.add(checkCrontab(o))
	return res, nil
}

var pgDumpVersion = regexp.MustCompile(`\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?`)

func checkPgDump(ctx context.Context, bin string, serverNum int) Check {
	c := Check{Name: "pg_dump version"}
	server := serverNum / 10000
	path, err := exec.LookPath(bin)
	if err != nil {
		c.Status, c.Detail = Problem, fmt.Sprintf("%s not found: %v", bin, err)
		c.Fix = fmt.Sprintf("install the PostgreSQL %d client (apt-get install postgresql-client-%d) or point --pg-dump / IP2A_OPS_PG_DUMP at it", server, server)
		return c
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "--version").Output()
	if err != nil {
		c.Status, c.Detail, c.Fix = Problem, fmt.Sprintf("%s --version: %v", path, err), "reinstall the PostgreSQL client"
		return c
	}
	m := pgDumpVersion.FindStringSubmatch(string(out))
	if m == nil {
		c.Status, c.Detail, c.Fix = Problem, fmt.Sprintf("%s --version printed %q", path, strings.TrimSpace(string(out))), "use PostgreSQL's own pg_dump"
		return c
	}
	major, _ := strconv.Atoi(m[1])
	c.Detail = fmt.Sprintf("%s is version %d, the server %d", path, major, server)
	if major < server {
		c.Status = Problem
		c.Fix = fmt.Sprintf("pg_dump refuses a newer server: install the PostgreSQL %d client (apt-get install postgresql-client-%d)", server, server)
		return c
	}
	c.Status = OK
	return c
}

// Need is one privilege a job needs on a table.
type Need struct{ Job, Table, Privilege string }

func checkPrivileges(ctx context.Context, o Options, info *dbschema.Info, role string) []Check {
	var out []Check
	// backup (and every report) reads every table and sequence.
	rows, err := o.Pool.Query(ctx, `SELECT c.relname, c.relkind = 'S'
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'S')
		AND NOT CASE WHEN c.relkind = 'S' THEN has_sequence_privilege(c.oid, 'SELECT') ELSE has_table_privilege(c.oid, 'SELECT') END
		ORDER BY c.relname`, o.AppSchema)
	c := Check{Name: "privileges: read every table (backup, reports)"}
	var tables, seqs []string
	if err == nil {
		for rows.Next() {
			var name string
			var seq bool
			if err = rows.Scan(&name, &seq); err != nil {
				break
			}
			if seq {
				seqs = append(seqs, name)
			} else {
				tables = append(tables, name)
			}
		}
		rows.Close()
		if err == nil {
			err = rows.Err()
		}
	}
	who := pgx.Identifier{role}.Sanitize()
	schema := pgx.Identifier{o.AppSchema}.Sanitize()
	switch {
	case err != nil:
		c.Status, c.Detail = Problem, "could not read privileges: "+err.Error()
	case len(tables)+len(seqs) == 0:
		c.Status, c.Detail = OK, fmt.Sprintf("%s can SELECT every table and sequence in %s", role, o.AppSchema)
	default:
		c.Status = Problem
		c.Detail = fmt.Sprintf("%s cannot SELECT %s", role, list(append(tables, seqs...)))
		c.Fix = fmt.Sprintf("GRANT SELECT ON ALL TABLES IN SCHEMA %s TO %s; GRANT SELECT ON ALL SEQUENCES IN SCHEMA %s TO %s;", schema, who, schema, who)
	}
	out = append(out, c)

	byJob := map[string][]string{}
	var order []string
	for _, n := range o.Needs {
		if _, seen := byJob[n.Job]; !seen {
			order = append(order, n.Job)
			byJob[n.Job] = nil
		}
		if !info.HasTable(n.Table) {
			continue
		}
		var ok bool
		if err := o.Pool.QueryRow(ctx, `SELECT has_table_privilege($1::regclass, $2)`, pgx.Identifier{o.AppSchema, n.Table}.Sanitize(), n.Privilege).Scan(&ok); err != nil || !ok {
			byJob[n.Job] = append(byJob[n.Job], n.Privilege+" ON "+n.Table)
		}
	}
	for _, job := range order {
		c := Check{Name: "privileges: " + job, Status: OK, Detail: "every privilege it needs is granted"}
		if miss := byJob[job]; len(miss) > 0 {
			c.Status = Problem
			c.Detail = fmt.Sprintf("%s lacks %s", role, strings.Join(miss, ", "))
			var fixes []string
			for _, m := range miss {
				priv, table, _ := strings.Cut(m, " ON ")
				fixes = append(fixes, fmt.Sprintf("GRANT %s ON %s.%s TO %s;", priv, schema, pgx.Identifier{table}.Sanitize(), who))
			}
			c.Fix = strings.Join(fixes, " ")
		}
		out = append(out, c)
	}
	return out
}

func list(names []string) string {
	if len(names) > 8 {
		return strings.Join(names[:8], ", ") + fmt.Sprintf(" and %d more", len(names)-8)
	}
	return strings.Join(names, ", ")
}

func checkScratch(ctx context.Context, scratchURL, role string, super, createdb bool) Check {
	c := Check{Name: "restore drills: scratch database"}
	if scratchURL == "" {
		if super || createdb {
			c.Status, c.Detail = OK, fmt.Sprintf("%s may create a throwaway database (CREATEDB)", role)
			return c
		}
		c.Status = Problem
		c.Detail = fmt.Sprintf("%s has no CREATEDB and no --scratch-url is set", role)
		c.Fix = fmt.Sprintf("ALTER ROLE %s CREATEDB; or give a database to restore into with --scratch-url / IP2A_OPS_SCRATCH_URL", pgx.Identifier{role}.Sanitize())
		return c
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, scratchURL)
	if err != nil {
		c.Status, c.Detail, c.Fix = Problem, "cannot connect to the scratch database: "+redactErr(err), "check --scratch-url (IP2A_OPS_SCRATCH_URL)"
		return c
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var db, user string
	var canCreate bool
	err = conn.QueryRow(ctx, `SELECT current_database(), current_user,
		has_database_privilege(current_database(), 'CREATE') AND has_schema_privilege('public', 'CREATE')`).Scan(&db, &user, &canCreate)
	switch {
	case err != nil:
		c.Status, c.Detail = Problem, "scratch database: "+redactErr(err)
	case !canCreate:
		c.Status, c.Detail = Problem, fmt.Sprintf("%s cannot create schemas and tables in scratch database %s", user, db)
		c.Fix = fmt.Sprintf("GRANT CREATE ON DATABASE %s TO %s; GRANT CREATE ON SCHEMA public TO %s;", pgx.Identifier{db}.Sanitize(), pgx.Identifier{user}.Sanitize(), pgx.Identifier{user}.Sanitize())
	default:
		c.Status, c.Detail = OK, fmt.Sprintf("%s can restore into scratch database %s", user, db)
	}
	return c
}

var urlPassword = regexp.MustCompile(`(://[^:/@\s]+:)[^@\s]+@`)

func redactErr(err error) string { return urlPassword.ReplaceAllString(err.Error(), "${1}xxxxx@") }

func checkOpsSchema(ctx context.Context, o Options) Check {
	c := Check{Name: "ip2a-ops schema version"}
	v, err := migrate.Current(ctx, o.Pool, o.OpsSchema)
	latest := migrate.Latest()
	switch {
	case err != nil:
		c.Status, c.Detail, c.Fix = Problem, err.Error(), "grant USAGE on schema "+o.OpsSchema
	case v == 0:
		c.Status, c.Detail, c.Fix = Problem, fmt.Sprintf("schema %s does not exist", o.OpsSchema), "ip2a-ops migrate   (or set IP2A_OPS_AUTO_MIGRATE=1)"
	case v < latest:
		c.Status, c.Detail, c.Fix = Problem, fmt.Sprintf("schema %s is at version %d, this binary needs %d", o.OpsSchema, v, latest), "ip2a-ops migrate"
	case v > latest:
		c.Status, c.Detail, c.Fix = Warning, fmt.Sprintf("schema %s is at version %d, newer than this binary (%d)", o.OpsSchema, v, latest), "upgrade ip2a-ops on this host"
	default:
		c.Status, c.Detail = OK, fmt.Sprintf("schema %s is at version %d", o.OpsSchema, v)
	}
	return c
}

func checkAudit(ctx context.Context, o Options, info *dbschema.Info) []Check {
	trig := Check{Name: "audit_logs immutability trigger"}
	guard := Check{Name: "ip2a-ops audit guard"}
	if !info.HasTable("audit_logs") {
		trig.Status, trig.Detail = Skipped, "table audit_logs does not exist"
		guard.Status, guard.Detail = Skipped, "table audit_logs does not exist"
		return []Check{trig, guard}
	}
	st, err := audit.Guard(ctx, audit.Config{Pool: o.Pool, Schema: o.OpsSchema})
	if err != nil {
		trig.Status, trig.Detail = Problem, err.Error()
		guard.Status, guard.Detail = Problem, err.Error()
		return []Check{trig, guard}
	}
	if st.AppTrigger {
		trig.Status, trig.Detail = OK, "audit_logs_prevent_update and audit_logs_prevent_delete refuse changes"
	} else {
		trig.Status = Problem
		trig.Detail = "audit_logs can be updated and deleted by anyone who can write it (older schema, or a trigger disabled)"
		trig.Fix = "ip2a-ops audit-archive install-guard (as the owner of audit_logs) creates the app's triggers too"
	}
	if st.Installed {
		guard.Status, guard.Detail = OK, "installed for schema "+st.Schema+": only archived, verified months can be deleted"
	} else {
		guard.Status = Problem
		guard.Detail = "missing: " + strings.Join(st.Missing, "; ") + " (audit-archive writes archives but cannot delete archived rows)"
		guard.Fix = "ip2a-ops audit-archive install-guard   (as the owner of audit_logs; --print shows the SQL)"
	}
	return []Check{trig, guard}
}

func checkStorage(ctx context.Context, o Options) Check {
	c := Check{Name: "storage reachable and writable"}
	switch {
	case o.StoreErr != nil:
		c.Status, c.Detail, c.Fix = Problem, o.StoreErr.Error(), "check --storage-url and the S3_* / IP2A_OPS_S3_* variables"
	case o.Store == nil:
		c.Status, c.Detail = Skipped, "no storage configured (--storage-url, IP2A_OPS_STORAGE_URL or S3_BUCKET_NAME)"
	default:
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if err := storage.Check(ctx, o.Store); err != nil {
			c.Status, c.Detail, c.Fix = Problem, err.Error(), "check the bucket, endpoint and credentials (S3_ENDPOINT_URL, S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY, S3_BUCKET_NAME) or the directory's permissions"
		} else {
			c.Status, c.Detail = OK, o.Store.String()+": wrote, read back and deleted a probe object"
		}
	}
	return c
}

// PgDumpIn returns dir/pg_dump, for callers that name a PostgreSQL bin
// directory (IP2A_OPS_PG_BIN).
func PgDumpIn(dir string) string { return filepath.Join(dir, "pg_dump") }
