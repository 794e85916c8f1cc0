-- Tracking (what reached and was opened, clicked or acted on) and the analytics report over it.
--
-- Recording: every first-party tracked event (push receipts from the service worker, the e-mail open
-- pixel and click redirect, WebSocket acks) goes through notify_private.record_event: one row per
-- delivery and event (the unique index of 0010), and the delivery's delivered_at / opened_at /
-- clicked_at stamped once. A click proves the open, so it stamps opened_at too.
--
-- The report counts deliveries, not rows: a delivery is (notification, channel, device); a provider's
-- repeated "opened" webhook or a second pixel load never counts twice. A delivery belongs to the bucket
-- of its first event (normally 'sent') with all its later events, however late, so a bucket's rates
-- describe the notifications sent in it and never pass 100% because an open fell into the next bucket.
--   sent       deliveries with a 'sent' event (the worker records it for push and e-mail; in-app has none)
--   delivered  deliveries known to have arrived: 'delivered', or opened/clicked (which prove it)
--   opened     deliveries opened or clicked (a click counts as an open: e-mail clients block pixels,
--              and a push is "opened" by tapping it)
--   clicked    deliveries clicked
--   delivery_rate = delivered / sent
--   open_rate     = opened / delivered, or opened / sent when the bucket has no delivery receipts at
--                   all (FCM push, browsers whose service worker is older); open_basis says which
--   click_rate    = clicked / opened
-- Rates are NULL when their denominator is 0; rounded to 4 decimals.

CREATE OR REPLACE FUNCTION notify_private.record_event(
    delivery_id uuid, notification_id uuid, user_id uuid, event text, metadata jsonb DEFAULT '{}'
) RETURNS boolean
    LANGUAGE plpgsql
    SET search_path = ''
AS $$
#variable_conflict use_column
DECLARE
    target record;
BEGIN
    IF record_event.event IS NULL OR record_event.event NOT IN ('delivered', 'opened', 'clicked') THEN
        RAISE EXCEPTION 'a tracked event is delivered, opened or clicked, got "%"', record_event.event
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT d.id, d.channel, d.subscription_id, n.type, r.org_id INTO target
    FROM notify.notification_deliveries AS d
    JOIN notify.notifications AS n ON n.id = d.notification_id
    JOIN notify.recipients AS r ON r.user_id = d.user_id
    WHERE d.id = record_event.delivery_id AND d.notification_id = record_event.notification_id
      AND d.user_id = record_event.user_id;
    IF NOT FOUND THEN
        RETURN NULL;  -- erased, retained away, or not this user's
    END IF;
    IF NOT (target.channel = 'in_app' AND record_event.event = 'delivered'
            OR target.channel = 'push' AND record_event.event IN ('delivered', 'clicked')
            OR target.channel = 'email' AND record_event.event IN ('opened', 'clicked')) THEN
        RAISE EXCEPTION 'an % delivery is not tracked as %', target.channel, record_event.event
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO notify.notification_analytics
        (notification_id, notification_type, channel, event, user_id, org_id, device_id, delivery_id, metadata)
    VALUES (record_event.notification_id, target.type, target.channel, record_event.event, record_event.user_id,
            target.org_id, target.subscription_id, target.id, coalesce(record_event.metadata, '{}'))
    ON CONFLICT (delivery_id, event) WHERE delivery_id IS NOT NULL DO NOTHING;
    IF NOT FOUND THEN
        RETURN false;  -- recorded before: a retry, a second pixel load, a second ack
    END IF;
    UPDATE notify.notification_deliveries AS d SET
        status = CASE WHEN record_event.event = 'delivered' AND d.status = 'sent' THEN 'delivered' ELSE d.status END,
        delivered_at = CASE WHEN record_event.event = 'delivered' THEN coalesce(d.delivered_at, notify.now())
                            ELSE d.delivered_at END,
        opened_at = CASE WHEN record_event.event IN ('opened', 'clicked') THEN coalesce(d.opened_at, notify.now())
                         ELSE d.opened_at END,
        clicked_at = CASE WHEN record_event.event = 'clicked' THEN coalesce(d.clicked_at, notify.now())
                          ELSE d.clicked_at END,
        updated_at = notify.now()
    WHERE d.id = target.id;
    RETURN true;
END
$$;
COMMENT ON FUNCTION notify_private.record_event(uuid, uuid, uuid, text, jsonb)
    IS 'records a tracked event of a delivery once (true), or not again (false); NULL when the delivery is gone';

CREATE OR REPLACE FUNCTION notify_private.in_app_delivery(notification_id uuid, user_id uuid) RETURNS uuid
    LANGUAGE sql STABLE
    SET search_path = ''
AS $$
    SELECT d.id FROM notify.notification_deliveries AS d
    WHERE d.notification_id = in_app_delivery.notification_id AND d.user_id = in_app_delivery.user_id
      AND d.channel = 'in_app'
