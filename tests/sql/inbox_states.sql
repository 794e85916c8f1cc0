-- The inbox states as a user and the wake-up job see them: seen without a new seq, archived, snoozed and back.
SELECT plan(36);

UPDATE notify.settings SET value = 'true' WHERE key = 'clock.pinnable';
SET notify.clock = '2030-01-01 09:00:00+00';
SET ROLE notify_service;
SELECT set_config('request.jwt.claims', '{"sub": "pgtap", "role": "service"}', true);
SELECT notify.upsert_recipient('00000000-0000-4000-8000-0000000000d1');
SELECT notify.upsert_recipient('00000000-0000-4000-8000-0000000000d2');
SELECT notify.send('00000000-0000-4000-8000-0000000000d1', 'task', 'first', channels => ARRAY['in_app']);
SELECT notify.send('00000000-0000-4000-8000-0000000000d1', 'task', 'second', channels => ARRAY['in_app']);
SELECT notify.send('00000000-0000-4000-8000-0000000000d1', 'task', 'third', channels => ARRAY['in_app']);
SELECT notify.send('00000000-0000-4000-8000-0000000000d2', 'task', 'not yours', channels => ARRAY['in_app']);
RESET ROLE;
CREATE TEMPORARY TABLE before_seen AS SELECT id, title, seq FROM notify.notifications;
GRANT SELECT ON before_seen TO PUBLIC;

SET ROLE notify_authenticated;
SELECT set_config('request.jwt.claims', '{"sub": "00000000-0000-4000-8000-0000000000d1"}', true);
SELECT is(notify.seen_state(), '{"seen_seq": 0, "unseen_count": 3}'::jsonb, 'three unseen, no watermark yet');
SELECT is(notify.unread_count() -> 'count', '3'::jsonb, 'three unread');

-- Seen by id: only the caller's own, no new seq, the watermark stops below the oldest unseen.
SET notify.clock = '2030-01-01 09:01:00+00';
SELECT is(notify.mark_seen(ARRAY(SELECT id FROM before_seen WHERE title IN ('second', 'not yours'))), 1,
    'mark_seen counts the caller''s own newly seen notification, not another user''s');
SELECT is((SELECT seen_at FROM notify.notifications WHERE title = 'second'), '2030-01-01 09:01:00+00'::timestamptz,
    'seen_at is the clock''s time');
SELECT results_eq($$SELECT seq FROM notify.notifications ORDER BY seq$$,
    $$SELECT seq FROM before_seen WHERE title <> 'not yours' ORDER BY seq$$,
    'marking seen gives no notification a new seq: nothing is sent again');
SELECT is(notify.seen_state(), jsonb_build_object('seen_seq', 0, 'unseen_count', 2),
    'the oldest is still unseen: the watermark stays below it');
SELECT is(notify.mark_seen(NULL), 2, 'mark_seen(NULL) marks the rest of the inbox seen');
SELECT is(notify.seen_state(), jsonb_build_object('seen_seq', (SELECT max(seq) FROM before_seen WHERE title <> 'not yours'),
                                                  'unseen_count', 0),
    'all seen: the watermark is the newest seq');
SELECT is(notify.mark_seen(NULL), 0, 'marking seen again changes nothing');
SELECT throws_ok($$SELECT notify.mark_seen(ARRAY[NULL::uuid])$$, '22004', 'ids must not contain NULL',
    'a NULL id is refused');
RESET ROLE;
SELECT is((SELECT seen_at FROM notify.notifications WHERE title = 'not yours'), NULL,
    'another user''s notification stays unseen');
SELECT is((SELECT count(*)::int FROM notify.inbox_marks), 1, 'one watermark row, the caller''s');

-- Archive: leaves the inbox proper (counts, center), stays in notify.inbox (history, export); unarchive brings it back.
SET ROLE notify_authenticated;
SELECT set_config('request.jwt.claims', '{"sub": "00000000-0000-4000-8000-0000000000d1"}', true);
SET notify.clock = '2030-01-01 09:02:00+00';
SELECT is(notify.archive((SELECT id FROM before_seen WHERE title = 'first')), '2030-01-01 09:02:00+00'::timestamptz,
    'archive answers when');
