-- Grants of quiet hours (after 010_reset dropped them all).

-- The planner runs as notify_definer; the worker asks again when a held delivery comes due.
GRANT EXECUTE ON FUNCTION notify_private.quiet_hours_end(uuid, text, timestamptz) TO notify_definer, notify_worker;
-- "Am I in quiet hours?" for the calling user (definer rights read only their own row).
GRANT EXECUTE ON FUNCTION notify.quiet_hours_end(text, timestamptz)
    TO notify_authenticated, notify_definer, notify_worker;
-- The validation trigger runs with definer rights (users cannot reach notify_private).
GRANT EXECUTE ON FUNCTION notify_private.are_weekdays(jsonb) TO notify_definer;
