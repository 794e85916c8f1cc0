-- Who reads the notification center's view; the notifications' policies decide which rows (security_invoker).

GRANT SELECT ON notify.inbox TO notify_authenticated, notify_worker;
-- notify.mark_all_read marks read what the center shows, through the view.
GRANT UPDATE (read_at) ON notify.inbox TO notify_authenticated;
-- The counts and the seen watermark read the inbox proper, through its view.
GRANT SELECT ON notify.center TO notify_authenticated, notify_worker, notify_definer;
GRANT SELECT ON notify.inbox TO notify_definer;
