-- Grants and policies of aggregation (after 010_reset dropped them all).

-- The BEFORE INSERT trigger (SECURITY DEFINER, as notify_definer) folds a newcomer into its group's
-- row: only the columns a fold changes.
GRANT EXECUTE ON FUNCTION notify_private.fold_into_group(notify.notifications) TO notify_definer;
GRANT UPDATE (group_count, title, body, data, template_id, template_vars, expires_at)
    ON notify.notifications TO notify_definer;
CREATE POLICY "definer functions fold notifications into their group" ON notify.notifications FOR UPDATE
    TO notify_definer USING (true) WITH CHECK (true);

GRANT SELECT ON notify.notification_folds TO notify_authenticated, notify_service, notify_admin, notify_worker;
GRANT SELECT, INSERT ON notify.notification_folds TO notify_definer;
CREATE POLICY "users read the folds of their own notifications" ON notify.notification_folds FOR SELECT
    TO notify_authenticated USING (user_id = notify.current_user_id());
CREATE POLICY "services and workers read every fold" ON notify.notification_folds FOR SELECT
    TO notify_service, notify_worker USING (true);
CREATE POLICY "admins read the folds of their org" ON notify.notification_folds FOR SELECT
    TO notify_admin USING (notify.in_admin_scope(user_id));
CREATE POLICY "definer functions record and read folds" ON notify.notification_folds FOR ALL
    TO notify_definer USING (true) WITH CHECK (true);
