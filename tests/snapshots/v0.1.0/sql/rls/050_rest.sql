-- Grants and policies of service keys and action buttons (after 010_reset dropped them all).

GRANT EXECUTE ON FUNCTION notify.create_service_key(text), notify.revoke_service_key(text) TO notify_admin;
GRANT EXECUTE ON FUNCTION notify.check_service_key(text, text) TO notify_worker;
GRANT EXECUTE ON FUNCTION notify.take_action(uuid, text) TO notify_authenticated;
GRANT EXECUTE ON FUNCTION notify_private.take_action(uuid, uuid, text) TO notify_definer, notify_worker;
GRANT EXECUTE ON FUNCTION notify.delivery_status(uuid)
    TO notify_authenticated, notify_service, notify_admin, notify_worker;

GRANT SELECT, INSERT, UPDATE ON notify.service_keys TO notify_admin;
GRANT SELECT ON notify.service_keys TO notify_definer;
CREATE POLICY "DBAs manage the service keys" ON notify.service_keys FOR ALL
    TO notify_admin USING (notify.current_org_id() IS NULL) WITH CHECK (notify.current_org_id() IS NULL);
CREATE POLICY "definer functions check the service keys" ON notify.service_keys FOR SELECT
    TO notify_definer USING (true);

-- Append-only: nobody is granted UPDATE or DELETE (erasing a user cascades from notifications).
GRANT SELECT ON notify.notification_actions TO notify_authenticated, notify_service, notify_admin, notify_worker;
GRANT SELECT, INSERT ON notify.notification_actions TO notify_definer;
CREATE POLICY "users read their own actions" ON notify.notification_actions FOR SELECT
    TO notify_authenticated USING (user_id = notify.current_user_id());
CREATE POLICY "services and workers read every action" ON notify.notification_actions FOR SELECT
    TO notify_service, notify_worker USING (true);
CREATE POLICY "admins read the actions of their org" ON notify.notification_actions FOR SELECT
    TO notify_admin USING (notify.in_admin_scope(user_id));
CREATE POLICY "definer functions record and read actions" ON notify.notification_actions FOR ALL
    TO notify_definer USING (true) WITH CHECK (true);

-- take_action (owned by notify_definer) writes only the action columns of the caller's own row.
GRANT UPDATE (action_taken, action_taken_at) ON notify.notifications TO notify_definer;
CREATE POLICY "definer functions record actions taken" ON notify.notifications FOR UPDATE
    TO notify_definer USING (true) WITH CHECK (true);
