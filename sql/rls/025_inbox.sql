-- Who reads the notification center's view; the notifications' policies decide which rows (security_invoker).

GRANT SELECT ON notify.inbox TO notify_authenticated, notify_worker;
-- notify.mark_all_read marks read what the center shows, through the view.
GRANT UPDATE (read_at) ON notify.inbox TO notify_authenticated;
