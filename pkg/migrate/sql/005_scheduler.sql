-- Slot claims of the built-in scheduler: one row per (crontab entry,
-- scheduled instant), inserted with ON CONFLICT DO NOTHING by whichever
-- daemon gets there first, so several daemons on one database run each slot
-- once. kind says whether the slot ran on time or as a catch-up.
CREATE TABLE {{schema}}.slot_claims (
    entry      text        NOT NULL,
    job        text        NOT NULL,
    slot       timestamptz NOT NULL,
    kind       text        NOT NULL CHECK (kind IN ('scheduled', 'catchup')),
    host       text        NOT NULL,
    pid        integer     NOT NULL,
    claimed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (entry, slot)
);
CREATE INDEX slot_claims_claimed ON {{schema}}.slot_claims (claimed_at);
-- Catch-up asks "did this job run since slot S?", by job and slot.
CREATE INDEX runs_job_slot ON {{schema}}.runs (job, slot) WHERE slot IS NOT NULL;
