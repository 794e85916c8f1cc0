-- Grants and policies of delivery (after 010_reset dropped them all).

GRANT USAGE ON SCHEMA notify_private TO notify_worker;
GRANT EXECUTE ON FUNCTION notify_private.effective_preferences(uuid, text), notify_private.plan_notification(notify.notifications),
    notify_private.delivery_jobs(uuid[]), notify_private.defer_jobs(jsonb)
    TO notify_definer;
GRANT EXECUTE ON FUNCTION notify_private.claim_deliveries(uuid[]), notify_private.record_outcomes(jsonb)
    TO notify_worker;
GRANT EXECUTE ON FUNCTION notify.retry_delivery(uuid) TO notify_admin;
GRANT EXECUTE ON FUNCTION notify.send_test(text) TO notify_authenticated;
GRANT EXECUTE ON FUNCTION notify.save_push_subscription(text, text, text, text, text, bytea, uuid, jsonb)
    TO notify_authenticated;
-- POST push/resubscribe has no user: notifyd moves the device its subscription token names.
GRANT EXECUTE ON FUNCTION notify_private.move_push_subscription(uuid, uuid, bytea, text, text, text, bytea, uuid)
    TO notify_worker;
GRANT EXECUTE ON FUNCTION notify.unsubscribe_email(uuid, text) TO notify_worker, notify_admin;
GRANT EXECUTE ON FUNCTION notify.record_email_event(text, text, text, jsonb) TO notify_worker, notify_admin;
GRANT EXECUTE ON FUNCTION notify.current_vapid_key(), notify.add_vapid_key(text, text), notify.vapid_rotation_due(),
    notify.retire_vapid_keys()
    TO notify_worker, notify_admin;

GRANT SELECT ON notify.dead_letters, notify.delivery_counts TO notify_admin, notify_worker, notify_service;
GRANT SELECT ON notify.queue_depth TO notify_admin, notify_worker;

-- send_test (owned by notify_definer) sends through notify.send.
GRANT EXECUTE ON FUNCTION
    notify.send(uuid, text, text, text, text, jsonb, text[], text, jsonb, text, timestamptz, timestamptz, text)
    TO notify_definer;
GRANT INSERT ON notify.notifications TO notify_definer;
CREATE POLICY "definer functions send test notifications to the caller" ON notify.notifications FOR INSERT
    TO notify_definer WITH CHECK (user_id = notify.current_user_id());

GRANT SELECT, INSERT, UPDATE ON notify.vapid_keys TO notify_worker, notify_admin;
GRANT SELECT ON notify.vapid_keys TO notify_definer;
CREATE POLICY "workers and DBAs manage the VAPID keys" ON notify.vapid_keys FOR ALL
    TO notify_worker, notify_admin USING (notify.current_org_id() IS NULL) WITH CHECK (notify.current_org_id() IS NULL);
CREATE POLICY "definer functions read the VAPID keys" ON notify.vapid_keys FOR SELECT
    TO notify_definer USING (true);

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

-- Procrastinate: the worker runs it; definer functions defer jobs into it.
GRANT USAGE ON SCHEMA procrastinate TO notify_worker, notify_definer, notify_admin;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA procrastinate TO notify_worker;
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA procrastinate TO notify_worker;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA procrastinate TO notify_worker;
GRANT SELECT ON procrastinate.procrastinate_jobs, procrastinate.procrastinate_events TO notify_admin;
GRANT SELECT, INSERT ON procrastinate.procrastinate_jobs TO notify_definer;
GRANT INSERT ON procrastinate.procrastinate_events TO notify_definer;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA procrastinate TO notify_definer;
GRANT EXECUTE ON FUNCTION procrastinate.procrastinate_defer_jobs_v1(procrastinate.procrastinate_job_to_defer_v1[])
    TO notify_definer;
