-- Webhook endpoints and chat connections: what their owners register, rotate, read and replay. notifyd checks
-- a URL against the SSRF rules and encrypts secrets and chat URLs before these functions store them.

CREATE OR REPLACE FUNCTION notify_private.checked_types(types text[]) RETURNS text[]
    LANGUAGE plpgsql STABLE
    SET search_path = ''
AS $$
BEGIN
    IF checked_types.types IS NOT NULL
       AND (cardinality(checked_types.types) = 0 OR pg_catalog.array_position(checked_types.types, NULL) IS NOT NULL) THEN
        RAISE EXCEPTION 'types must be NULL (every type) or a non-empty list of notification types'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM notify.require_type(t) FROM pg_catalog.unnest(checked_types.types) AS t;
    RETURN checked_types.types;
END
$$;
COMMENT ON FUNCTION notify_private.checked_types(text[])
    IS 'a target''s type filter if every entry is a notification type, else a clear error';

CREATE OR REPLACE FUNCTION notify_private.target_owner(org_wide boolean) RETURNS uuid
    LANGUAGE plpgsql STABLE
    SET search_path = ''
AS $$
BEGIN
    IF notify.current_user_id() IS NULL THEN
        RAISE EXCEPTION 'a webhook endpoint or chat connection belongs to the calling user: request.jwt.claims has no user sub'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF target_owner.org_wide AND notify.current_org_id() IS NULL THEN
        RAISE EXCEPTION 'an org-wide target needs the caller''s org: request.jwt.claims has no org_id'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN notify.current_user_id();
END
$$;
COMMENT ON FUNCTION notify_private.target_owner(boolean)
    IS 'the calling user, who owns the endpoint or connection they register; an org-wide one needs their org';

CREATE OR REPLACE FUNCTION notify_private.add_webhook_endpoint(org_wide boolean, url text, secret_encrypted text,
                                                               description text, types text[])
    RETURNS notify.webhook_endpoints
    LANGUAGE plpgsql
    SET search_path = ''
AS $$
DECLARE
    owner constant uuid := notify_private.target_owner(add_webhook_endpoint.org_wide);
    saved notify.webhook_endpoints;
BEGIN
    INSERT INTO notify.recipients (user_id) VALUES (owner) ON CONFLICT DO NOTHING;
    INSERT INTO notify.webhook_endpoints AS e (user_id, org_id, url, secret_encrypted, description, types)
    VALUES (owner, CASE WHEN add_webhook_endpoint.org_wide THEN notify.current_org_id() END,
            add_webhook_endpoint.url, add_webhook_endpoint.secret_encrypted,
            coalesce(add_webhook_endpoint.description, ''), notify_private.checked_types(add_webhook_endpoint.types))
    RETURNING e.* INTO saved;
    RETURN saved;
END
$$;
COMMENT ON FUNCTION notify_private.add_webhook_endpoint(boolean, text, text, text, text[])
    IS 'stores a webhook endpoint owned by the caller, for their own notifications or (org_wide) their org''s';

CREATE OR REPLACE FUNCTION notify.add_webhook_endpoint_v1(url text, secret_encrypted text, description text DEFAULT '',
                                                          types text[] DEFAULT NULL)
    RETURNS notify.webhook_endpoints
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = ''
AS $$
DECLARE
    -- The caller's org says (its defaults' user_webhook_endpoints), else the setting: NULL is "the org says nothing".
    org_allows constant boolean := (
        SELECT o.user_webhook_endpoints FROM notify.org_notification_preferences AS o
        JOIN notify.recipients AS r ON r.org_id = o.org_id
        WHERE r.user_id = notify.current_user_id() AND o.notification_type IS NULL);
