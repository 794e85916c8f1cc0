-- 0019_worker_ledger: the worker no longer writes an analytics row per delivery it sends or gives up on;
-- the analytics report reads those events from the ledger (notify.delivery_events). The rows it wrote before
-- would count twice where the report counts rows (notify.org_delivery_stats): the ledger stands for them now.
-- Landed migrations never change: add a new numbered file instead.

DELETE FROM notify.notification_analytics AS a
USING notify.notification_deliveries AS d
WHERE a.delivery_id IS NULL AND a.metadata = '{}' AND a.channel IN ('push', 'email')
  AND d.notification_id = a.notification_id AND d.channel = a.channel
  AND d.subscription_id IS NOT DISTINCT FROM a.device_id
  AND d.digest_id IS NULL AND d.attempts > 0
  AND (a.event = 'sent' AND d.sent_at IS NOT NULL
       OR a.event = 'failed' AND d.status = 'failed' AND d.sent_at IS NULL);

-- The dispatcher sends the first batch of each channel itself, without a channel job in between; a delivery
-- it keeps names its job, so that a retry of that job (its worker died) sends what it had not finished.
ALTER TABLE notify.notification_deliveries ADD COLUMN dispatched_by bigint;
COMMENT ON COLUMN notify.notification_deliveries.dispatched_by IS
    'the dispatcher job (procrastinate_jobs.id) that sends this delivery itself; NULL: a channel job carries it';
