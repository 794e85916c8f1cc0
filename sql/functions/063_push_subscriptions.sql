-- Push subscriptions: a user's devices, and a browser's re-subscription moving one.

CREATE OR REPLACE FUNCTION notify.save_push_subscription(
    kind text, endpoint text, p256dh_key text, auth_key text, fcm_token text, token_hash bytea,
    vapid_key_id uuid, device_info jsonb
) RETURNS notify.push_subscriptions
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = ''
AS $$
#variable_conflict use_column
DECLARE
    saved notify.push_subscriptions;
BEGIN
    IF notify.current_user_id() IS NULL THEN
        RAISE EXCEPTION 'a push subscription belongs to the calling user: request.jwt.claims has no user sub'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    INSERT INTO notify.recipients (user_id) VALUES (notify.current_user_id()) ON CONFLICT DO NOTHING;
    -- The same device subscribing again is one row, owned by whoever subscribed last.
    INSERT INTO notify.push_subscriptions AS s
        (user_id, kind, endpoint, p256dh_key, auth_key, fcm_token, token_hash, vapid_key_id, device_info)
    VALUES (notify.current_user_id(), save_push_subscription.kind, save_push_subscription.endpoint,
            save_push_subscription.p256dh_key, save_push_subscription.auth_key, save_push_subscription.fcm_token,
            save_push_subscription.token_hash, save_push_subscription.vapid_key_id,
            coalesce(save_push_subscription.device_info, '{}'))
    ON CONFLICT (token_hash) WHERE token_hash IS NOT NULL DO UPDATE SET
        user_id = EXCLUDED.user_id, kind = EXCLUDED.kind, endpoint = EXCLUDED.endpoint,
        p256dh_key = EXCLUDED.p256dh_key, auth_key = EXCLUDED.auth_key, fcm_token = EXCLUDED.fcm_token,
        vapid_key_id = EXCLUDED.vapid_key_id, device_info = EXCLUDED.device_info,
        is_active = true, failure_count = 0, deactivated_reason = NULL, created_at = notify.now()
    RETURNING s.* INTO saved;
    RETURN saved;
END
$$;
ALTER FUNCTION notify.save_push_subscription(text, text, text, text, text, bytea, uuid, jsonb) OWNER TO notify_definer;
COMMENT ON FUNCTION notify.save_push_subscription(text, text, text, text, text, bytea, uuid, jsonb)
    IS 'saves the caller''s device (keys and token already encrypted by notifyd); the same device again moves to the caller';

CREATE OR REPLACE FUNCTION notify_private.move_push_subscription(
    id uuid, user_id uuid, old_token_hash bytea, endpoint text, p256dh_key text, auth_key text, token_hash bytea,
    vapid_key_id uuid
) RETURNS uuid
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = ''
AS $$
BEGIN
    -- Only the live Web Push device the subscription token names, still at the endpoint it names: a
    -- device the user removed, or that the push service gave up, stays removed.
    PERFORM 1 FROM notify.push_subscriptions AS s
    WHERE s.id = move_push_subscription.id AND s.user_id = move_push_subscription.user_id
      AND s.token_hash = move_push_subscription.old_token_hash AND s.kind = 'webpush' AND s.is_active
    FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    -- One row per endpoint, as when a device subscribes again: a row that has the new endpoint gives way.
    DELETE FROM notify.push_subscriptions AS s
    WHERE s.token_hash = move_push_subscription.token_hash AND s.id <> move_push_subscription.id;
    UPDATE notify.push_subscriptions AS s
    SET endpoint = move_push_subscription.endpoint, p256dh_key = move_push_subscription.p256dh_key,
        auth_key = move_push_subscription.auth_key, token_hash = move_push_subscription.token_hash,
        vapid_key_id = move_push_subscription.vapid_key_id, failure_count = 0
    WHERE s.id = move_push_subscription.id;
    RETURN move_push_subscription.id;
END
$$;
ALTER FUNCTION notify_private.move_push_subscription(uuid, uuid, bytea, text, text, text, bytea, uuid)
    OWNER TO notify_definer;
COMMENT ON FUNCTION notify_private.move_push_subscription(uuid, uuid, bytea, text, text, text, bytea, uuid)
    IS 'moves one live Web Push device (same id) to the new endpoint, keys and VAPID key its browser re-subscribed with; NULL when it is gone';
