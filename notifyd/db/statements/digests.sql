-- The digest worker's SQL (notifyd.domain.digests); each runs as notify_worker.

-- claim_due_digests --
-- Claims up to $2 digests due at $1 (NULL: notify.now()); returns the ones this call claimed
SELECT id, user_id, frequency, period_start, status, reason
FROM notify_private.claim_due_digests(coalesce($1::timestamptz, notify.now()), $2::integer)

-- digest_batch_size --
-- How many digests one claiming transaction takes
SELECT notify.setting('digest.batch_size')::integer

-- start_digest --
-- Starts an attempt on a pending digest; its recipient, items and pinned provider, or no row if it is not pending
SELECT id, frequency, period_start, attempts, recipient, items, provider FROM notify_private.start_digest($1::uuid)

-- finish_digest --
-- Records the provider's answer for a digest (sent|retry|failed|skipped) and the provider; its status and attempts
SELECT status, attempts FROM notify_private.finish_digest($1::uuid, $2, $3, $4, $5)
