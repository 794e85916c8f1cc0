-- Grants and policies of e-mail events and suppressed addresses (after 010_reset dropped them all).

GRANT EXECUTE ON FUNCTION notify.unsubscribe_email(uuid, text) TO notify_worker, notify_admin;
GRANT EXECUTE ON FUNCTION notify.record_email_event(text, text, text, jsonb) TO notify_worker, notify_admin;

GRANT SELECT, INSERT, DELETE ON notify.email_suppressions TO notify_admin;
GRANT SELECT, INSERT ON notify.email_suppressions TO notify_worker;
GRANT SELECT ON notify.email_suppressions TO notify_definer;
CREATE POLICY "DBAs manage the suppressed addresses" ON notify.email_suppressions FOR ALL
    TO notify_admin USING (notify.current_org_id() IS NULL) WITH CHECK (notify.current_org_id() IS NULL);
CREATE POLICY "workers suppress addresses and read them" ON notify.email_suppressions FOR ALL
    TO notify_worker USING (true) WITH CHECK (true);
CREATE POLICY "definer functions read the suppressed addresses" ON notify.email_suppressions FOR SELECT
    TO notify_definer USING (true);

GRANT SELECT, INSERT ON notify.webhook_events TO notify_worker, notify_admin;
CREATE POLICY "workers and admins record webhook events" ON notify.webhook_events FOR ALL
    TO notify_worker, notify_admin USING (true) WITH CHECK (true);
