-- The operators' commands: notifyd send, explain, status (notifyd.operate).

-- dead_letter_count --
-- How many deliveries failed for good (run as notify_worker)
SELECT count(*) FROM notify.dead_letters

-- waiting_deliveries --
-- Deliveries not out yet, pending (due now) and held (quiet hours, e-mail delay, limits), and the oldest of each
SELECT count(*) FILTER (WHERE status = 'pending') AS pending,
       min(created_at) FILTER (WHERE status = 'pending') AS oldest_pending,
       count(*) FILTER (WHERE status = 'held') AS held,
       min(created_at) FILTER (WHERE status = 'held') AS oldest_held
FROM notify.notification_deliveries
WHERE status IN ('pending', 'held')
