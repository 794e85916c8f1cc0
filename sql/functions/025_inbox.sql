-- The notification center's one visibility rule: every reader (list, get, unread counts, the real-time
-- hub's counts, history, export, the push badge) reads notify.inbox instead of repeating it.
--
-- Visible means: not deleted, due (a scheduled notification appears at its send_at), and not a template
-- notification still waiting for its rendering (held_until 'infinity'), so that nobody ever sees its
-- placeholders. A row held only by the in-app rate limit is visible: the limit delays its events and
-- deliveries, not its place in the center.
--
-- The view leaves out nothing but rows: it has the table's columns, and row-level security on
-- notify.notifications decides whose rows a caller reads (security_invoker). It lives with the
-- re-applied files, as the other views do, so that each migrate gives it the table's columns as they
-- stand; a migration that changes the type of a column drops notify.inbox first.

CREATE OR REPLACE VIEW notify.inbox WITH (security_invoker = true) AS
SELECT n.*
FROM notify.notifications AS n
WHERE n.deleted_at IS NULL
  AND (n.send_at IS NULL OR n.send_at <= notify.now())
  AND n.held_until IS DISTINCT FROM 'infinity';
COMMENT ON VIEW notify.inbox IS 'the notifications the notification center shows: not deleted, due, and rendered';

-- The inbox proper: what the center lists by default and what its counts count. An archived notification has
-- left it for the Archive view (it stays in notify.inbox, so in history and export); a snoozed one is hidden
-- until its wake-up clears snoozed_until.
CREATE OR REPLACE VIEW notify.center WITH (security_invoker = true) AS
SELECT i.*
FROM notify.inbox AS i
WHERE i.archived_at IS NULL
  AND i.snoozed_until IS NULL;
COMMENT ON VIEW notify.center IS 'the inbox the badge and the unread count count: visible, not archived, not snoozed';
