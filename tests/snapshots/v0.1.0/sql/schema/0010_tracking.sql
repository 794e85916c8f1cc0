-- 0010_tracking: first-party tracking (push receipts, e-mail open pixel and click redirect, WebSocket acks).
-- Landed migrations never change: add a new numbered file instead.

-- Tracked events name their delivery: one row per delivery and event, however often a pixel loads,
-- a service worker retries or a client acks. Provider webhooks and the worker leave it NULL.
ALTER TABLE notify.notification_analytics
    ADD COLUMN delivery_id uuid REFERENCES notify.notification_deliveries (id) ON DELETE SET NULL;
COMMENT ON COLUMN notify.notification_analytics.delivery_id IS
    'the delivery a tracked event (receipt, pixel, click, ack) is about; unique per event';
CREATE UNIQUE INDEX notification_analytics_tracked_once_idx
    ON notify.notification_analytics (delivery_id, event) WHERE delivery_id IS NOT NULL;

-- The analytics report reads a range by time and then every event of those notifications.
CREATE INDEX notification_analytics_notification_event_idx
    ON notify.notification_analytics (notification_id, channel, event) WHERE notification_id IS NOT NULL;
