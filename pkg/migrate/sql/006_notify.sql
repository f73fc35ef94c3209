-- Notifications that could not be delivered when their run ended (endpoint
-- down, SMTP refused): the next run of any job retries them with backoff.
-- Only what is needed to rebuild the message is kept: the target URL or
-- mailbox is looked up again from the configuration at retry time, so no
-- secret (ping URL, webhook token, SMTP password) is ever stored here;
-- target is a redacted description for people.
CREATE TABLE {{schema}}.notifications (
    id              bigserial   PRIMARY KEY,
    job             text        NOT NULL,
    run_id          bigint,
    channel         text        NOT NULL CHECK (channel IN ('ping', 'webhook', 'email')),
    target          text        NOT NULL,
    event           jsonb       NOT NULL,
    state           text        NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'gave_up', 'superseded')),
    attempts        integer     NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT now(),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    last_error      text
);
CREATE INDEX notifications_due ON {{schema}}.notifications (next_attempt_at) WHERE state = 'pending';
CREATE INDEX notifications_job ON {{schema}}.notifications (job, channel, run_id) WHERE state = 'pending';
