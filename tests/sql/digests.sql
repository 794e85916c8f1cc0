-- Digests as a DBA reads them: when a user's digest is due in their time zone, and one per period.
SELECT plan(10);

UPDATE notify.settings SET value = 'true' WHERE key = 'clock.pinnable';
SET notify.clock = '2026-11-23 06:00+00';
INSERT INTO notify.recipients (user_id, email, timezone) VALUES
    ('00000000-0000-4000-8000-0000000000d1', 'dee@example.com', 'Europe/Berlin'),
    ('00000000-0000-4000-8000-0000000000d2', 'kir@example.com', 'Pacific/Kiritimati');
INSERT INTO notify.notifications (user_id, type, title) VALUES
    ('00000000-0000-4000-8000-0000000000d1', 'task', 'Review the digest'),
    ('00000000-0000-4000-8000-0000000000d1', 'user', 'Read it already');

SELECT is((SELECT reason FROM notify.notification_deliveries WHERE channel = 'email' LIMIT 1), 'for the daily digest',
    'new users get their non-urgent e-mail in the daily digest');
SELECT results_eq($$SELECT * FROM notify_private.digest_period('daily', 'Europe/Berlin', '09:00', 1, '2026-10-25 12:00+00')$$,
    $$VALUES ('2026-10-24 22:00+00'::timestamptz, '2026-10-25 08:00+00'::timestamptz)$$,
    'the Berlin day clocks go back starts at midnight CEST and its digest is due at 09:00 CET');
SELECT results_eq($$SELECT * FROM notify_private.digest_period('daily', 'Pacific/Kiritimati', '09:00', 1, '2026-11-22 20:00+00')$$,
    $$VALUES ('2026-11-22 10:00+00'::timestamptz, '2026-11-22 19:00+00'::timestamptz)$$,
    'in UTC+14 the day starts at 10:00 UTC the day before, and 09:00 is the evening before in UTC');
SELECT results_eq($$SELECT * FROM notify_private.digest_period('weekly', 'Etc/GMT+12', '09:00', 3, '2026-11-27 00:00+00')$$,
    $$VALUES ('2026-11-23 12:00+00'::timestamptz, '2026-11-25 21:00+00'::timestamptz)$$,
    'a UTC-12 week starts at its local Monday midnight; its digest is due on the chosen Wednesday at 09:00');

SELECT is((SELECT count(*)::int FROM notify_private.due_digests('2026-11-23 07:59+00', 10)), 0,
    '08:59 in Berlin: not due yet');
SELECT is((SELECT user_id FROM notify_private.due_digests('2026-11-23 08:00+00', 10)),
    '00000000-0000-4000-8000-0000000000d1'::uuid, '09:00 in Berlin: due (the Kiritimati user has nothing held)');

SET notify.clock = '2026-11-23 08:00+00';
UPDATE notify.notifications SET read_at = notify.now() WHERE title = 'Read it already';
SELECT is((SELECT array_length(notification_ids, 1) FROM notify_private.claim_digest(
               '00000000-0000-4000-8000-0000000000d1', 'daily', '2026-11-22 23:00+00', '2026-11-23 08:00+00')),
    1, 'claiming attaches the unread held e-mail only');
SELECT is((SELECT d.reason FROM notify.notification_deliveries AS d
           JOIN notify.notifications AS n ON n.id = d.notification_id
           WHERE d.channel = 'email' AND n.title = 'Read it already'),
    'read before the daily digest', 'what was read in the app before the digest is left out, and said so');
SELECT ok((SELECT notify_private.claim_digest('00000000-0000-4000-8000-0000000000d1', 'daily',
                                              '2026-11-22 23:00+00') IS NULL),
    'a second claim of the same period gets nothing');
SELECT throws_ok($$SELECT notify_private.claim_digest('00000000-0000-4000-8000-0000000000d1', 'hourly', now())$$,
    '22023', 'frequency must be daily or weekly, got "hourly"', 'only daily and weekly digests exist');

SELECT * FROM finish();
