-- audit-archive: one row per calendar month of audit_logs that has an
-- archive (or had one, once purged). The guard installed by
-- `audit-archive install-guard` reads this table (through a SECURITY
-- DEFINER function owned by the ops role) to decide whether a DELETE on
-- audit_logs is allowed, so only the ops role may write it: no grants to
-- PUBLIC or to the app's role.
CREATE TABLE {{schema}}.audit_archive_months (
    month                    date        PRIMARY KEY CHECK (extract(day FROM month) = 1),
    state                    text        NOT NULL CHECK (state IN ('archived', 'verified', 'deleted', 'purged')),
    row_count                bigint      NOT NULL,
    min_id                   bigint      NOT NULL,
    max_id                   bigint      NOT NULL,
    id_sum                   numeric     NOT NULL,
    raw_sha256               text        NOT NULL,
    raw_bytes                bigint      NOT NULL,
    compressed_sha256        text        NOT NULL,
    compressed_bytes         bigint      NOT NULL,
    data_key                 text        NOT NULL,
    manifest_key             text        NOT NULL,
    manifest_sha256          text        NOT NULL,
    previous_manifest_sha256 text        NOT NULL DEFAULT '',
    archived_at              timestamptz NOT NULL DEFAULT now(),
    verified_at              timestamptz,
    deleted_at               timestamptz,
    deleted_rows             bigint,
    purged_at                timestamptz,
    purge_record_key         text
);
REVOKE ALL ON {{schema}}.audit_archive_months FROM PUBLIC;

-- Legal holds: a held month is never purged. Released holds are kept for
-- the record (released_at set); at most one active hold per month.
CREATE TABLE {{schema}}.audit_holds (
    id          bigserial   PRIMARY KEY,
    month       date        NOT NULL CHECK (extract(day FROM month) = 1),
    reason      text        NOT NULL CHECK (reason <> ''),
    held_by     text        NOT NULL DEFAULT current_user,
    held_at     timestamptz NOT NULL DEFAULT now(),
    released_at timestamptz,
    released_by text
);
CREATE UNIQUE INDEX audit_holds_active ON {{schema}}.audit_holds (month) WHERE released_at IS NULL;
REVOKE ALL ON {{schema}}.audit_holds FROM PUBLIC;

-- Every archive purged past retention, with the deletion record written to
-- storage (which also keeps the purged manifest so the chain stays checkable).
CREATE TABLE {{schema}}.audit_purges (
    id              bigserial   PRIMARY KEY,
    month           date        NOT NULL,
    row_count       bigint      NOT NULL,
    manifest_sha256 text        NOT NULL,
    record_key      text        NOT NULL,
    purged_at       timestamptz NOT NULL DEFAULT now(),
    purged_by       text        NOT NULL DEFAULT current_user
);
REVOKE ALL ON {{schema}}.audit_purges FROM PUBLIC;
