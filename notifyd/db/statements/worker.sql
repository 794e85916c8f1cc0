-- The delivery worker's SQL (notifyd.domain.deliveries, notifyd.worker.runner); each runs as notify_worker.

-- claim_deliveries --
-- Starts an attempt on a job's still-pending deliveries and returns what sending needs
SELECT id, channel, attempts, notification, recipient, subscription, vapid_key, unread_count, provider, target
FROM notify_private.claim_deliveries($1::uuid[])

-- record_outcomes --
-- Records the providers' answers; returns each delivery's status after them
SELECT id, status, attempts FROM notify_private.record_outcomes($1::jsonb)

-- retry_policy --
-- The retry timing the DBA set, in seconds
SELECT extract(epoch FROM (notify.setting('delivery.retry_base') #>> '{}')::interval)::float8 AS base,
       extract(epoch FROM (notify.setting('delivery.retry_cap') #>> '{}')::interval)::float8 AS cap

-- current_vapid_key --
-- The VAPID key new subscribers get, if any
SELECT id, public_key, private_key_encrypted FROM notify.current_vapid_key() WHERE id IS NOT NULL

-- lock_vapid_keys --
-- One VAPID maintainer at a time (serve seeding, workers rotating); readers are not blocked; released at commit
LOCK TABLE notify.vapid_keys IN SHARE ROW EXCLUSIVE MODE

-- add_vapid_key --
-- Adds a VAPID key pair (the same public key again is a no-op); returns its id
SELECT notify.add_vapid_key($1, $2)

-- vapid_rotation_due --
-- Whether the current VAPID key is older than vapid.rotate_after, or missing
SELECT notify.vapid_rotation_due()

-- retire_vapid_keys --
-- Retires the VAPID keys nothing uses any more; returns how many
SELECT notify.retire_vapid_keys()

-- release_in_app --
-- Releases held in-app notifications whose time came: their real-time event goes out with a new seq
SELECT notify_private.release_in_app($1::uuid[])

-- dispatch_deliveries --
-- Hands due deliveries to channel jobs, keeps a batch per queue of $3 for dispatcher job $2 to send itself; how many,
-- in how many jobs, when the next is due, whether more are due, what it kept ({queue: [ids]})
SELECT dispatched, jobs, next_due, more, kept FROM notify_private.dispatch_deliveries($1, $2, $3::text[])

-- kept_deliveries --
-- The pending deliveries this dispatcher job kept to send itself (a retry of the job sends them)
SELECT queue, ids FROM notify_private.kept_deliveries($1)

-- waiting_job --
-- The job that waits (todo) with queueing lock $1: it takes over from a dead worker's job with that lock
SELECT id FROM procrastinate.procrastinate_jobs WHERE queueing_lock = $1 AND status = 'todo'

-- adopt_kept_deliveries --
-- The sweep's job takes over what dispatcher jobs that will not run again had kept; how many
SELECT notify_private.adopt_kept_deliveries($1)

-- hand_over_deliveries --
-- A kept batch to be tried again: a channel job carries it, due in $3 seconds
SELECT notify_private.hand_over_deliveries($1, $2::uuid[], $3, $4)

-- transactions_in_progress --
-- The writing transactions open in this database but this one (each holds the lock on its own id): those a dispatcher waits for
SELECT coalesce(array_agg(l.transactionid::text), '{}')
FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid
WHERE l.locktype = 'transactionid' AND l.mode = 'ExclusiveLock' AND a.datname = current_database()
  AND l.pid <> pg_backend_pid()

-- still_in_progress --
-- Which of these transactions are still open
SELECT coalesce(array_agg(x), '{}') FROM unnest($1::text[]) AS x
WHERE EXISTS (SELECT 1 FROM pg_locks AS l WHERE l.locktype = 'transactionid' AND l.transactionid = x::xid)

-- queue_dispatch_followup --
-- A dispatcher run after these transactions end, which no sender counts on (no queueing lock)
SELECT notify_private.defer_jobs(jsonb_build_array(jsonb_build_object(
    'queue', 'dispatch', 'task', 'dispatch_deliveries', 'priority', 10,
    'scheduled_at', now() + make_interval(secs => $2), 'args', jsonb_build_object('awaiting', $1::text[]))))

-- become_queue_worker --
-- Makes one of Procrastinate's transactions notify_worker with Procrastinate's schema on the search_path (its SQL is
-- unqualified), until it ends: through a transaction pooler nothing set for the session stays
SELECT pg_catalog.set_config('role', 'notify_worker', true), pg_catalog.set_config('search_path', 'procrastinate', true)

-- circuit_route --
-- Where a batch's new e-mail goes: provider $1 while its circuit is closed (or for the one half-open probe), else $2
SELECT notify_private.circuit_route($1, $2)

-- circuit_record --
-- Records a batch's answers from provider $1 (successes, timeouts, 5xx) and moves its circuit; its state after
SELECT notify_private.circuit_record($1, $2, $3, $4)
