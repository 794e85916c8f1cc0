-- Grants of tracking and analytics (after 010_reset dropped them all).

-- The tracking routes and the WebSocket ack record as notify_worker (notifyd.db.as_worker).
GRANT EXECUTE ON FUNCTION notify_private.record_event(uuid, uuid, uuid, text, jsonb),
    notify_private.in_app_delivery(uuid, uuid)
    TO notify_worker;

-- The report runs as the caller: the policies of notification_analytics keep an org admin to their org.
GRANT EXECUTE ON FUNCTION notify.analytics(timestamptz, timestamptz, text) TO notify_admin;
GRANT SELECT ON notify.analytics_daily, notify.analytics_monthly TO notify_admin;
