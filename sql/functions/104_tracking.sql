-- Tracking: what reached the user and was opened, clicked or acted on.
--
-- Every first-party tracked event (push receipts from the service worker, the e-mail open
-- pixel and click redirect, WebSocket acks) goes through notify_private.record_event: one row per
-- delivery and event (the unique index of 0010), and the delivery's delivered_at / opened_at /
-- clicked_at stamped once. A click proves the open, so it stamps opened_at too.

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
            OR target.channel = 'email' AND record_event.event IN ('opened', 'clicked')
            -- A chat message's link button goes through the click redirect.
            OR target.channel = 'chat' AND record_event.event = 'clicked') THEN
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

-- It creates the row now: plpgsql and volatile, no longer SQL and stable.
DROP FUNCTION IF EXISTS notify_private.in_app_delivery(uuid, uuid);
CREATE FUNCTION notify_private.in_app_delivery(notification_id uuid, user_id uuid) RETURNS uuid
    LANGUAGE plpgsql
    SET search_path = ''
AS $$
#variable_conflict use_column
DECLARE
    found_id uuid;
BEGIN
    SELECT d.id INTO found_id FROM notify.notification_deliveries AS d
    WHERE d.notification_id = in_app_delivery.notification_id AND d.user_id = in_app_delivery.user_id
      AND d.channel = 'in_app';
    IF FOUND THEN
        RETURN found_id;
    END IF;
    -- An in-app delivery that went at once has no row (its notification is its record) until the first
    -- event tracked of it: the row is made here, sent when the notification was created. A concurrent
    -- first ack made it already: the unique index leaves it to that one, and it is read again.
    INSERT INTO notify.notification_deliveries AS d (notification_id, user_id, channel, status, sent_at)
    SELECT n.id, n.user_id, 'in_app', 'sent', n.created_at
    FROM notify.notifications AS n
    WHERE n.id = in_app_delivery.notification_id AND n.created_at >= notify_private.created_from(in_app_delivery.notification_id) AND n.created_at < notify_private.created_before(in_app_delivery.notification_id) AND n.user_id = in_app_delivery.user_id
      AND (n.channels IS NULL OR 'in_app' = ANY (n.channels))
    ON CONFLICT (notification_id, channel, subscription_id, target_id) DO NOTHING
    RETURNING d.id INTO found_id;
    IF found_id IS NULL THEN
        SELECT d.id INTO found_id FROM notify.notification_deliveries AS d
        WHERE d.notification_id = in_app_delivery.notification_id AND d.user_id = in_app_delivery.user_id
          AND d.channel = 'in_app';
    END IF;
    RETURN found_id;
END
$$;
COMMENT ON FUNCTION notify_private.in_app_delivery(uuid, uuid)
    IS 'the in-app delivery of a user''s notification (what a WebSocket ack is about), made at the first ack if it went at once; NULL if none';
