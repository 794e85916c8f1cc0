-- Grants and policies of service keys (after 010_reset dropped them all).

GRANT EXECUTE ON FUNCTION notify.create_service_key(text), notify.revoke_service_key(text) TO notify_admin;
-- notifyd checks keys only through authenticate_service, which counts the wrong ones.
GRANT EXECUTE ON FUNCTION notify.check_service_key(text, text) TO notify_definer;
GRANT EXECUTE ON FUNCTION notify.authenticate_service(text, text, text, integer, interval) TO notify_worker;
GRANT SELECT, INSERT, UPDATE, DELETE ON notify_private.service_key_failures TO notify_definer;

GRANT SELECT, INSERT, UPDATE ON notify.service_keys TO notify_admin;
GRANT SELECT ON notify.service_keys TO notify_definer;
CREATE POLICY "DBAs manage the service keys" ON notify.service_keys FOR ALL
    TO notify_admin USING (notify.current_org_id() IS NULL) WITH CHECK (notify.current_org_id() IS NULL);
CREATE POLICY "definer functions check the service keys" ON notify.service_keys FOR SELECT
    TO notify_definer USING (true);