BEGIN
    IF NOT org_allows THEN
        RAISE EXCEPTION 'users may not register webhook endpoints here (your organization does not allow it): ask an org admin'
            USING ERRCODE = 'insufficient_privilege';
    ELSIF org_allows IS NULL AND NOT (notify.setting('webhook.user_endpoints'))::text::boolean THEN
        RAISE EXCEPTION 'users may not register webhook endpoints here (webhook.user_endpoints is off): ask an org admin'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN notify_private.add_webhook_endpoint(false, add_webhook_endpoint_v1.url,
                                               add_webhook_endpoint_v1.secret_encrypted,
                                               add_webhook_endpoint_v1.description, add_webhook_endpoint_v1.types);
END
$$;
ALTER FUNCTION notify.add_webhook_endpoint_v1(text, text, text, text[]) OWNER TO notify_definer;
COMMENT ON FUNCTION notify.add_webhook_endpoint_v1(text, text, text, text[])
    IS 'registers a webhook endpoint for the caller''s own notifications (secret encrypted by notifyd), if their org (else webhook.user_endpoints) allows it';

CREATE OR REPLACE FUNCTION notify.add_org_webhook_endpoint_v1(url text, secret_encrypted text,
                                                              description text DEFAULT '', types text[] DEFAULT NULL)
    RETURNS notify.webhook_endpoints
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = ''
AS $$
BEGIN
    RETURN notify_private.add_webhook_endpoint(true, add_org_webhook_endpoint_v1.url,
                                               add_org_webhook_endpoint_v1.secret_encrypted,
                                               add_org_webhook_endpoint_v1.description,
                                               add_org_webhook_endpoint_v1.types);
END
$$;
ALTER FUNCTION notify.add_org_webhook_endpoint_v1(text, text, text, text[]) OWNER TO notify_definer;
COMMENT ON FUNCTION notify.add_org_webhook_endpoint_v1(text, text, text, text[])
    IS 'an org admin registers a webhook endpoint that gets the notifications of every user of their org';

CREATE OR REPLACE FUNCTION notify_private.owned_target(channel text, id uuid) RETURNS uuid
    LANGUAGE plpgsql STABLE
    SET search_path = ''
AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM notify.webhook_endpoints AS e
                   WHERE owned_target.channel = 'webhook' AND e.id = owned_target.id
                     AND e.user_id = notify.current_user_id())
       AND NOT EXISTS (SELECT 1 FROM notify.chat_connections AS c
                       WHERE owned_target.channel = 'chat' AND c.id = owned_target.id
                         AND c.user_id = notify.current_user_id()) THEN
        RAISE EXCEPTION 'no % %', CASE owned_target.channel WHEN 'webhook' THEN 'webhook endpoint'
                                                            ELSE 'chat connection' END, owned_target.id
            USING ERRCODE = 'no_data_found';
    END IF;
    RETURN owned_target.id;
END
$$;
COMMENT ON FUNCTION notify_private.owned_target(text, uuid)
    IS 'the id of a webhook endpoint or chat connection the caller owns; anyone else''s is not found (P0002)';

CREATE OR REPLACE FUNCTION notify.rotate_webhook_secret_v1(endpoint_id uuid, secret_encrypted text)
    RETURNS timestamptz
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = ''
AS $$
DECLARE
    overlap_until timestamptz;
