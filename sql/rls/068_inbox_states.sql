-- Grants and policies of the inbox states (after 010_reset dropped them all).

-- End users call the SQL API; its functions run as notify_definer and name the caller's own rows.
GRANT EXECUTE ON FUNCTION notify.mark_seen(uuid[]), notify.seen_state(), notify.archive(uuid), notify.unarchive(uuid),
    notify.snooze(uuid, timestamptz)
    TO notify_authenticated;
GRANT EXECUTE ON FUNCTION notify_private.seen_watermark(uuid), notify_private.set_archived(uuid, boolean)
    TO notify_definer;
GRANT UPDATE (seen_at, read_at, archived_at, snoozed_until) ON notify.notifications TO notify_definer;
CREATE POLICY "definer functions change the inbox states of notifications" ON notify.notifications FOR UPDATE
    TO notify_definer USING (true) WITH CHECK (true);

-- The wake-up job (notify_private.release_in_app, as notify_worker) brings snoozed notifications back.
GRANT EXECUTE ON FUNCTION notify_private.wake_snoozed(uuid[]) TO notify_worker;

-- The seen watermark: its owner and the hub read it; only mark_seen writes it.
GRANT SELECT ON notify.inbox_marks TO notify_authenticated, notify_worker;
GRANT SELECT, INSERT, UPDATE ON notify.inbox_marks TO notify_definer;
GRANT SELECT ON notify.inbox_marks TO notify_admin;
CREATE POLICY "users read their own seen watermark" ON notify.inbox_marks FOR SELECT
    TO notify_authenticated USING (user_id = notify.current_user_id());
CREATE POLICY "admins read the seen watermarks of their org" ON notify.inbox_marks FOR SELECT
    TO notify_admin USING (notify.in_admin_scope(user_id));
CREATE POLICY "workers read every seen watermark" ON notify.inbox_marks FOR SELECT
    TO notify_worker USING (true);
CREATE POLICY "definer functions move the seen watermarks" ON notify.inbox_marks FOR ALL
    TO notify_definer USING (true) WITH CHECK (true);