SELECT ok((SELECT seq FROM notify.notifications WHERE title = 'first') > (SELECT max(seq) FROM before_seen),
    'an archive is a change: a new seq, so every session gets it');
SELECT is(notify.unread_count() -> 'count', '2'::jsonb, 'the archived one is not counted unread');
SELECT is((SELECT count(*)::int FROM notify.center), 2, 'nor shown in the inbox proper');
SELECT is((SELECT count(*)::int FROM notify.inbox), 3, 'but still in the center''s history and export');
SET notify.clock = '2030-01-01 09:03:00+00';
SELECT is(notify.archive((SELECT id FROM before_seen WHERE title = 'first')), '2030-01-01 09:02:00+00'::timestamptz,
    'archiving again keeps the first time');
SELECT lives_ok($$SELECT notify.unarchive((SELECT id FROM before_seen WHERE title = 'first'))$$, 'unarchive');
SELECT is((SELECT count(*)::int FROM notify.center), 3, 'unarchived: back in the inbox proper');
SELECT throws_ok(format('SELECT notify.archive(%L)', (SELECT id FROM before_seen WHERE title = 'not yours')),
    'P0002', NULL, 'another user''s notification is not found');
SELECT throws_ok(format('SELECT notify.unarchive(%L)', gen_random_uuid()), 'P0002', NULL, 'an unknown id is not found');

-- Snooze: the future only; hidden; woken by its in-app delivery's job as new, with a new seq.
SELECT throws_ok(format('SELECT notify.snooze(%L, %L)', (SELECT id FROM before_seen WHERE title = 'third'),
                        '2030-01-01 08:00:00+00'),
    '22023', 'a snooze must end in the future, got 2030-01-01 08:00:00+00', 'a snooze in the past is refused');
SELECT throws_ok(format('SELECT notify.snooze(%L, %L)', (SELECT id FROM before_seen WHERE title = 'not yours'),
                        '2030-01-02 08:00:00+00'),
    'P0002', NULL, 'another user''s notification cannot be snoozed');
SELECT is(notify.snooze((SELECT id FROM before_seen WHERE title = 'third'), '2030-01-01 10:00:00+00'),
    '2030-01-01 10:00:00+00'::timestamptz, 'snooze answers until when');
SELECT is((SELECT count(*)::int FROM notify.center WHERE title = 'third'), 0, 'snoozed: out of the inbox proper');
RESET ROLE;
SELECT results_eq(
    $$SELECT status, scheduled_for FROM notify.notification_deliveries
      WHERE notification_id = (SELECT id FROM before_seen WHERE title = 'third')$$,
    $$VALUES ('pending'::text, '2030-01-01 10:00:00+00'::timestamptz)$$,
    'its wake-up is its in-app delivery, pending until the snooze ends');
CREATE TEMPORARY TABLE wake AS SELECT id FROM notify.notification_deliveries
    WHERE notification_id = (SELECT id FROM before_seen WHERE title = 'third');
GRANT SELECT ON wake TO PUBLIC;
SET ROLE notify_worker;
SELECT is(notify_private.release_in_app(ARRAY(SELECT id FROM wake)), 0, 'a job run early wakes nothing');
SET notify.clock = '2030-01-01 10:00:00+00';
SELECT is(notify_private.release_in_app(ARRAY(SELECT id FROM wake)), 1, 'at its time the job wakes it');
RESET ROLE;
SELECT results_eq(
    $$SELECT snoozed_until, seen_at, read_at, seq > (SELECT max(seq) FROM before_seen)
      FROM notify.notifications WHERE title = 'third'$$,
    $$VALUES (NULL::timestamptz, NULL::timestamptz, NULL::timestamptz, true)$$,
    'back as new: unseen, unread, with a new seq');

