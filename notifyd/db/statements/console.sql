-- The operator console's reads and dead-letter batches (notifyd.rest.console_api); all run as the admin, so RLS
-- keeps an org admin to their org.

-- console_activity --
-- Notifications newest first with each channel's status, filtered by user, type, priority, time and a channel's status
SELECT n.id, n.user_id, n.type, n.priority, n.title, n.created_at, notify.delivery_status(n.id) AS channels
FROM notify.notifications AS n
WHERE ($1::uuid IS NULL OR n.user_id = $1)
  AND ($2::text IS NULL OR n.type = $2)
  AND ($3::text IS NULL OR n.priority = $3)
  AND ($4::timestamptz IS NULL OR n.created_at >= $4)
  AND ($5::timestamptz IS NULL OR n.created_at < $5)
  AND ($6::text IS NULL OR EXISTS (SELECT 1 FROM notify.delivery_decisions_of(ARRAY[n.id]) AS d
                                   WHERE d.channel = $6 AND ($7::text IS NULL OR d.status = $7)))
  AND ($6::text IS NOT NULL OR $7::text IS NULL
       OR EXISTS (SELECT 1 FROM notify.delivery_decisions_of(ARRAY[n.id]) AS d WHERE d.status = $7))
ORDER BY n.created_at DESC, n.id DESC
LIMIT $8

-- console_dead_letters --
-- Dead letters newest first with the provider's last answer, filtered by channel and type
SELECT delivery_id, notification_id, user_id, channel, device_kind, type, priority, title, attempts, reason,
       error_message, failed_at
FROM notify.dead_letters
WHERE ($1::text IS NULL OR channel = $1) AND ($2::text IS NULL OR type = $2)
ORDER BY failed_at DESC NULLS LAST, delivery_id
LIMIT $3

-- retry_deliveries --
-- Sends dead letters again, all or none, with one audit row; how many
SELECT notify.retry_deliveries($1)

-- discard_deliveries --
-- Takes dead letters out for good, all or none, with one audit row; how many
SELECT notify.discard_deliveries($1)

-- console_sends --
-- Notifications created per 10 seconds over the last 5 minutes
SELECT date_bin('10 seconds', created_at, timestamptz 'epoch') AS at, count(*)::int AS count
FROM notify.notifications
WHERE created_at > now() - interval '5 minutes'
GROUP BY 1 ORDER BY 1

-- console_deliveries --
-- Deliveries handed to their provider per 10 seconds and channel over the last 5 minutes
SELECT date_bin('10 seconds', sent_at, timestamptz 'epoch') AS at, channel, count(*)::int AS count
FROM notify.notification_deliveries
WHERE sent_at > now() - interval '5 minutes'
GROUP BY 1, 2 ORDER BY 1, 2

-- console_backlog --
-- Pending and dead deliveries, the age of the oldest due one, and the LISTEN/NOTIFY queue's use
SELECT (SELECT count(*) FROM notify.notification_deliveries WHERE status = 'pending')::int AS pending,
       (SELECT extract(epoch FROM now() - min(coalesce(scheduled_for, created_at)))::float8
        FROM notify.notification_deliveries
        WHERE status = 'pending' AND coalesce(scheduled_for, created_at) <= now()) AS oldest_pending_seconds,
       (SELECT count(*) FROM notify.dead_letters)::int AS dead_letters,
       pg_notification_queue_usage() AS notification_queue_usage

-- report_figures --
-- Stores this process's latest samples (run as notify_worker)
SELECT notify_private.report_figures($1, $2, $3::jsonb)

-- console_processes --
-- The processes that reported in the last 15 seconds and their samples (a DBA sees them, an org admin none)
SELECT process, kind, reported_at, samples
FROM notify.process_figures
WHERE reported_at > now() - interval '15 seconds'
ORDER BY process

-- console_settings --
-- Every setting with its kind and meaning (run as the admin)
SELECT key, value, kind, description FROM notify.settings ORDER BY key

-- console_retention --
-- Every retention policy, the default (NULL type) first (run as the admin)
SELECT notification_type, max_age::text AS max_age, max_read_per_user
FROM notify.retention_policies
ORDER BY notification_type NULLS FIRST

-- set_setting --
-- Changes one setting as the caller: 42501 for anyone but a DBA, P0002 for an unknown key
SELECT key, value, kind, description FROM notify.set_setting($1, $2::jsonb)

-- set_retention --
-- Sets one type's retention (NULL: the default) as the caller: 42501 for anyone but a DBA
SELECT notification_type, max_age::text AS max_age, max_read_per_user FROM notify.set_retention($1, $2::text::interval, $3)
