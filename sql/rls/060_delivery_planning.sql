-- Grants and policies of delivery planning (after 010_reset dropped them all).

GRANT EXECUTE ON FUNCTION notify_private.effective_preferences(uuid, text), notify_private.plan_notification(notify.notifications),
    notify_private.channel_decisions(notify.notifications), notify_private.wanted_channels(text, text[]),
    notify_private.held_for_quiet_hours(timestamptz, text, timestamptz),
    notify_private.turned_off(text, text, boolean, boolean, boolean),
    notify_private.queue_dispatch(timestamptz), notify_private.defer_jobs(jsonb)
    TO notify_definer;
-- The worker's dispatcher hands due deliveries to channel jobs (or sends them itself) and queues its next run.
GRANT EXECUTE ON FUNCTION notify_private.dispatch_deliveries(text, bigint, text[]),
    notify_private.queue_dispatch(timestamptz), notify_private.kept_deliveries(bigint),
    notify_private.adopt_kept_deliveries(bigint),
    notify_private.hand_over_deliveries(text, uuid[], float8, text), notify_private.delivery_queue(text, text)
    TO notify_worker;
GRANT EXECUTE ON FUNCTION notify.send_test(text) TO notify_authenticated;

-- send_test (owned by notify_definer) sends through notify.send.
GRANT EXECUTE ON FUNCTION
    notify.send(uuid, text, text, text, text, jsonb, text[], text, jsonb, text, timestamptz, timestamptz, text, jsonb)
    TO notify_definer;
GRANT INSERT ON notify.notifications TO notify_definer;
CREATE POLICY "definer functions send test notifications to the caller" ON notify.notifications FOR INSERT
    TO notify_definer WITH CHECK (user_id = notify.current_user_id());

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
