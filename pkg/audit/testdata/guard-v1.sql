-- The guard as earlier releases installed it (version 1: one month per
-- statement, refused row by row), for the test that Run still deletes
-- with it.
-- ip2a-ops audit guard v1: audit_logs stays immutable; ip2a-ops may delete only
-- rows of a month it has archived and verified ("ip2a_ops".audit_archive_months).
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

-- Every DELETE is refused row by row unless an archive delete is in
-- progress; then the statement trigger below checks the rows.
DROP TRIGGER IF EXISTS audit_logs_prevent_delete ON audit_logs;
CREATE TRIGGER audit_logs_prevent_delete BEFORE DELETE ON audit_logs
    FOR EACH ROW WHEN (coalesce(current_setting('ip2a_ops.archive_delete', true), '') = '')
    EXECUTE FUNCTION prevent_audit_modification();

CREATE OR REPLACE FUNCTION "ip2a_ops".audit_logs_check_delete() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    m   text := coalesce(current_setting('ip2a_ops.archive_delete', true), '');
    a   record;
    bad bigint;
BEGIN
    IF m !~ '^[0-9]{4}-[0-9]{2}$' THEN
        RAISE EXCEPTION 'Audit logs are immutable. DELETE is allowed only for a month archived and verified by ip2a-ops.';
    END IF;
    -- The setting is anybody's to set: only ip2a-ops's role (the owner of
    -- its state, or a member of that role) may delete.
    IF NOT pg_has_role(session_user, (SELECT relowner FROM pg_class
                                      WHERE oid = '"ip2a_ops".audit_archive_months'::regclass), 'MEMBER') THEN
        RAISE EXCEPTION 'Audit logs are immutable. DELETE refused: role % is not ip2a-ops.', session_user;
    END IF;
    SELECT month, min_id, max_id INTO a FROM "ip2a_ops".audit_archive_months
     WHERE month = to_date(m || '-01', 'YYYY-MM-DD') AND state = 'verified';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'Audit logs are immutable. DELETE refused: month % is not archived and verified by ip2a-ops.', m;
    END IF;
    SELECT count(*) INTO bad FROM old_rows o
     WHERE NOT (o.changed_at >= a.month AND o.changed_at < a.month + interval '1 month'
                AND o.id BETWEEN a.min_id AND a.max_id);
    IF bad > 0 THEN
        RAISE EXCEPTION 'Audit logs are immutable. DELETE refused: % rows lie outside archived month %.', bad, m;
    END IF;
    RETURN NULL;
END;
$fn$;
REVOKE ALL ON FUNCTION "ip2a_ops".audit_logs_check_delete() FROM PUBLIC;
COMMENT ON FUNCTION "ip2a_ops".audit_logs_check_delete() IS 'ip2a-ops audit guard v1';

DROP TRIGGER IF EXISTS audit_logs_guard_delete ON audit_logs;
CREATE TRIGGER audit_logs_guard_delete AFTER DELETE ON audit_logs
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION "ip2a_ops".audit_logs_check_delete();

CREATE OR REPLACE FUNCTION "ip2a_ops".audit_logs_refuse_truncate() RETURNS trigger
    LANGUAGE plpgsql AS $fn$
BEGIN
    RAISE EXCEPTION 'Audit logs are immutable. TRUNCATE is not allowed on audit_logs (NLRA compliance).';
END;
$fn$;
REVOKE ALL ON FUNCTION "ip2a_ops".audit_logs_refuse_truncate() FROM PUBLIC;
COMMENT ON FUNCTION "ip2a_ops".audit_logs_refuse_truncate() IS 'ip2a-ops audit guard v1';

DROP TRIGGER IF EXISTS audit_logs_prevent_truncate ON audit_logs;
CREATE TRIGGER audit_logs_prevent_truncate BEFORE TRUNCATE ON audit_logs
    FOR EACH STATEMENT EXECUTE FUNCTION "ip2a_ops".audit_logs_refuse_truncate();
COMMIT;
