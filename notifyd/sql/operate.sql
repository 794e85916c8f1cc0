-- The operators' commands: notifyd send, explain, status (notifyd.operate).

-- dead_letter_count --
-- How many deliveries failed for good (run as notify_worker)
SELECT count(*) FROM notify.dead_letters

-- oldest_pending_delivery --
-- When the oldest delivery still waiting to go out was planned, and how many wait (run as notify_worker)
SELECT min(created_at) AS oldest, count(*) AS pending
FROM notify.notification_deliveries
WHERE status = 'pending'
