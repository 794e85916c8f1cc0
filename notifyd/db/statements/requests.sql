-- What every request runs first (notifyd.db.pool).

-- become_caller --
-- Switches the transaction to the caller's role and claims, so RLS decides what it sees; inside a request, its id
-- goes to notifyd.request_id (read by the jobs it defers) and to application_name (pg_stat_activity, the server log).
-- JIT is off for the transaction: over a partitioned notifications table a per-user read's estimated cost sums
-- every partition and passes jit_above_cost, and compiling it took 10 times as long as running it.
SELECT set_config('role', $1, true), set_config('request.jwt.claims', $2, true), set_config('jit', 'off', true),
       set_config('notifyd.request_id', $3, true),
       set_config('application_name',
                  CASE WHEN $3 = '' THEN current_setting('application_name') ELSE 'notifyd ' || $3 END, true)

-- database_alive --
-- Answers 1 while the database is reachable
SELECT 1

-- replayed_past --
-- On a replica: whether it has replayed the primary's WAL up to LSN $1 (text); false on a server that is no standby
SELECT coalesce(pg_last_wal_replay_lsn() >= $1::text::pg_lsn, false)

-- write_position --
-- On the primary, after a commit: a WAL position at or past that commit, which a replica must replay to show it
SELECT pg_current_wal_insert_lsn()::text
