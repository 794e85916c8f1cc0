-- The analytics report over what the ledger and tracking recorded (061_delivery_ledger.sql, 104_tracking.sql).
--
-- The report counts deliveries, not rows: a delivery is (notification, channel, device); a provider's
-- repeated "opened" webhook or a second pixel load never counts twice. A delivery belongs to the bucket
-- of its first event (normally 'sent') with all its later events, however late, so a bucket's rates
-- describe the notifications sent in it and never pass 100% because an open fell into the next bucket.
--   sent       deliveries with a 'sent' event (the worker's, read from the ledger, for push, e-mail and SMS; in-app has none)
--   delivered  deliveries known to have arrived: 'delivered', or opened/clicked (which prove it)
--   opened     deliveries opened or clicked (a click counts as an open: e-mail clients block pixels,
--              and a push is "opened" by tapping it)
--   clicked    deliveries clicked
--   delivery_rate = delivered / sent
--   open_rate     = opened / delivered, or opened / sent when the bucket has no delivery receipts at
--                   all (FCM push, browsers whose service worker is older); open_basis says which
--   click_rate    = clicked / opened
-- Rates are NULL when their denominator is 0; rounded to 4 decimals.

-- The worker's events of a delivery, read from its ledger row: one it claimed (attempts) and sent, or gave
-- up on before the provider took it (a bounce or a provider's "failed" after sending is a webhook's row).
-- Digests record their own rows; in-app deliveries have none. Inlined (SQL, immutable, no SET clause).
CREATE OR REPLACE FUNCTION notify_private.worker_events(delivery notify.notification_deliveries)
    RETURNS TABLE (event text, at timestamptz)
    LANGUAGE sql IMMUTABLE
    ROWS 1
AS $$
    SELECT e.event, e.at
    FROM (VALUES ('sent', (worker_events.delivery).sent_at),
                 ('failed', CASE WHEN (worker_events.delivery).status = 'failed' AND (worker_events.delivery).sent_at IS NULL
                                 THEN (worker_events.delivery).failed_at END)) AS e(event, at)
    WHERE (worker_events.delivery).channel IN ('push', 'email', 'webhook', 'chat', 'sms') AND (worker_events.delivery).digest_id IS NULL
      AND (worker_events.delivery).attempts > 0 AND e.at IS NOT NULL
$$;
COMMENT ON FUNCTION notify_private.worker_events(notify.notification_deliveries)
    IS 'the sent or failed event the worker''s ledger row of a delivery stands for (none for in-app, digests, unclaimed ones)';

-- A delivery row sent again (a retried dead letter, a woken snooze's push) starts a fresh ledger: the attempts
-- it ends were counted by the report (notify.delivery_events), so they are kept as analytics rows first.
CREATE OR REPLACE FUNCTION notify_private.keep_worker_events(delivery_ids uuid[]) RETURNS void
    LANGUAGE sql
    SET search_path = ''
AS $$
    INSERT INTO notify.notification_analytics
        (notification_id, notification_type, channel, event, user_id, org_id, device_id, created_at)
    SELECT d.notification_id, n.type, d.channel, e.event, d.user_id, r.org_id, d.subscription_id, e.at
    FROM notify.notification_deliveries AS d
    JOIN notify.notifications AS n ON n.id = d.notification_id
    JOIN notify.recipients AS r ON r.user_id = d.user_id
    CROSS JOIN LATERAL notify_private.worker_events(d) AS e
    WHERE d.id = ANY (keep_worker_events.delivery_ids);
$$;
COMMENT ON FUNCTION notify_private.keep_worker_events(uuid[])
    IS 'keeps the sent/failed events of delivery rows about to be sent again as analytics rows (their ledger starts afresh)';

-- The worker writes no analytics row when it sends a delivery or gives up on it: the ledger row says so
-- already (sent_at; status failed), and a row per delivery in notification_analytics cost five index
-- entries and two foreign-key checks per delivery. This view puts the two together.
CREATE OR REPLACE VIEW notify.delivery_events WITH (security_invoker = true) AS
    SELECT a.id, a.notification_id, a.notification_type, a.channel, a.event, a.org_id, a.device_id, a.metadata,
           a.created_at
    FROM notify.notification_analytics AS a
    UNION ALL
    SELECT d.id, d.notification_id, n.type, d.channel, e.event, r.org_id, d.subscription_id, '{}'::jsonb, e.at
    FROM notify.notification_deliveries AS d
    JOIN notify.notifications AS n ON n.id = d.notification_id
    JOIN notify.recipients AS r ON r.user_id = d.user_id
    CROSS JOIN LATERAL notify_private.worker_events(d) AS e;
COMMENT ON VIEW notify.delivery_events
    IS 'delivery, open and click events: notification_analytics, and the worker''s sent and failed deliveries from the ledger';

-- A delivery row that goes takes its sent/failed event along: its count stays, as an anonymous row (no
-- notification, user or device), like the analytics rows of a removed notification. Deliveries removed with
-- their notification (retention; they cascade) are kept before it goes, while its type can still be read;
-- deliveries removed on their own (erasure removes them first) when they go.
CREATE OR REPLACE FUNCTION notify_private.keep_delivery_events() RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = ''
AS $$
BEGIN
    -- Row level: a notification (fired on its partition, whose name is not the table's); statement level: deliveries.
    IF TG_LEVEL = 'ROW' THEN
        INSERT INTO notify.notification_analytics (notification_type, channel, event, org_id, created_at)
        SELECT OLD.type, d.channel, e.event, r.org_id, e.at
        FROM notify.notification_deliveries AS d
        LEFT JOIN notify.recipients AS r ON r.user_id = d.user_id
        CROSS JOIN LATERAL notify_private.worker_events(d) AS e
        WHERE d.notification_id = OLD.id;
        RETURN OLD;
    END IF;
    INSERT INTO notify.notification_analytics (notification_type, channel, event, org_id, created_at)
    SELECT n.type, d.channel, e.event, r.org_id, e.at
    FROM gone_deliveries AS d
    JOIN notify.notifications AS n ON n.id = d.notification_id
    LEFT JOIN notify.recipients AS r ON r.user_id = d.user_id
    CROSS JOIN LATERAL notify_private.worker_events(d) AS e;
    RETURN NULL;
END
$$;
ALTER FUNCTION notify_private.keep_delivery_events() OWNER TO notify_definer;
COMMENT ON FUNCTION notify_private.keep_delivery_events()
    IS 'keeps the sent/failed events of removed deliveries as anonymous analytics rows';

CREATE OR REPLACE TRIGGER notification_deliveries_keep_events AFTER DELETE ON notify.notification_deliveries
    REFERENCING OLD TABLE AS gone_deliveries
    FOR EACH STATEMENT EXECUTE FUNCTION notify_private.keep_delivery_events();
COMMENT ON TRIGGER notification_deliveries_keep_events ON notify.notification_deliveries
    IS 'keeps the sent/failed events of deliveries removed on their own in notification_analytics';

CREATE OR REPLACE TRIGGER notifications_keep_delivery_events BEFORE DELETE ON notify.notifications
    FOR EACH ROW EXECUTE FUNCTION notify_private.keep_delivery_events();
COMMENT ON TRIGGER notifications_keep_delivery_events ON notify.notifications
    IS 'keeps the sent/failed events of a removed notification''s deliveries in notification_analytics';

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
        SELECT DISTINCT a.notification_id FROM notify.delivery_events AS a
        WHERE a.created_at >= analytics.from_at AND a.created_at < analytics.to_at AND a.notification_id IS NOT NULL
    ), events AS (
        SELECT a.id, a.notification_id, a.notification_type, a.channel, a.device_id, a.event, a.created_at
        FROM notify.delivery_events AS a JOIN touched AS t ON t.notification_id = a.notification_id
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
