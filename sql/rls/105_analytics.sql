-- Grants of the analytics report (after 010_reset dropped them all).

-- The report runs as the caller: the policies of notification_analytics keep an org admin to their org.
GRANT EXECUTE ON FUNCTION notify.analytics(timestamptz, timestamptz, text) TO notify_admin;
GRANT SELECT ON notify.analytics_daily, notify.analytics_monthly, notify.delivery_events TO notify_admin;
GRANT SELECT ON notify.delivery_events TO notify_worker;
-- What notify.delivery_events reads a ledger row with (and the definer functions that keep those events).
GRANT EXECUTE ON FUNCTION notify_private.worker_events(notify.notification_deliveries)
    TO notify_admin, notify_worker, notify_definer;
-- Called by the definer functions that send a delivery row again (retry_delivery, wake_snoozed).
GRANT EXECUTE ON FUNCTION notify_private.keep_worker_events(uuid[]) TO notify_definer;