BEGIN
    -- The old secret keeps signing beside the new one until the receiver has switched.
    UPDATE notify.webhook_endpoints AS e
    SET previous_secret_encrypted = e.secret_encrypted,
        previous_secret_until = notify.now() + (notify.setting('webhook.rotation_overlap') #>> '{}')::interval,
        secret_encrypted = rotate_webhook_secret_v1.secret_encrypted
    WHERE e.id = notify_private.owned_target('webhook', rotate_webhook_secret_v1.endpoint_id)
    RETURNING e.previous_secret_until INTO overlap_until;
    RETURN overlap_until;
END
$$;
ALTER FUNCTION notify.rotate_webhook_secret_v1(uuid, text) OWNER TO notify_definer;
COMMENT ON FUNCTION notify.rotate_webhook_secret_v1(uuid, text)
    IS 'gives the caller''s endpoint a new secret; the old one also signs until the returned time (webhook.rotation_overlap)';

CREATE OR REPLACE FUNCTION notify.enable_webhook_endpoint_v1(endpoint_id uuid) RETURNS void
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = ''
AS $$
BEGIN
    UPDATE notify.webhook_endpoints AS e
    SET is_active = true, deactivated_reason = NULL, failing_since = NULL
    WHERE e.id = notify_private.owned_target('webhook', enable_webhook_endpoint_v1.endpoint_id);
END
$$;
ALTER FUNCTION notify.enable_webhook_endpoint_v1(uuid) OWNER TO notify_definer;
COMMENT ON FUNCTION notify.enable_webhook_endpoint_v1(uuid)
    IS 'turns the caller''s disabled endpoint back on (new deliveries only; replay the failed ones)';

CREATE OR REPLACE FUNCTION notify.remove_webhook_endpoint_v1(endpoint_id uuid) RETURNS void
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = ''
AS $$
BEGIN
    -- Deliveries waiting for it end when their job claims them (the endpoint was removed).
    DELETE FROM notify.webhook_endpoints AS e
    WHERE e.id = notify_private.owned_target('webhook', remove_webhook_endpoint_v1.endpoint_id);
END
$$;
ALTER FUNCTION notify.remove_webhook_endpoint_v1(uuid) OWNER TO notify_definer;
COMMENT ON FUNCTION notify.remove_webhook_endpoint_v1(uuid) IS 'removes one of the caller''s webhook endpoints';

CREATE OR REPLACE FUNCTION notify.webhook_deliveries_v1(endpoint_id uuid, max_rows integer DEFAULT 50)
    RETURNS TABLE (delivery_id uuid, notification_id uuid, user_id uuid, status text, attempts integer,
                   repeats integer, reason text, error_message text, sent_at timestamptz, failed_at timestamptz,
                   created_at timestamptz)
    LANGUAGE plpgsql STABLE
    SECURITY DEFINER
    SET search_path = ''
AS $$
BEGIN
    IF webhook_deliveries_v1.max_rows NOT BETWEEN 1 AND 500 THEN
        RAISE EXCEPTION 'max_rows must be 1 to 500, got %', webhook_deliveries_v1.max_rows
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
    SELECT d.id, d.notification_id, d.user_id, d.status, d.attempts, d.repeats, d.reason, d.error_message,
           d.sent_at, d.failed_at, d.created_at
    FROM notify.notification_deliveries AS d
    WHERE d.target_id = notify_private.owned_target('webhook', webhook_deliveries_v1.endpoint_id)
      AND d.channel = 'webhook'
    ORDER BY d.created_at DESC, d.id
    LIMIT webhook_deliveries_v1.max_rows;
END
$$;
ALTER FUNCTION notify.webhook_deliveries_v1(uuid, integer) OWNER TO notify_definer;
COMMENT ON FUNCTION notify.webhook_deliveries_v1(uuid, integer)
    IS 'the delivery log of one of the caller''s endpoints, newest first';

CREATE OR REPLACE FUNCTION notify.replay_webhook_delivery_v1(endpoint_id uuid, delivery_id uuid) RETURNS bigint
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = ''
AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM notify.notification_deliveries AS d
                   WHERE d.id = replay_webhook_delivery_v1.delivery_id AND d.channel = 'webhook'
                     AND d.target_id = notify_private.owned_target('webhook', replay_webhook_delivery_v1.endpoint_id)) THEN
        RAISE EXCEPTION 'no delivery % to webhook endpoint %', replay_webhook_delivery_v1.delivery_id,
                        replay_webhook_delivery_v1.endpoint_id USING ERRCODE = 'no_data_found';
    END IF;
    -- The same way a DBA retries a dead letter: fresh attempts, the same delivery id (the receiver's
    -- idempotency key, webhook-id).
    RETURN notify_private.retry_delivery(replay_webhook_delivery_v1.delivery_id);
