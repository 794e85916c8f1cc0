-- 0017_dispatch: the ledger is the delivery queue. A send no longer defers one Procrastinate job per
-- channel: it leaves its pending deliveries unqueued and makes sure one dispatcher job is on its way;
-- the dispatcher hands due deliveries to the channels' jobs in batches and stamps them queued.
-- Landed migrations never change: add a new numbered file instead.

ALTER TABLE notify.notification_deliveries ADD COLUMN queued_at timestamptz;
COMMENT ON COLUMN notify.notification_deliveries.queued_at IS
    'when the dispatcher handed this delivery to a channel job; NULL while a pending one waits for the dispatcher';

-- Pending deliveries planned before this migration have their channel jobs already.
UPDATE notify.notification_deliveries SET queued_at = updated_at WHERE status = 'pending';

-- What the dispatcher reads: the unqueued pending deliveries by the time they are due (NULL: at once).
CREATE INDEX notification_deliveries_due_idx
    ON notify.notification_deliveries ((coalesce(scheduled_for, '-infinity'::timestamptz)))
    WHERE status = 'pending' AND queued_at IS NULL;

INSERT INTO notify.settings (key, value, kind, description) VALUES
    ('delivery.dispatch_size', '5000', 'integer',
     'deliveries the dispatcher hands to channel jobs per transaction (it loops until none is due)');
