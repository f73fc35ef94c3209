package audit

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// DeleteSetting is the transaction-local setting ip2a-ops sets to the month
// ("YYYY-MM") whose rows it is deleting.
const DeleteSetting = "ip2a_ops.archive_delete"

// guardMarker is written into the guard's function comments so status can
// tell the guard from look-alikes. Version 2 takes a range of months in
// the setting and refuses a DELETE per statement; version 1 (still
// accepted: Run then deletes month by month) took one month and refused
// row by row.
const (
	guardMarker   = "ip2a-ops audit guard v2"
	guardMarkerV1 = "ip2a-ops audit guard v1"
)

// GuardSQL returns the SQL that installs the guard for the ops schema
// (install-guard runs it, --print shows it). Run it as the owner of
// audit_logs, which CREATE TRIGGER needs; the two guard functions end up
// owned by that role. It is idempotent.
//
// What it does, and why:
//   - audit_logs_prevent_update keeps refusing every UPDATE.
//   - audit_logs_prevent_delete still refuses every DELETE, except while
//     ip2a_ops.archive_delete is set (SET LOCAL): it becomes a statement
//     trigger whose WHEN clause skips it then, so nothing runs per row.
//   - audit_logs_guard_delete, an AFTER DELETE statement trigger with a
//     transition table, then checks every deleted row at once: the setting
//     must name a month that the ops table records as archived and
//     verified, and every row must lie in that month and its recorded id
//     range, and the session's role must be (a member of) the owner of
//     that ops table; otherwise it raises and the whole statement is
//     undone. Its function is SECURITY DEFINER, so it can read the ops
//     table that the app's role cannot read or write: setting the variable
//     is not enough, even for a role that may DELETE from audit_logs.
//   - audit_logs_prevent_truncate refuses TRUNCATE.
//   - On the older schema, which has no trigger, the row triggers and
//     prevent_audit_modification() are created: deleting old rows requires
//     the same immutability for everybody else.
func GuardSQL(schema string) string {
	q := pgx.Identifier{schema}.Sanitize()
	r := strings.NewReplacer("{{ops}}", q, "{{marker}}", guardMarker, "{{setting}}", DeleteSetting)
	return r.Replace(`-- {{marker}}: audit_logs stays immutable; ip2a-ops may delete only
-- rows of months it has archived and verified ({{ops}}.audit_archive_months).
BEGIN;
SET LOCAL lock_timeout = '5s';

-- The app's row guard (created here on the older schema, which lacks it).
DO $do$
BEGIN
    IF to_regprocedure('prevent_audit_modification()') IS NULL THEN
        CREATE FUNCTION prevent_audit_modification() RETURNS trigger
            LANGUAGE plpgsql AS $fn$
        BEGIN
            RAISE EXCEPTION 'Audit logs are immutable. UPDATE and DELETE operations are not allowed on audit_logs (NLRA compliance).';
            RETURN NULL;
        END;
        $fn$;
    END IF;
END
$do$;

DROP TRIGGER IF EXISTS audit_logs_prevent_update ON audit_logs;
CREATE TRIGGER audit_logs_prevent_update BEFORE UPDATE ON audit_logs
    FOR EACH ROW EXECUTE FUNCTION prevent_audit_modification();

-- Every DELETE is refused before it starts unless an archive delete is
-- in progress; then the statement trigger below checks the rows. (Per
-- statement: a row trigger, even one its WHEN skips, locks each row
-- first, which doubled the cost of a delete.)
DROP TRIGGER IF EXISTS audit_logs_prevent_delete ON audit_logs;
CREATE TRIGGER audit_logs_prevent_delete BEFORE DELETE ON audit_logs
    FOR EACH STATEMENT WHEN (coalesce(current_setting('{{setting}}', true), '') = '')
    EXECUTE FUNCTION prevent_audit_modification();

CREATE OR REPLACE FUNCTION {{ops}}.audit_logs_check_delete() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    m     text := coalesce(current_setting('{{setting}}', true), '');
    first date;
    last  date;
    bad   bigint;
BEGIN
    IF m !~ '^[0-9]{4}-[0-9]{2}([.][.][0-9]{4}-[0-9]{2})?$' THEN
        RAISE EXCEPTION 'Audit logs are immutable. DELETE is allowed only for a month archived and verified by ip2a-ops.';
    END IF;
    -- The setting is anybody's to set: only ip2a-ops's role (the owner of
    -- its state, or a member of that role) may delete.
    IF NOT pg_has_role(session_user, (SELECT relowner FROM pg_class
                                      WHERE oid = '{{ops}}.audit_archive_months'::regclass), 'MEMBER') THEN
        RAISE EXCEPTION 'Audit logs are immutable. DELETE refused: role % is not ip2a-ops.', session_user;
    END IF;
    first := to_date(left(m, 7) || '-01', 'YYYY-MM-DD');
    last := to_date(right(m, 7) || '-01', 'YYYY-MM-DD');
    IF NOT EXISTS (SELECT 1 FROM {{ops}}.audit_archive_months
                    WHERE month BETWEEN first AND last AND state = 'verified') THEN
        RAISE EXCEPTION 'Audit logs are immutable. DELETE refused: month % is not archived and verified by ip2a-ops.', m;
    END IF;
    -- A hash join with the few verified months: a lookup per row cost
    -- twenty times more than the delete itself.
    SELECT count(*) INTO bad FROM old_rows o
      LEFT JOIN (SELECT month::timestamp AS month, min_id, max_id FROM {{ops}}.audit_archive_months
                  WHERE month BETWEEN first AND last AND state = 'verified') a ON a.month = date_trunc('month', o.changed_at)
     WHERE a.month IS NULL OR o.id < a.min_id OR o.id > a.max_id;
    IF bad > 0 THEN
        RAISE EXCEPTION 'Audit logs are immutable. DELETE refused: % rows lie outside the archived and verified months %.', bad, m;
    END IF;
    RETURN NULL;
END;
$fn$;
REVOKE ALL ON FUNCTION {{ops}}.audit_logs_check_delete() FROM PUBLIC;
COMMENT ON FUNCTION {{ops}}.audit_logs_check_delete() IS '{{marker}}';

DROP TRIGGER IF EXISTS audit_logs_guard_delete ON audit_logs;
CREATE TRIGGER audit_logs_guard_delete AFTER DELETE ON audit_logs
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION {{ops}}.audit_logs_check_delete();

CREATE OR REPLACE FUNCTION {{ops}}.audit_logs_refuse_truncate() RETURNS trigger
    LANGUAGE plpgsql AS $fn$
BEGIN
    RAISE EXCEPTION 'Audit logs are immutable. TRUNCATE is not allowed on audit_logs (NLRA compliance).';
END;
$fn$;
REVOKE ALL ON FUNCTION {{ops}}.audit_logs_refuse_truncate() FROM PUBLIC;
COMMENT ON FUNCTION {{ops}}.audit_logs_refuse_truncate() IS '{{marker}}';

DROP TRIGGER IF EXISTS audit_logs_prevent_truncate ON audit_logs;
CREATE TRIGGER audit_logs_prevent_truncate BEFORE TRUNCATE ON audit_logs
    FOR EACH STATEMENT EXECUTE FUNCTION {{ops}}.audit_logs_refuse_truncate();
COMMIT;
`)
}

