-- Grants and policies of retention and erasure (after 010_reset dropped them all).

GRANT EXECUTE ON FUNCTION notify.apply_retention(integer, integer) TO notify_admin, notify_worker;
GRANT EXECUTE ON FUNCTION notify.erase_user(uuid) TO notify_admin;
GRANT EXECUTE ON FUNCTION notify_private.retention_batch(text, integer), notify_private.retention_done(jsonb)
    TO notify_definer;

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
