-- Who may touch what at all; the policies of 030_policies.sql then decide which rows.

GRANT USAGE ON SCHEMA notify
    TO notify_service, notify_authenticated, notify_admin, notify_worker, notify_definer;
GRANT USAGE ON SCHEMA notify_private TO notify_definer, notify_worker;
-- send_bulk runs as its caller and takes its recipients' seqs through a definer function there.
GRANT USAGE ON SCHEMA notify_private TO notify_service;
-- serve and worker read which migrations ran before they start (and refuse an out-of-date database).
GRANT SELECT ON notify_private.migrations TO notify_worker;

GRANT EXECUTE ON FUNCTION notify_private.next_seq(uuid) TO notify_definer;
GRANT EXECUTE ON FUNCTION notify_private.take_bulk_seqs(uuid[], boolean, text, text, text[], timestamptz) TO notify_service, notify_admin;
-- The default id of notifications and deliveries: whoever may insert them calls it.
GRANT EXECUTE ON FUNCTION notify_private.uuid_v7()
    TO notify_service, notify_admin, notify_worker, notify_definer;

GRANT EXECUTE ON FUNCTION notify.now(), notify.current_claims(), notify.current_user_id(),
    notify.current_org_id(), notify.setting(text), notify.in_admin_scope(uuid),
    notify.require_type(text)
    TO notify_service, notify_authenticated, notify_admin, notify_worker, notify_definer;
GRANT EXECUTE ON FUNCTION
    notify.send(uuid, text, text, text, text, jsonb, text[], text, jsonb, text, timestamptz, timestamptz, text, jsonb),
    notify.send_bulk(uuid[], text, text, text, text, jsonb, text[], text, jsonb, text, timestamptz, timestamptz, text),
    notify.upsert_recipient(uuid, text, text, text, uuid), notify.upsert_recipient_v2(uuid, text, text, text, uuid, text)
    TO notify_service, notify_admin;
-- notify.send and send_bulk run as their caller (and as notify_definer inside send_test and row triggers).
GRANT EXECUTE ON FUNCTION
    notify.request_digest(text, text, text, text, jsonb, text[], text, jsonb, timestamptz, timestamptz, text, uuid[], jsonb),
    notify.require_same_request(bytea, bytea)
    TO notify_service, notify_admin, notify_definer;
GRANT EXECUTE ON FUNCTION notify.mark_read(uuid), notify.mark_all_read(), notify.unread_count()
    TO notify_authenticated;

GRANT SELECT ON notify.settings, notify.notification_types
    TO notify_service, notify_authenticated, notify_admin, notify_worker, notify_definer;
GRANT UPDATE (value) ON notify.settings TO notify_admin;
GRANT INSERT, UPDATE, DELETE ON notify.notification_types TO notify_admin;

GRANT SELECT ON notify.recipients TO notify_authenticated, notify_worker;
GRANT UPDATE (locale, timezone) ON notify.recipients TO notify_authenticated;
-- Not sms_opted_out_at: only the number's own STOP and START replies move it (notify_private.record_sms_reply).
GRANT INSERT (user_id, email, locale, timezone, org_id, phone), UPDATE (email, locale, timezone, org_id, phone), SELECT
    ON notify.recipients TO notify_service, notify_admin;
GRANT DELETE ON notify.recipients TO notify_admin;
GRANT SELECT, INSERT, UPDATE ON notify.recipients TO notify_definer;

GRANT SELECT ON notify.notifications TO notify_authenticated;
GRANT UPDATE (read_at, deleted_at) ON notify.notifications TO notify_authenticated;
GRANT SELECT, INSERT ON notify.notifications TO notify_service;
GRANT SELECT, INSERT, UPDATE, DELETE ON notify.notifications TO notify_admin;
GRANT SELECT, UPDATE ON notify.notifications TO notify_worker;
GRANT SELECT ON notify.notifications TO notify_definer;

GRANT SELECT, INSERT ON notify.notification_batches TO notify_service, notify_admin;
GRANT SELECT ON notify.notification_batches TO notify_worker;

GRANT SELECT ON notify.notification_deliveries TO notify_authenticated, notify_service, notify_admin;
GRANT SELECT, INSERT, UPDATE ON notify.notification_deliveries TO notify_worker, notify_definer;

GRANT SELECT, DELETE ON notify.push_subscriptions TO notify_authenticated;
GRANT SELECT ON notify.push_subscriptions TO notify_admin;
GRANT SELECT, INSERT, UPDATE, DELETE ON notify.push_subscriptions TO notify_worker, notify_definer;

GRANT SELECT, INSERT, UPDATE, DELETE ON notify.notification_preferences
    TO notify_authenticated, notify_admin, notify_definer;
GRANT SELECT ON notify.notification_preferences TO notify_worker;

GRANT SELECT ON notify.org_notification_preferences TO notify_authenticated, notify_worker;
GRANT SELECT, INSERT, UPDATE, DELETE ON notify.org_notification_preferences TO notify_admin, notify_definer;

GRANT SELECT ON notify.notification_templates
    TO notify_service, notify_authenticated, notify_worker, notify_definer;
GRANT SELECT, INSERT, UPDATE, DELETE ON notify.notification_templates TO notify_admin;

GRANT SELECT ON notify.email_digests TO notify_authenticated, notify_admin;
GRANT SELECT, INSERT, UPDATE ON notify.email_digests TO notify_worker, notify_definer;

GRANT SELECT ON notify.notification_analytics TO notify_admin;
GRANT SELECT, INSERT ON notify.notification_analytics TO notify_worker, notify_definer;

GRANT SELECT ON notify.retention_policies TO notify_worker, notify_definer;
GRANT SELECT, INSERT, UPDATE, DELETE ON notify.retention_policies TO notify_admin;
