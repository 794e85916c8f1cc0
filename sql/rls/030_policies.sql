-- Row-level security: enabled and forced on every table of notify, one sentence per policy. A partitioned
-- table's policies apply to the rows of all its partitions, which nobody reads but through it.

DO $force$
DECLARE
    table_name text;
BEGIN
    FOR table_name IN SELECT c.relname FROM pg_catalog.pg_class AS c
                      WHERE c.relnamespace = 'notify'::regnamespace AND c.relkind IN ('r', 'p')
                        AND NOT c.relispartition
    LOOP
        EXECUTE format('ALTER TABLE notify.%I ENABLE ROW LEVEL SECURITY', table_name);
        EXECUTE format('ALTER TABLE notify.%I FORCE ROW LEVEL SECURITY', table_name);
    END LOOP;
END
$force$;

-- settings, notification_types, notification_templates, retention_policies: configuration.
CREATE POLICY "every notify role reads the settings" ON notify.settings FOR SELECT
    TO notify_service, notify_authenticated, notify_admin, notify_worker, notify_definer USING (true);
CREATE POLICY "DBAs change the settings" ON notify.settings FOR UPDATE
    TO notify_admin USING (notify.current_org_id() IS NULL) WITH CHECK (notify.current_org_id() IS NULL);

CREATE POLICY "every notify role reads the notification types" ON notify.notification_types FOR SELECT
    TO notify_service, notify_authenticated, notify_admin, notify_worker, notify_definer USING (true);
CREATE POLICY "DBAs manage the notification types" ON notify.notification_types FOR ALL
    TO notify_admin USING (notify.current_org_id() IS NULL) WITH CHECK (notify.current_org_id() IS NULL);

CREATE POLICY "every notify role reads the templates" ON notify.notification_templates FOR SELECT
    TO notify_service, notify_authenticated, notify_admin, notify_worker, notify_definer USING (true);
CREATE POLICY "DBAs manage the templates" ON notify.notification_templates FOR ALL
    TO notify_admin USING (notify.current_org_id() IS NULL) WITH CHECK (notify.current_org_id() IS NULL);

CREATE POLICY "workers and admins read the retention policies" ON notify.retention_policies FOR SELECT
    TO notify_admin, notify_worker, notify_definer USING (true);
CREATE POLICY "DBAs manage the retention policies" ON notify.retention_policies FOR ALL
    TO notify_admin USING (notify.current_org_id() IS NULL) WITH CHECK (notify.current_org_id() IS NULL);

-- recipients
CREATE POLICY "users read their own recipient row" ON notify.recipients FOR SELECT
    TO notify_authenticated USING (user_id = notify.current_user_id());
CREATE POLICY "users update their own recipient row" ON notify.recipients FOR UPDATE
    TO notify_authenticated
    USING (user_id = notify.current_user_id()) WITH CHECK (user_id = notify.current_user_id());
CREATE POLICY "services manage every recipient" ON notify.recipients FOR ALL
    TO notify_service USING (true) WITH CHECK (true);
CREATE POLICY "admins manage the recipients of their org" ON notify.recipients FOR ALL
    TO notify_admin
    USING (notify.current_org_id() IS NULL OR org_id = notify.current_org_id())
    WITH CHECK (notify.current_org_id() IS NULL OR org_id = notify.current_org_id());
CREATE POLICY "workers read every recipient" ON notify.recipients FOR SELECT
    TO notify_worker USING (true);
CREATE POLICY "definer functions manage every recipient" ON notify.recipients FOR ALL
    TO notify_definer USING (true) WITH CHECK (true);

-- notifications
CREATE POLICY "users read their own notifications" ON notify.notifications FOR SELECT
    TO notify_authenticated USING (user_id = notify.current_user_id());
CREATE POLICY "users update their own notifications" ON notify.notifications FOR UPDATE
    TO notify_authenticated
    USING (user_id = notify.current_user_id()) WITH CHECK (user_id = notify.current_user_id());
CREATE POLICY "services send and read every notification" ON notify.notifications FOR ALL
    TO notify_service USING (true) WITH CHECK (true);
CREATE POLICY "admins manage the notifications of their org" ON notify.notifications FOR ALL
    TO notify_admin USING (notify.in_admin_scope(user_id)) WITH CHECK (notify.in_admin_scope(user_id));
CREATE POLICY "workers read and update every notification" ON notify.notifications FOR ALL
    TO notify_worker USING (true) WITH CHECK (true);
CREATE POLICY "definer functions read every notification" ON notify.notifications FOR SELECT
    TO notify_definer USING (true);

