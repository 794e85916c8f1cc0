-- Quiet hours as a DBA reads them: until when a user's non-critical push waits (NULL: it does not).
-- The rules are at the top of sql/functions/065_quiet_hours.sql.
-- Ada lives in Berlin (+02 in summer, +01 in winter). Her nights are quiet 22:00-08:00 from Monday to
-- Friday (the seed's one window) and 23:00-10:00 on Saturday and Sunday (an extra window).
SELECT plan(9);

INSERT INTO notify.recipients (user_id, timezone) VALUES ('00000000-0000-4000-8000-0000000000a1', 'Europe/Berlin');
INSERT INTO notify.notification_preferences
    (user_id, quiet_hours_start, quiet_hours_end, quiet_hours_days, quiet_hours_windows)
VALUES ('00000000-0000-4000-8000-0000000000a1', '22:00', '08:00', '[1, 2, 3, 4, 5]',
        '[{"start": "23:00", "end": "10:00", "days": [6, 7]}]');

-- 10 June 2026 is a Wednesday.
SELECT is(notify_private.quiet_hours_end('00000000-0000-4000-8000-0000000000a1', 'task', '2026-06-10 21:59+02'),
    NULL, 'Wednesday 21:59: not quiet yet');
SELECT is(notify_private.quiet_hours_end('00000000-0000-4000-8000-0000000000a1', 'task', '2026-06-10 22:00+02'),
    '2026-06-11 08:00+02'::timestamptz, 'Wednesday 22:00: quiet until Thursday 08:00');
SELECT is(notify_private.quiet_hours_end('00000000-0000-4000-8000-0000000000a1', 'task', '2026-06-13 03:00+02'),
    '2026-06-13 08:00+02'::timestamptz, 'Saturday 03:00: still Friday night''s window, which started on a weekday');
SELECT is(notify_private.quiet_hours_end('00000000-0000-4000-8000-0000000000a1', 'task', '2026-06-13 23:30+02'),
    '2026-06-14 10:00+02'::timestamptz, 'Saturday 23:30: the weekend window, until Sunday 10:00');
SELECT is(notify_private.quiet_hours_end('00000000-0000-4000-8000-0000000000a1', 'task', '2026-06-15 09:00+02'),
    '2026-06-15 10:00+02'::timestamptz, 'Monday 09:00: Sunday night''s window runs to 10:00');
SELECT is(notify_private.quiet_hours_end('00000000-0000-4000-8000-0000000000a1', 'task', '2026-03-29 01:30+01'),
    '2026-03-29 10:00+02'::timestamptz, 'the night the clocks go forward still ends at 10:00 local time');

INSERT INTO notify.notification_preferences (user_id, notification_type)
VALUES ('00000000-0000-4000-8000-0000000000a1', 'security');
SELECT is(notify_private.quiet_hours_end('00000000-0000-4000-8000-0000000000a1', 'security', '2026-06-10 23:00+02'),
    NULL, 'her own row for security notifications has no quiet hours: it replaces the global windows');

SET ROLE notify_authenticated;
SELECT set_config('request.jwt.claims', '{"sub": "00000000-0000-4000-8000-0000000000a1"}', true);
SELECT is(notify.quiet_hours_end('task', '2026-06-10 23:00+02'), '2026-06-11 08:00+02'::timestamptz,
    'Ada asks "am I in quiet hours?" and learns until when');
RESET ROLE;

SELECT throws_ok(
    $$UPDATE notify.notification_preferences
      SET quiet_hours_windows = '[{"start": "25:00", "end": "07:00", "days": [6]}]'$$,
    '22023', 'quiet_hours_windows[0].start must be a time "HH:MM" from 00:00 to 23:59, got "25:00"',
    'a malformed window is refused with the field it is about');

SELECT * FROM finish();
