-- Grants and policies of the VAPID keys (after 010_reset dropped them all).

GRANT EXECUTE ON FUNCTION notify.current_vapid_key(), notify.add_vapid_key(text, text), notify.vapid_rotation_due(),
    notify.retire_vapid_keys()
    TO notify_worker, notify_admin;

GRANT SELECT, INSERT, UPDATE ON notify.vapid_keys TO notify_worker, notify_admin;
GRANT SELECT ON notify.vapid_keys TO notify_definer;
CREATE POLICY "workers and DBAs manage the VAPID keys" ON notify.vapid_keys FOR ALL
    TO notify_worker, notify_admin USING (notify.current_org_id() IS NULL) WITH CHECK (notify.current_org_id() IS NULL);
CREATE POLICY "definer functions read the VAPID keys" ON notify.vapid_keys FOR SELECT
    TO notify_definer USING (true);
