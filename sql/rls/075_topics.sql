-- Grants and policies of topics and broadcasts (after 010_reset dropped them all).

GRANT SELECT, INSERT, UPDATE (muted), DELETE ON notify.topic_subscriptions
    TO notify_service, notify_authenticated, notify_admin;
GRANT SELECT ON notify.topic_subscriptions TO notify_worker;
-- notify.erase_user (a definer function) deletes an erased user's subscriptions.
GRANT SELECT, DELETE ON notify.topic_subscriptions TO notify_definer;
CREATE POLICY "users manage their own topic subscriptions" ON notify.topic_subscriptions FOR ALL
    TO notify_authenticated
    USING (user_id = notify.current_user_id()) WITH CHECK (user_id = notify.current_user_id());
CREATE POLICY "services manage every topic subscription" ON notify.topic_subscriptions FOR ALL
    TO notify_service USING (true) WITH CHECK (true);
CREATE POLICY "admins manage the topic subscriptions of their org" ON notify.topic_subscriptions FOR ALL
    TO notify_admin USING (notify.in_admin_scope(user_id)) WITH CHECK (notify.in_admin_scope(user_id));
CREATE POLICY "workers read every topic subscription" ON notify.topic_subscriptions FOR SELECT
    TO notify_worker USING (true);
CREATE POLICY "definer functions read and erase every topic subscription" ON notify.topic_subscriptions FOR ALL
    TO notify_definer USING (true) WITH CHECK (true);

-- Subscriptions: whoever may see the user (the user themself, their org's admin, a service).
GRANT EXECUTE ON FUNCTION notify.subscribe(uuid, text), notify.unsubscribe(uuid, text),
    notify.mute_topic(uuid, text, boolean)
    TO notify_service, notify_authenticated, notify_admin;
GRANT EXECUTE ON FUNCTION notify.require_topic(text), notify.require_recipient(uuid),
    notify_private.require_subscriber(uuid, text)
    TO notify_service, notify_authenticated, notify_admin;

-- Sends: services and admins send to a topic; admins broadcast (run as the caller: RLS scopes both).
GRANT EXECUTE ON FUNCTION
    notify.send_topic(text, text, text, text, text, jsonb, text[], text, jsonb, text, timestamptz, timestamptz, text),
    notify_private.send_batch(uuid[], jsonb, text, text, text, text, jsonb, text[], text, jsonb, text, timestamptz, timestamptz, text),
    notify_private.audience(uuid, text, text, text)
    TO notify_service, notify_admin;
GRANT EXECUTE ON FUNCTION
    notify.broadcast(uuid, text, text, text, text, jsonb, text[], text, jsonb, text, timestamptz, timestamptz, text, text, text, text),
    notify.broadcast_preview(uuid, text, text, text[], text, text, text),
    notify_private.broadcast_audience(uuid, text, text, text),
    notify_private.audience_channels(uuid[], text, text, text[])
    TO notify_admin;
-- The preview's counts run as notify_definer: channel_decisions and what it inlines.
GRANT EXECUTE ON FUNCTION notify_private.audience_channels(uuid[], text, text, text[]) TO notify_definer;
