-- How far along a running job is: the latest progress.State its heartbeat
-- carried ({"phase", "unit", "done", "total", "rate_per_second", ...}), kept
-- after the run ends so `jobs show` can tell where a failed run stopped.
ALTER TABLE {{schema}}.runs ADD COLUMN progress jsonb;
