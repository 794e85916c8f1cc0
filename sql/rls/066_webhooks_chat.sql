-- Grants and policies of webhook endpoints and chat connections (after 010_reset dropped them all).

-- Owners read their targets through these columns: never the secret or the chat URL (both credentials).
GRANT SELECT (id, user_id, org_id, url, description, types, previous_secret_until, is_active, deactivated_reason,
              failing_since, last_success_at, created_at)
    ON notify.webhook_endpoints TO notify_authenticated, notify_admin;
GRANT SELECT (id, user_id, org_id, platform, label, types, is_active, deactivated_reason, created_at)
    ON notify.chat_connections TO notify_authenticated, notify_admin;
GRANT SELECT, INSERT, UPDATE, DELETE ON notify.webhook_endpoints, notify.chat_connections
    TO notify_worker, notify_definer;

CREATE POLICY "users read the webhook endpoints they own" ON notify.webhook_endpoints FOR SELECT
    TO notify_authenticated, notify_admin USING (user_id = notify.current_user_id());
CREATE POLICY "admins read the webhook endpoints of their org" ON notify.webhook_endpoints FOR SELECT
    TO notify_admin USING (org_id IS NOT NULL AND (notify.current_org_id() IS NULL OR org_id = notify.current_org_id()));
CREATE POLICY "workers and definer functions manage every webhook endpoint" ON notify.webhook_endpoints FOR ALL
    TO notify_worker, notify_definer USING (true) WITH CHECK (true);
CREATE POLICY "users read the chat connections they own" ON notify.chat_connections FOR SELECT
    TO notify_authenticated, notify_admin USING (user_id = notify.current_user_id());
CREATE POLICY "admins read the chat connections of their org" ON notify.chat_connections FOR SELECT
    TO notify_admin USING (org_id IS NOT NULL AND (notify.current_org_id() IS NULL OR org_id = notify.current_org_id()));
CREATE POLICY "workers and definer functions manage every chat connection" ON notify.chat_connections FOR ALL
    TO notify_worker, notify_definer USING (true) WITH CHECK (true);

GRANT EXECUTE ON FUNCTION
    notify.add_webhook_endpoint_v1(text, text, text, text[]), notify.rotate_webhook_secret_v1(uuid, text),
    notify.enable_webhook_endpoint_v1(uuid), notify.remove_webhook_endpoint_v1(uuid),
    notify.webhook_deliveries_v1(uuid, integer), notify.replay_webhook_delivery_v1(uuid, uuid),
    notify.add_chat_connection_v1(text, text, text, text[]), notify.remove_chat_connection_v1(uuid)
    TO notify_authenticated, notify_admin;
GRANT EXECUTE ON FUNCTION
    notify.add_org_webhook_endpoint_v1(text, text, text, text[]), notify.add_org_chat_connection_v1(text, text, text, text[])
    TO notify_admin;
GRANT EXECUTE ON FUNCTION
    notify_private.checked_types(text[]), notify_private.target_owner(boolean), notify_private.owned_target(text, uuid),
    notify_private.add_webhook_endpoint(boolean, text, text, text, text[]),
    notify_private.add_chat_connection(boolean, text, text, text, text[])
    TO notify_definer;

-- The worker tells an endpoint's owner that it was disabled, through this function alone.
GRANT EXECUTE ON FUNCTION notify_private.tell_endpoint_disabled(uuid[]) TO notify_worker;
CREATE POLICY "definer functions tell owners their webhook endpoint was disabled" ON notify.notifications FOR INSERT
    TO notify_definer
    WITH CHECK (type = 'system' AND channels = ARRAY['in_app']
                AND EXISTS (SELECT 1 FROM notify.webhook_endpoints AS e
                            WHERE e.user_id = notifications.user_id AND NOT e.is_active));
