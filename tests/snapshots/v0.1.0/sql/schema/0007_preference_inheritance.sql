-- 0007_preference_inheritance: a user's preference row may leave push or e-mail unset, so that
-- each switch is decided by the most specific level that sets it (user type row, user global row,
-- org type row, org global row, default) instead of by whichever row exists.
-- Landed migrations never change: add a new numbered file instead.

ALTER TABLE notify.notification_preferences
    ALTER COLUMN push_enabled DROP NOT NULL,
    ALTER COLUMN push_enabled DROP DEFAULT,
    ALTER COLUMN email_enabled DROP NOT NULL,
    ALTER COLUMN email_enabled DROP DEFAULT;
COMMENT ON COLUMN notify.notification_preferences.push_enabled IS 'NULL: not set here; the next level decides';
COMMENT ON COLUMN notify.notification_preferences.email_enabled IS 'NULL: not set here; the next level decides';
COMMENT ON COLUMN notify.notification_preferences.digest_frequency IS 'NULL: not set here; the next level decides';
