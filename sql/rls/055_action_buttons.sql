-- Grants and policies of action buttons (after 010_reset dropped them all).

GRANT EXECUTE ON FUNCTION notify.take_action(uuid, text) TO notify_authenticated;
GRANT EXECUTE ON FUNCTION notify_private.take_action(uuid, uuid, text) TO notify_definer, notify_worker;

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
