-- 0004_quiet_hours: more than one quiet-hours window per preference row (weekdays and weekends apart).
-- Landed migrations never change: add a new numbered file instead.
-- The rules (local time, days, midnight, DST) are written out in sql/functions/065_quiet_hours.sql;
-- the trigger there refuses malformed windows with a message naming the bad field.

ALTER TABLE notify.notification_preferences
    ADD COLUMN quiet_hours_windows jsonb NOT NULL DEFAULT '[]';

COMMENT ON COLUMN notify.notification_preferences.quiet_hours_start IS
    'local wall-clock time (recipients.timezone) a quiet window starts; NULL with quiet_hours_end: no window';
COMMENT ON COLUMN notify.notification_preferences.quiet_hours_end IS
    'local time the window ends: on the next day when not after quiet_hours_start; equal to it: no window';
COMMENT ON COLUMN notify.notification_preferences.quiet_hours_days IS
    'ISO weekdays (1 = Monday) on which the quiet_hours_start/end window starts';
COMMENT ON COLUMN notify.notification_preferences.quiet_hours_windows IS
    'further windows [{"start": "HH:MM", "end": "HH:MM", "days": [6, 7]}], read like the quiet_hours_* columns';
