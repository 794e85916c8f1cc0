-- Grants and policies of retention, erasure and the audit log (after 010_reset dropped them all).

GRANT EXECUTE ON FUNCTION notify.apply_retention(integer, integer) TO notify_admin, notify_worker;
GRANT EXECUTE ON FUNCTION notify.erase_user(uuid) TO notify_admin;
-- notifyd's REST layer audits the 401/403 answers it gives (as notify_worker).
GRANT EXECUTE ON FUNCTION notify_private.audit(text, jsonb, text, uuid) TO notify_worker, notify_definer;
GRANT EXECUTE ON FUNCTION notify_private.audit_hash(text), notify_private.mask_pii(text),
    notify_private.retention_batch(text, integer), notify_private.retention_done(jsonb)
    TO notify_definer;

-- The audit log: written only through notify_private.audit; read by admins; nobody updates or deletes.
GRANT SELECT ON notify.audit_log TO notify_admin;
GRANT INSERT ON notify.audit_log TO notify_definer;
GRANT SELECT ON notify_private.audit_key TO notify_definer;
CREATE POLICY "DBAs read every audit row, org admins their org's" ON notify.audit_log FOR SELECT
    TO notify_admin USING (notify.current_org_id() IS NULL OR org_id = notify.current_org_id());
CREATE POLICY "definer functions append audit rows" ON notify.audit_log FOR INSERT
    TO notify_definer WITH CHECK (true);

-- Retention and erasure delete as notify_definer (the functions check who may call them).
GRANT DELETE ON notify.notifications, notify.notification_deliveries, notify.notification_actions,
    notify.notification_folds, notify.email_digests, notify.rate_buckets, notify.recipients,
    notify.email_suppressions
    TO notify_definer;
GRANT UPDATE (user_id, device_id, notification_id, metadata) ON notify.notification_analytics TO notify_definer;
GRANT SELECT, UPDATE (created_by) ON notify.notification_batches TO notify_definer;
GRANT SELECT, DELETE ON notify.webhook_events TO notify_definer;
CREATE POLICY "definer functions delete old or erased notifications" ON notify.notifications FOR DELETE
    TO notify_definer USING (true);
CREATE POLICY "definer functions delete suppressions of erased users" ON notify.email_suppressions FOR DELETE
    TO notify_definer USING (true);
CREATE POLICY "definer functions rename batches of erased users" ON notify.notification_batches FOR ALL
    TO notify_definer USING (true) WITH CHECK (true);
CREATE POLICY "definer functions prune old webhook events" ON notify.webhook_events FOR ALL
    TO notify_definer USING (true);
