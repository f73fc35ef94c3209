-- The queue task a run served (River's river_job.id), so a task's status
-- and the run ledger point at each other: `tasks status` shows the run id
-- in its output, `jobs show` the task id. NULL for runs not started by a
-- worker.
ALTER TABLE {{schema}}.runs ADD COLUMN task_id bigint;
CREATE INDEX runs_task ON {{schema}}.runs (task_id) WHERE task_id IS NOT NULL;