$$;
COMMENT ON FUNCTION notify_private.in_app_delivery(uuid, uuid)
    IS 'the in-app delivery of a user''s notification (what a WebSocket ack is about), NULL if none';

CREATE OR REPLACE FUNCTION notify.analytics(from_at timestamptz, to_at timestamptz, bucket text DEFAULT 'day')
    RETURNS TABLE (
        bucket_start timestamptz, notification_type text, channel text,
        sent bigint, delivered bigint, opened bigint, clicked bigint, bounced bigint, failed bigint, complained bigint,
        delivery_rate numeric, open_rate numeric, open_basis text, click_rate numeric
    )
    LANGUAGE plpgsql STABLE
    SET search_path = ''
AS $$
BEGIN
    IF analytics.bucket IS NULL OR analytics.bucket NOT IN ('hour', 'day', 'week', 'month') THEN
        RAISE EXCEPTION 'bucket must be hour, day, week or month, got "%"', analytics.bucket
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF analytics.from_at IS NULL OR analytics.to_at IS NULL OR analytics.from_at >= analytics.to_at THEN
        RAISE EXCEPTION 'from must be before to' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- As the caller: row-level security decides whose events count (an org admin: their org).
    RETURN QUERY
    WITH touched AS (
        SELECT DISTINCT a.notification_id FROM notify.notification_analytics AS a
        WHERE a.created_at >= analytics.from_at AND a.created_at < analytics.to_at AND a.notification_id IS NOT NULL
    ), events AS (
        SELECT a.id, a.notification_id, a.notification_type, a.channel, a.device_id, a.event, a.created_at
        FROM notify.notification_analytics AS a JOIN touched AS t ON t.notification_id = a.notification_id
        UNION ALL
        -- Events whose notification is gone stand alone.
        SELECT a.id, a.notification_id, a.notification_type, a.channel, a.device_id, a.event, a.created_at
        FROM notify.notification_analytics AS a
        WHERE a.notification_id IS NULL AND a.created_at >= analytics.from_at AND a.created_at < analytics.to_at
    ), deliveries AS (
        SELECT e.notification_type, e.channel, min(e.created_at) AS first_at,
               bool_or(e.event = 'sent') AS sent,
               bool_or(e.event IN ('delivered', 'opened', 'clicked')) AS delivered,
               bool_or(e.event IN ('opened', 'clicked')) AS opened,
               bool_or(e.event = 'clicked') AS clicked,
               bool_or(e.event = 'bounced') AS bounced,
               bool_or(e.event = 'failed') AS failed,
               bool_or(e.event = 'complained') AS complained
        FROM events AS e
        GROUP BY coalesce(e.notification_id, e.id), e.notification_type, e.channel, e.device_id
    ), counted AS (
        SELECT pg_catalog.date_trunc(analytics.bucket, d.first_at, 'UTC') AS bucket_start,
               d.notification_type, d.channel,
               count(*) FILTER (WHERE d.sent) AS sent,
               count(*) FILTER (WHERE d.delivered) AS delivered,
               count(*) FILTER (WHERE d.opened) AS opened,
               count(*) FILTER (WHERE d.clicked) AS clicked,
               count(*) FILTER (WHERE d.bounced) AS bounced,
               count(*) FILTER (WHERE d.failed) AS failed,
               count(*) FILTER (WHERE d.complained) AS complained
        FROM deliveries AS d
        WHERE d.first_at >= analytics.from_at AND d.first_at < analytics.to_at
        GROUP BY 1, 2, 3
    )
    SELECT c.bucket_start, c.notification_type, c.channel,
           c.sent, c.delivered, c.opened, c.clicked, c.bounced, c.failed, c.complained,
           round(c.delivered::numeric / nullif(c.sent, 0), 4),
           round(c.opened::numeric / nullif(CASE WHEN c.delivered > 0 THEN c.delivered ELSE c.sent END, 0), 4),
           CASE WHEN c.delivered > 0 THEN 'delivered' WHEN c.sent > 0 THEN 'sent' END,
           round(c.clicked::numeric / nullif(c.opened, 0), 4)
    FROM counted AS c
    ORDER BY c.bucket_start, c.notification_type, c.channel;
END
$$;
COMMENT ON FUNCTION notify.analytics(timestamptz, timestamptz, text)
    IS 'delivery, open and click counts and rates per bucket (hour/day/week/month, UTC), type and channel, as the caller sees them';

CREATE OR REPLACE VIEW notify.analytics_daily WITH (security_invoker = true) AS
    SELECT * FROM notify.analytics('-infinity', 'infinity', 'day');
COMMENT ON VIEW notify.analytics_daily IS 'notify.analytics per UTC day over all time, as the querying role sees it';

CREATE OR REPLACE VIEW notify.analytics_monthly WITH (security_invoker = true) AS
    SELECT * FROM notify.analytics('-infinity', 'infinity', 'month');
COMMENT ON VIEW notify.analytics_monthly IS 'notify.analytics per UTC month over all time, as the querying role sees it';