END
$$;
ALTER FUNCTION notify.replay_webhook_delivery_v1(uuid, uuid) OWNER TO notify_definer;
COMMENT ON FUNCTION notify.replay_webhook_delivery_v1(uuid, uuid)
    IS 'sends a failed delivery of the caller''s endpoint again (same webhook-id); returns the dispatcher job''s id';

CREATE OR REPLACE FUNCTION notify_private.add_chat_connection(org_wide boolean, platform text, url_encrypted text,
                                                              label text, types text[])
    RETURNS notify.chat_connections
    LANGUAGE plpgsql
    SET search_path = ''
AS $$
DECLARE
    owner constant uuid := notify_private.target_owner(add_chat_connection.org_wide);
    saved notify.chat_connections;
BEGIN
    INSERT INTO notify.recipients (user_id) VALUES (owner) ON CONFLICT DO NOTHING;
    INSERT INTO notify.chat_connections AS c (user_id, org_id, platform, url_encrypted, label, types)
    VALUES (owner, CASE WHEN add_chat_connection.org_wide THEN notify.current_org_id() END,
            add_chat_connection.platform, add_chat_connection.url_encrypted, coalesce(add_chat_connection.label, ''),
            notify_private.checked_types(add_chat_connection.types))
    RETURNING c.* INTO saved;
    RETURN saved;
END
$$;
COMMENT ON FUNCTION notify_private.add_chat_connection(boolean, text, text, text, text[])
    IS 'stores a chat connection owned by the caller, for their own notifications or (org_wide) their org''s';

CREATE OR REPLACE FUNCTION notify.add_chat_connection_v1(platform text, url_encrypted text, label text DEFAULT '',
                                                         types text[] DEFAULT NULL)
    RETURNS notify.chat_connections
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = ''
AS $$
BEGIN
    RETURN notify_private.add_chat_connection(false, add_chat_connection_v1.platform,
                                              add_chat_connection_v1.url_encrypted, add_chat_connection_v1.label,
                                              add_chat_connection_v1.types);
END
$$;
ALTER FUNCTION notify.add_chat_connection_v1(text, text, text, text[]) OWNER TO notify_definer;
COMMENT ON FUNCTION notify.add_chat_connection_v1(text, text, text, text[])
    IS 'connects a Slack, Teams or Discord incoming webhook to the caller''s own notifications (URL encrypted by notifyd)';

CREATE OR REPLACE FUNCTION notify.add_org_chat_connection_v1(platform text, url_encrypted text, label text DEFAULT '',
                                                             types text[] DEFAULT NULL)
    RETURNS notify.chat_connections
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = ''
AS $$
BEGIN
    RETURN notify_private.add_chat_connection(true, add_org_chat_connection_v1.platform,
                                              add_org_chat_connection_v1.url_encrypted,
                                              add_org_chat_connection_v1.label, add_org_chat_connection_v1.types);
END
$$;
ALTER FUNCTION notify.add_org_chat_connection_v1(text, text, text, text[]) OWNER TO notify_definer;
COMMENT ON FUNCTION notify.add_org_chat_connection_v1(text, text, text, text[])
    IS 'an org admin connects an org channel that gets the notifications of every user of their org';

CREATE OR REPLACE FUNCTION notify.remove_chat_connection_v1(connection_id uuid) RETURNS void
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = ''
AS $$
BEGIN
    DELETE FROM notify.chat_connections AS c
    WHERE c.id = notify_private.owned_target('chat', remove_chat_connection_v1.connection_id);
END
$$;
ALTER FUNCTION notify.remove_chat_connection_v1(uuid) OWNER TO notify_definer;
COMMENT ON FUNCTION notify.remove_chat_connection_v1(uuid) IS 'removes one of the caller''s chat connections';