// GuardStatus says which protections audit_logs has.
type GuardStatus struct {
	// Installed: every part of the guard is present and enabled.
	Installed bool `json:"installed"`
	// AppTrigger: the app's row triggers refuse UPDATE and DELETE (newer
	// schema, or the guard installed).
	AppTrigger bool `json:"app_trigger"`
	// Missing lists the parts of the guard that are absent or disabled.
	Missing []string `json:"missing,omitempty"`
	// Schema is the ops schema the guard checks, when installed.
	Schema string `json:"schema,omitempty"`
	// Version of the installed guard: 2 deletes a range of months per
	// statement; 1 (installed by earlier releases) one month, so Run
	// deletes month by month (install-guard again upgrades it).
	Version int `json:"version,omitempty"`
}

// Guard reports the state of audit_logs' triggers for the ops schema.
func Guard(ctx context.Context, c Config) (GuardStatus, error) {
	c = c.withDefaults()
	rows, err := c.Pool.Query(ctx, `
SELECT t.tgname, pg_get_triggerdef(t.oid), t.tgenabled <> 'D', p.proname, n.nspname, coalesce(obj_description(p.oid, 'pg_proc'), '')
FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE t.tgrelid = to_regclass('audit_logs') AND NOT t.tgisinternal`)
	if err != nil {
		return GuardStatus{}, fmt.Errorf("read audit_logs triggers: %w", err)
	}
	type trig struct {
		def, fn, fnSchema, comment string
		enabled                    bool
	}
	found := map[string]trig{}
	for rows.Next() {
		var name string
		var t trig
		if err := rows.Scan(&name, &t.def, &t.enabled, &t.fn, &t.fnSchema, &t.comment); err != nil {
			rows.Close()
			return GuardStatus{}, err
		}
		found[name] = t
	}
	if err := rows.Err(); err != nil {
		return GuardStatus{}, fmt.Errorf("read audit_logs triggers: %w", err)
	}
	var st GuardStatus
	upd, updOK := found["audit_logs_prevent_update"]
	del, delOK := found["audit_logs_prevent_delete"]
	st.AppTrigger = updOK && delOK && upd.enabled && del.enabled
	check := func(name string, ok bool) {
		if !ok {
			st.Missing = append(st.Missing, name)
		}
	}
	check("audit_logs_prevent_update", updOK && upd.enabled)
	check("audit_logs_prevent_delete (with the archive-delete WHEN clause)", delOK && del.enabled && strings.Contains(del.def, DeleteSetting))
	marked := func(t trig) bool { return t.comment == guardMarker || t.comment == guardMarkerV1 }
	g, ok := found["audit_logs_guard_delete"]
	check("audit_logs_guard_delete (checks against schema "+c.Schema+")", ok && g.enabled && g.fnSchema == c.Schema && marked(g))
	tr, ok := found["audit_logs_prevent_truncate"]
	check("audit_logs_prevent_truncate", ok && tr.enabled && marked(tr))
	st.Installed = len(st.Missing) == 0
	if st.Installed {
		st.Schema, st.Version = c.Schema, 2
		if g.comment == guardMarkerV1 {
			st.Version = 1
		}
	}
	return st, nil
}

// InstallGuard runs GuardSQL and returns the resulting status. The ops
// schema (migration 003) must exist.
func InstallGuard(ctx context.Context, c Config) (GuardStatus, error) {
	c = c.withDefaults()
	if err := c.validate(false); err != nil {
		return GuardStatus{}, err
	}
	if _, err := tableColumns(ctx, c.Pool); err != nil {
		return GuardStatus{}, fmt.Errorf("install guard: %w", err)
	}
	conn, err := c.Pool.Acquire(ctx)
	if err != nil {
		return GuardStatus{}, err
	}
	defer conn.Release()
	// Simple protocol: the script is several statements.
	if _, err := conn.Conn().PgConn().Exec(ctx, GuardSQL(c.Schema)).ReadAll(); err != nil {
		_, _ = conn.Exec(context.Background(), "ROLLBACK")
		return GuardStatus{}, fmt.Errorf("install guard (run it as the owner of audit_logs): %w", err)
	}
	return Guard(ctx, c)
}
