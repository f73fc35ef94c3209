-- The run ledger: one row per run of any job, whatever started it.
CREATE TABLE {{schema}}.runs (
    id           bigserial PRIMARY KEY,
    job          text        NOT NULL,
    trigger      text        NOT NULL,
    host         text        NOT NULL,
    pid          integer     NOT NULL,
    args         jsonb       NOT NULL DEFAULT '[]',
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    state        text        NOT NULL CHECK (state IN ('running', 'succeeded', 'failed', 'skipped', 'interrupted', 'abandoned')),
    exit_code    integer,
    error        text,
    summary      jsonb,
    slot         timestamptz
);
-- At most one active run per job, across every host sharing the database.
CREATE UNIQUE INDEX runs_one_running ON {{schema}}.runs (job) WHERE state = 'running';
CREATE INDEX runs_job_started ON {{schema}}.runs (job, started_at DESC);
CREATE INDEX runs_started ON {{schema}}.runs (started_at DESC);
