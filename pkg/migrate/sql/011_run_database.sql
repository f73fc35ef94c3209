-- The database a run was started on: the cluster's system identifier and
-- the database's OID. A copy of the database (a restored backup, pg_dump
-- and pg_restore, a cloned environment) has another, so the rows that were
-- running when it was copied are known not to run there: the ledger marks
-- them abandoned at once instead of letting them block their jobs until
-- their heartbeat is stale. NULL on rows from before this column.
ALTER TABLE {{schema}}.runs ADD COLUMN database_id text;