-- A push again where the user's preferences want one: the device's push delivery is sent again.
INSERT INTO notify.push_subscriptions (user_id, kind, fcm_token)
VALUES ('00000000-0000-4000-8000-0000000000d1', 'fcm', 'device-token-d1');
SET ROLE notify_service;
SELECT set_config('request.jwt.claims', '{"sub": "pgtap", "role": "service"}', true);
SELECT notify.send('00000000-0000-4000-8000-0000000000d1', 'task', 'push me again', channels => ARRAY['in_app', 'push']);
RESET ROLE;
UPDATE notify.notification_deliveries SET status = 'sent', sent_at = notify.now(), queued_at = notify.now(), attempts = 1
WHERE notification_id = (SELECT id FROM notify.notifications WHERE title = 'push me again');
SET ROLE notify_authenticated;
SELECT set_config('request.jwt.claims', '{"sub": "00000000-0000-4000-8000-0000000000d1"}', true);
SELECT notify.snooze((SELECT id FROM notify.notifications WHERE title = 'push me again'), '2030-01-01 11:00:00+00');
RESET ROLE;
SELECT is((SELECT status FROM notify.notification_deliveries
           WHERE notification_id = (SELECT id FROM notify.notifications WHERE title = 'push me again') AND channel = 'push'),
    'sent', 'while snoozed, its push stays sent');
SET notify.clock = '2030-01-01 11:00:00+00';
SET ROLE notify_worker;
SELECT is(notify_private.release_in_app(ARRAY(
    SELECT id FROM notify.notification_deliveries
    WHERE notification_id = (SELECT id FROM notify.notifications WHERE title = 'push me again') AND channel = 'in_app')),
    1, 'woken at its time');
RESET ROLE;
SELECT results_eq(
    $$SELECT status, attempts, queued_at, sent_at FROM notify.notification_deliveries
      WHERE notification_id = (SELECT id FROM notify.notifications WHERE title = 'push me again') AND channel = 'push'$$,
    $$VALUES ('pending'::text, 0, NULL::timestamptz, NULL::timestamptz)$$,
    'back as new: its push goes again, with fresh attempts, for the dispatcher to send');
SELECT results_eq(
    $$SELECT event, created_at FROM notify.delivery_events
      WHERE notification_id = (SELECT id FROM notify.notifications WHERE title = 'push me again') AND channel = 'push'$$,
    $$VALUES ('sent'::text, '2030-01-01 10:00:00+00'::timestamptz)$$,
    'the earlier push''s send stays in the report (kept as an analytics row, as a retry keeps it)');

-- The push of a woken snooze spends the user's push rate limit like any push: past it, it waits for a token.
UPDATE notify.settings SET value = '2' WHERE key = 'rate_limit.push_per_hour';
SET notify.clock = '2030-01-01 12:00:00+00';
INSERT INTO notify.push_subscriptions (user_id, kind, fcm_token)
VALUES ('00000000-0000-4000-8000-0000000000d2', 'fcm', 'device-token-d2');
SET ROLE notify_service;
SELECT set_config('request.jwt.claims', '{"sub": "pgtap", "role": "service"}', true);
SELECT notify.send('00000000-0000-4000-8000-0000000000d2', 'task', 'limited', channels => ARRAY['in_app', 'push']);
SELECT notify.send('00000000-0000-4000-8000-0000000000d2', 'task', 'filler', channels => ARRAY['in_app', 'push']);
RESET ROLE;
UPDATE notify.notification_deliveries SET status = 'sent', sent_at = notify.now(), queued_at = notify.now(), attempts = 1
WHERE notification_id IN (SELECT id FROM notify.notifications WHERE title IN ('limited', 'filler'));
SET ROLE notify_authenticated;
SELECT set_config('request.jwt.claims', '{"sub": "00000000-0000-4000-8000-0000000000d2"}', true);
SELECT notify.snooze((SELECT id FROM notify.notifications WHERE title = 'limited'), '2030-01-01 12:10:00+00');
RESET ROLE;
SET notify.clock = '2030-01-01 12:10:00+00';
SET ROLE notify_worker;
SELECT is(notify_private.release_in_app(ARRAY(
    SELECT id FROM notify.notification_deliveries
    WHERE notification_id = (SELECT id FROM notify.notifications WHERE title = 'limited') AND channel = 'in_app')),
    1, 'the rate-limited one is woken at its time');
RESET ROLE;
SELECT results_eq(
    $$SELECT status, scheduled_for > '2030-01-01 12:10:00+00', reason FROM notify.notification_deliveries
      WHERE notification_id = (SELECT id FROM notify.notifications WHERE title = 'limited') AND channel = 'push'$$,
    $$VALUES ('pending'::text, true, 'push rate limit (2 per hour): waits for a token'::text)$$,
    'two pushes this hour at a limit of two per hour: its push again waits for a token');

SELECT * FROM finish();
