-- The analytics report over what tracking recorded (104_tracking.sql).
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
