-- Delivery routes and figures (notifyd.rest.delivery_api, notifyd.rest.health).

-- send_test --
-- Sends the caller a test notification on one channel or all of them (run as the user)
SELECT notify.send_test($1)

-- planned_deliveries --
-- What became of each channel of a notification, as far as the caller may see (run as the caller)
SELECT d.channel, s.kind AS device_kind, d.subscription_id, d.status, d.reason
FROM notify.delivery_decisions_of(ARRAY[$1::uuid]) AS d
LEFT JOIN notify.push_subscriptions AS s ON s.id = d.subscription_id
ORDER BY array_position(notify.channels(), d.channel), d.created_at, d.id

-- delivery_counts --
-- Deliveries by channel, provider and status, with their repeats (run as notify_worker)
SELECT channel, provider, status, deliveries, repeats FROM notify.delivery_counts

-- provider_circuits --
-- Each provider's circuit breaker and error counters, shared by every process (run as notify_worker)
SELECT c.provider, c.state, c.timeouts, c.server_errors FROM notify_private.provider_circuits AS c ORDER BY c.provider

-- queue_depth --
-- Procrastinate jobs waiting and running per queue, and the age of the oldest (run as notify_worker)
SELECT queue, status, jobs, extract(epoch FROM now() - oldest)::float8 AS oldest_age FROM notify.queue_depth

-- pending_figures --
-- How far behind delivery is: the age of the oldest due pending delivery and the LISTEN/NOTIFY queue's use (run as notify_worker)
SELECT extract(epoch FROM now() - min(coalesce(scheduled_for, created_at)))::float8 AS oldest_pending,
       pg_notification_queue_usage() AS notification_queue_usage
FROM notify.notification_deliveries
WHERE status = 'pending' AND coalesce(scheduled_for, created_at) <= now()

-- explain --
-- Every routing decision of a notification, as far as the caller may see (NULL otherwise)
SELECT notify.explain($1)

-- cancel --
-- Cancels a scheduled notification whose send_at is still ahead; false otherwise
SELECT notify.cancel($1)
