-- Grants of the analytics report (after 010_reset dropped them all).

-- The report runs as the caller: the policies of notification_analytics keep an org admin to their org.
GRANT EXECUTE ON FUNCTION notify.analytics(timestamptz, timestamptz, text) TO notify_admin;
GRANT SELECT ON notify.analytics_daily, notify.analytics_monthly TO notify_admin;