-- notification_batches
CREATE POLICY "services create and read batches" ON notify.notification_batches FOR ALL
    TO notify_service USING (true) WITH CHECK (true);
CREATE POLICY "admins create and read the batches of their org" ON notify.notification_batches FOR ALL
    TO notify_admin
    USING (notify.current_org_id() IS NULL OR org_id = notify.current_org_id())
    WITH CHECK (notify.current_org_id() IS NULL OR org_id = notify.current_org_id());
CREATE POLICY "workers read batches" ON notify.notification_batches FOR SELECT
    TO notify_worker USING (true);

-- notification_deliveries
CREATE POLICY "users read their own deliveries" ON notify.notification_deliveries FOR SELECT
    TO notify_authenticated USING (user_id = notify.current_user_id());
CREATE POLICY "services read every delivery" ON notify.notification_deliveries FOR SELECT
    TO notify_service USING (true);
CREATE POLICY "admins read the deliveries of their org" ON notify.notification_deliveries FOR SELECT
    TO notify_admin USING (notify.in_admin_scope(user_id));
CREATE POLICY "workers and definer functions manage every delivery" ON notify.notification_deliveries FOR ALL
    TO notify_worker, notify_definer USING (true) WITH CHECK (true);

-- push_subscriptions
CREATE POLICY "users read their own devices" ON notify.push_subscriptions FOR SELECT
    TO notify_authenticated USING (user_id = notify.current_user_id());
CREATE POLICY "users remove their own devices" ON notify.push_subscriptions FOR DELETE
    TO notify_authenticated USING (user_id = notify.current_user_id());
CREATE POLICY "admins read the devices of their org" ON notify.push_subscriptions FOR SELECT
    TO notify_admin USING (notify.in_admin_scope(user_id));
CREATE POLICY "workers and definer functions manage every device" ON notify.push_subscriptions FOR ALL
    TO notify_worker, notify_definer USING (true) WITH CHECK (true);

-- notification_preferences
CREATE POLICY "users manage their own preferences" ON notify.notification_preferences FOR ALL
    TO notify_authenticated
    USING (user_id = notify.current_user_id()) WITH CHECK (user_id = notify.current_user_id());
CREATE POLICY "admins manage the preferences of their org" ON notify.notification_preferences FOR ALL
    TO notify_admin USING (notify.in_admin_scope(user_id)) WITH CHECK (notify.in_admin_scope(user_id));
CREATE POLICY "workers read every preference" ON notify.notification_preferences FOR SELECT
    TO notify_worker USING (true);
CREATE POLICY "definer functions manage every preference" ON notify.notification_preferences FOR ALL
    TO notify_definer USING (true) WITH CHECK (true);

-- org_notification_preferences
CREATE POLICY "users read their org's defaults" ON notify.org_notification_preferences FOR SELECT
    TO notify_authenticated
    USING (org_id = (SELECT r.org_id FROM notify.recipients AS r WHERE r.user_id = notify.current_user_id()));
CREATE POLICY "admins manage their org's defaults" ON notify.org_notification_preferences FOR ALL
    TO notify_admin
    USING (notify.current_org_id() IS NULL OR org_id = notify.current_org_id())
    WITH CHECK (notify.current_org_id() IS NULL OR org_id = notify.current_org_id());
CREATE POLICY "workers read every org's defaults" ON notify.org_notification_preferences FOR SELECT
    TO notify_worker USING (true);
CREATE POLICY "definer functions manage every org's defaults" ON notify.org_notification_preferences FOR ALL
    TO notify_definer USING (true) WITH CHECK (true);

-- email_digests
CREATE POLICY "users read their own digests" ON notify.email_digests FOR SELECT
    TO notify_authenticated USING (user_id = notify.current_user_id());
CREATE POLICY "admins read the digests of their org" ON notify.email_digests FOR SELECT
    TO notify_admin USING (notify.in_admin_scope(user_id));
CREATE POLICY "workers and definer functions manage every digest" ON notify.email_digests FOR ALL
    TO notify_worker, notify_definer USING (true) WITH CHECK (true);

-- notification_analytics
CREATE POLICY "admins read the analytics of their org" ON notify.notification_analytics FOR SELECT
    TO notify_admin USING (notify.current_org_id() IS NULL OR org_id = notify.current_org_id());
CREATE POLICY "workers and definer functions record analytics" ON notify.notification_analytics FOR ALL
    TO notify_worker, notify_definer USING (true) WITH CHECK (true);
