-- 0020_inbox_states: the columns of the inbox states beyond read. Seen (the bell or the inbox showed the
-- notification) drives the badge and cancels escalation steps; archived leaves the inbox for the Archive view
-- and stays in history and export; snoozed hides the notification until its time. The functions, events and
-- escalation that use them are declared in sql/functions and sql/rls.
-- Landed migrations never change: add a new numbered file instead.

ALTER TABLE notify.notifications
    ADD COLUMN seen_at       timestamptz,
    ADD COLUMN archived_at   timestamptz,
    ADD COLUMN snoozed_until timestamptz;
COMMENT ON COLUMN notify.notifications.seen_at IS 'when the user first saw it (bell opened, inbox showed it); NULL: unseen';
COMMENT ON COLUMN notify.notifications.archived_at IS 'when the user archived it; NULL: in the inbox';
COMMENT ON COLUMN notify.notifications.snoozed_until IS 'hidden from the inbox until then, when it comes back as new';
