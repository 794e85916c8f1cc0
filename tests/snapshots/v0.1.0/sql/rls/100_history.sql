-- Grants of notification history (after 010_reset dropped them all): end users read their own.

GRANT EXECUTE ON FUNCTION notify.check_history_filters(timestamptz, timestamptz, text, text, text, integer),
    notify.history(timestamptz, timestamptz, text, text, text, text, timestamptz, uuid, integer)
    TO notify_authenticated;
