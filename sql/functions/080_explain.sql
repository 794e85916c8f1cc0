-- Why a notification went where it went, and taking back a scheduled one.

CREATE OR REPLACE FUNCTION notify.explain(notification_id uuid) RETURNS jsonb
    LANGUAGE sql STABLE
    SET search_path = ''
AS $$
    -- Runs as the caller: RLS decides whether they may see the notification and its deliveries.
    SELECT pg_catalog.jsonb_build_object(
        'notification_id', n.id, 'user_id', n.user_id, 'type', n.type, 'priority', n.priority,
        'created_at', n.created_at, 'send_at', n.send_at, 'expires_at', n.expires_at, 'read_at', n.read_at,
        'deleted_at', n.deleted_at, 'group_key', n.group_key, 'group_count', n.group_count,
        'channels_asked', n.channels,
        'rule', CASE WHEN n.decisions ? 'escalation'
            THEN 'escalation chain: each step on its channel at its time, a later one only while the notification '
                 'is unseen (or unread); it replaces the channels of priority ' || n.priority
            ELSE CASE n.priority
            WHEN 'critical' THEN 'critical: every channel at once; the user''s own switches and digest do not hold it'
            WHEN 'low' THEN 'low: in-app; e-mail only in digests; no push; webhooks, no chat'
            ELSE n.priority || ': in-app and push at once; e-mail instant or by digest, as the user prefers; '
                 || 'webhooks and chat (held for quiet hours) to the user''s and org''s endpoints and connections' END END,
        -- Each step: when it was planned for, and what became of it (run, cancelled because seen or read at ...).
        'escalation', (
            SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                       'step', s.position, 'channel', s.step ->> 'channel', 'after', s.step ->> 'after',
                       'unless', s.step ->> 'unless',
                       'planned_for', greatest(n.send_at, n.created_at) + (s.step ->> 'after')::interval,
                       'scheduled_for', o.scheduled_for,
                       'state', CASE o.status WHEN 'pending' THEN 'planned' WHEN 'sent' THEN 'run'
                                              WHEN 'delivered' THEN 'run' ELSE o.status END,
                       'reason', o.reason, 'run_at', o.sent_at,
                       'cancelled_at', CASE WHEN o.status = 'cancelled' THEN o.updated_at END)
                   ORDER BY s.position)
            FROM pg_catalog.jsonb_array_elements(n.decisions -> 'escalation') WITH ORDINALITY AS s(step, position)
            -- Push has a delivery per device: a step shows its furthest-along one.
            LEFT JOIN LATERAL (
                SELECT d.status, d.reason, d.scheduled_for, d.sent_at, d.updated_at
                FROM notify.delivery_decisions_of(ARRAY[n.id]) AS d
                WHERE d.channel = s.step ->> 'channel'
                ORDER BY notify.delivery_rank(d.status)
                LIMIT 1) AS o ON true),
        'decisions', coalesce((
            SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                       'channel', d.channel, 'subscription_id', d.subscription_id,
                       'status', d.status, 'reason', d.reason, 'scheduled_for', d.scheduled_for,
                       'attempts', d.attempts, 'repeats', d.repeats, 'error', d.error_message,
                       'sent_at', d.sent_at, 'delivered_at', d.delivered_at, 'opened_at', d.opened_at,
                       'clicked_at', d.clicked_at, 'failed_at', d.failed_at, 'decided_at', d.created_at,
                       'provider', d.provider)
                   ORDER BY pg_catalog.array_position(notify.channels(), d.channel), d.created_at)
            FROM notify.delivery_decisions_of(ARRAY[n.id]) AS d), '[]'::jsonb),
        'folds', coalesce((
            SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                       'title', f.title, 'group_count', f.group_count, 'folded_at', f.folded_at,
                       'reason', 'folded into this group (same user, type and group_key within aggregation.window '
                                 'of its first notification): no deliveries of its own')
                   ORDER BY f.folded_at)
            FROM notify.notification_folds AS f
            WHERE f.notification_id = n.id), '[]'::jsonb),
        -- Where new e-mail goes now, and why (a provider's circuit open after its failures).
        'providers', notify.provider_circuits())
    FROM notify.notifications AS n
    WHERE n.id = explain.notification_id AND n.created_at >= notify_private.created_from(explain.notification_id) AND n.created_at < notify_private.created_before(explain.notification_id)
$$;
COMMENT ON FUNCTION notify.explain(uuid)
    IS 'every routing decision of a notification and its reason, as far as the caller may see; NULL if not visible';

CREATE OR REPLACE FUNCTION notify.cancel(notification_id uuid) RETURNS boolean
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = ''
AS $$
DECLARE
    target record;
BEGIN
    SELECT n.id, n.user_id, n.send_at INTO target
    FROM notify.notifications AS n
    WHERE n.id = cancel.notification_id AND n.created_at >= notify_private.created_from(cancel.notification_id) AND n.created_at < notify_private.created_before(cancel.notification_id) AND n.deleted_at IS NULL
      AND n.send_at > notify.now()
      -- Services cancel what they sent anywhere; an org admin only in their org (the session's role, not ours).
      AND (pg_catalog.current_setting('role') <> 'notify_admin' OR notify.in_admin_scope(n.user_id))
    FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;  -- unknown, not scheduled, already fired or already cancelled
    END IF;
    UPDATE notify.notification_deliveries AS d
    SET status = 'cancelled', reason = 'cancelled before it was sent', updated_at = notify.now()
    WHERE d.notification_id = target.id AND d.status IN ('pending', 'held');
    UPDATE notify.notifications AS n SET deleted_at = notify.now() WHERE n.id = target.id AND n.created_at >= notify_private.created_from(target.id) AND n.created_at < notify_private.created_before(target.id);
    RETURN true;
END
$$;
ALTER FUNCTION notify.cancel(uuid) OWNER TO notify_definer;
COMMENT ON FUNCTION notify.cancel(uuid)
    IS 'cancels a scheduled notification (send_at still ahead): its deliveries end cancelled and it leaves the center';

CREATE OR REPLACE FUNCTION notify.cancel(user_id uuid, idempotency_key text) RETURNS boolean
    LANGUAGE sql
    SET search_path = ''
AS $$
    SELECT coalesce((SELECT notify.cancel(n.id) FROM notify.notifications AS n
                     WHERE n.user_id = cancel.user_id AND n.idempotency_key = cancel.idempotency_key), false)
$$;
COMMENT ON FUNCTION notify.cancel(uuid, text)
    IS 'cancels a scheduled notification by the idempotency key it was sent with';
