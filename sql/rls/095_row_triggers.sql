-- Grants and policies of row triggers (after 010_reset dropped them all).

-- No role gets EXECUTE on notify.on_row_change: firing a trigger needs none, attaching one does. A superuser
-- attaches it, or grants EXECUTE to the role that owns the host's tables (010_reset leaves such a grant alone).
-- notify.on_row_change (owned by notify_definer) inserts into notify.notifications, whose INSERT grant
-- notify_definer holds since 060_delivery_planning.sql; this policy lets it send to the row's user.
-- pg_trigger_depth() > 0: only from inside a trigger, so send_test, the one other definer function that
-- sends, keeps its own policy (the caller only).
CREATE POLICY "definer functions send to any user from row triggers" ON notify.notifications FOR INSERT
    TO notify_definer WITH CHECK (pg_catalog.pg_trigger_depth() > 0);
