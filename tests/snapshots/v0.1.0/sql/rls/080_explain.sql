-- Grants of explain and cancel (after 010_reset dropped them all).

GRANT EXECUTE ON FUNCTION notify.explain(uuid) TO notify_authenticated, notify_service, notify_admin, notify_worker;
GRANT EXECUTE ON FUNCTION notify.cancel(uuid), notify.cancel(uuid, text) TO notify_service, notify_admin;
GRANT EXECUTE ON FUNCTION notify.cancel(uuid) TO notify_definer;

-- cancel (owned by notify_definer) takes a scheduled notification out of the center.
GRANT UPDATE (deleted_at) ON notify.notifications TO notify_definer;
