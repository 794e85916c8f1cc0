-- E-mail events: an unsubscribe link followed, and what the provider reports about a sent e-mail.

CREATE OR REPLACE FUNCTION notify.unsubscribe_email(user_id uuid, type text) RETURNS void
    LANGUAGE sql
    SECURITY DEFINER
    SET search_path = ''
AS $$
    -- A new row for the type sets only e-mail (the other switches stay inherited) and keeps the
    -- user's global quiet hours and digest times, which a type row replaces as a whole.
    INSERT INTO notify.notification_preferences AS p
        (user_id, notification_type, email_enabled, digest_time, digest_day,
         quiet_hours_start, quiet_hours_end, quiet_hours_days, quiet_hours_windows)
    SELECT unsubscribe_email.user_id, notify.require_type(unsubscribe_email.type), false,
           g.digest_time, g.digest_day, g.quiet_hours_start, g.quiet_hours_end,
           coalesce(g.quiet_hours_days, '[1,2,3,4,5]'), coalesce(g.quiet_hours_windows, '[]')
    FROM (SELECT 1) AS one
    LEFT JOIN notify.notification_preferences AS g
        ON g.user_id = unsubscribe_email.user_id AND g.notification_type IS NULL
    ON CONFLICT (user_id, notification_type) DO UPDATE SET email_enabled = false, updated_at = notify.now()
$$;
ALTER FUNCTION notify.unsubscribe_email(uuid, text) OWNER TO notify_definer;
COMMENT ON FUNCTION notify.unsubscribe_email(uuid, text)
    IS 'turns one type of e-mail off for a user (the unsubscribe link; notifyd checked its signed token)';

CREATE OR REPLACE FUNCTION notify.record_email_event(
    provider_message_id text, event text, event_id text DEFAULT NULL, detail jsonb DEFAULT '{}'
) RETURNS boolean
    LANGUAGE plpgsql
    SET search_path = ''
AS $$
DECLARE
    target record;
    hard constant boolean := record_email_event.event = 'complained'
        OR (record_email_event.event = 'bounced' AND coalesce(detail #>> '{bounce,type}', 'Permanent') = 'Permanent');
BEGIN
    IF record_email_event.event NOT IN ('delivered', 'bounced', 'complained', 'opened', 'clicked', 'failed') THEN
        RAISE EXCEPTION 'event must be delivered, bounced, complained, opened, clicked or failed, got "%"',
            record_email_event.event USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT d.id, d.notification_id, d.user_id, n.type, r.email, r.org_id INTO target
    FROM notify.notification_deliveries AS d
    JOIN notify.notifications AS n ON n.id = d.notification_id
    JOIN notify.recipients AS r ON r.user_id = d.user_id
    WHERE d.channel = 'email' AND d.provider_message_id = record_email_event.provider_message_id
    LIMIT 1;
    IF NOT FOUND THEN
        RETURN false;  -- not ours, or not recorded yet: the event id stays unused so a redelivery applies
    END IF;
    IF record_email_event.event_id IS NOT NULL THEN
        INSERT INTO notify.webhook_events (provider, event_id) VALUES ('resend', record_email_event.event_id)
        ON CONFLICT DO NOTHING;
        IF NOT FOUND THEN
            RETURN false;  -- a redelivery of an event already applied
        END IF;
    END IF;
    UPDATE notify.notification_deliveries AS d SET
        status = CASE record_email_event.event
            WHEN 'delivered' THEN CASE WHEN d.status = 'sent' THEN 'delivered' ELSE d.status END
            WHEN 'bounced' THEN 'bounced' WHEN 'failed' THEN 'failed' ELSE d.status END,
        delivered_at = CASE WHEN record_email_event.event = 'delivered' THEN notify.now() ELSE d.delivered_at END,
        opened_at = CASE WHEN record_email_event.event = 'opened' THEN coalesce(d.opened_at, notify.now()) ELSE d.opened_at END,
        clicked_at = CASE WHEN record_email_event.event = 'clicked' THEN coalesce(d.clicked_at, notify.now()) ELSE d.clicked_at END,
        failed_at = CASE WHEN record_email_event.event IN ('bounced', 'failed') THEN notify.now() ELSE d.failed_at END,
        error_message = CASE WHEN record_email_event.event IN ('bounced', 'failed', 'complained')
                             THEN left(record_email_event.detail::text, 1000) ELSE d.error_message END,
        updated_at = notify.now()
    -- A digest is one e-mail carrying many deliveries: the event applies to all of them.
    WHERE d.channel = 'email' AND d.provider_message_id = record_email_event.provider_message_id;
    INSERT INTO notify.notification_analytics
        (notification_id, notification_type, channel, event, user_id, org_id, metadata)
    SELECT d.notification_id, n.type, 'email', record_email_event.event, d.user_id, target.org_id,
           record_email_event.detail
    FROM notify.notification_deliveries AS d
    JOIN notify.notifications AS n ON n.id = d.notification_id
    WHERE d.channel = 'email' AND d.provider_message_id = record_email_event.provider_message_id;
    IF hard AND record_email_event.event IN ('bounced', 'complained') AND target.email IS NOT NULL THEN
        INSERT INTO notify.email_suppressions (email, reason, detail)
        VALUES (lower(target.email), record_email_event.event, record_email_event.detail)
        ON CONFLICT (email) DO NOTHING;
    END IF;
    RETURN true;
END
$$;
COMMENT ON FUNCTION notify.record_email_event(text, text, text, jsonb)
    IS 'applies a provider''s e-mail event to its deliveries (several for a digest) and analytics; hard bounces and complaints suppress the address';
