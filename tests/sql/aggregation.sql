-- Aggregation as a DBA reads it: what folds into a group, what starts a new one, and what a fold leaves alone.
SELECT plan(30);

-- The clock, pinned: the window runs from the group's first notification.
UPDATE notify.settings SET value = 'true' WHERE key = 'clock.pinnable';
SET notify.clock = '2030-01-01 09:00:00+00';
SET ROLE notify_service;
SELECT set_config('request.jwt.claims', '{"sub": "pgtap", "role": "service"}', true);
SELECT notify.upsert_recipient_v2('00000000-0000-4000-8000-0000000000c1', 'ada@example.com');

SELECT notify.send('00000000-0000-4000-8000-0000000000c1', 'task', 'Ticket #1 assigned', group_key => 'assign',
                   data => '{"group_title": "{count} tickets assigned", "ticket": 1}');
SET notify.clock = '2030-01-01 09:01:00+00';
SELECT is(notify.send('00000000-0000-4000-8000-0000000000c1', 'task', 'Ticket #2 assigned', 'second', group_key => 'assign',
                      data => '{"group_title": "{count} tickets assigned", "ticket": 2}'),
    (SELECT id FROM notify.notifications WHERE group_key = 'assign'),
    'a second send within the window answers with the group''s id');
SET notify.clock = '2030-01-01 09:04:59+00';
SELECT notify.send('00000000-0000-4000-8000-0000000000c1', 'task', 'Ticket #3 assigned', 'third', group_key => 'assign',
                   data => '{"group_title": "{count} tickets assigned", "ticket": 3}');
SELECT results_eq(
    $$SELECT group_count, title, body, data ->> 'ticket', created_at, updated_at FROM notify.notifications
      WHERE group_key = 'assign'$$,
    $$VALUES (3, '3 tickets assigned', 'third', '3', '2030-01-01 09:00:00+00'::timestamptz,
              '2030-01-01 09:04:59+00'::timestamptz)$$,
    'three sends make one row: count 3, titled by data.group_title, the newest body and data, the first created_at');
SELECT is((SELECT seq FROM notify.notifications WHERE group_key = 'assign'),
    (SELECT last_seq FROM notify.recipients WHERE user_id = '00000000-0000-4000-8000-0000000000c1'),
    'each fold gives the group the user''s newest seq');
SELECT is((SELECT count(*) FROM notify.delivery_decisions
           WHERE user_id = '00000000-0000-4000-8000-0000000000c1')::int, 3,
    'folds plan no deliveries: only the first send''s in-app, push and e-mail rows exist');
SELECT results_eq(
    $$SELECT f.group_count, f.title, f.folded_at FROM notify.notification_folds f ORDER BY f.group_count$$,
    $$VALUES (2, 'Ticket #2 assigned', '2030-01-01 09:01:00+00'::timestamptz),
             (3, 'Ticket #3 assigned', '2030-01-01 09:04:59+00'::timestamptz)$$,
    'every fold is recorded with the title its sender gave');

SET notify.clock = '2030-01-01 09:05:00+00';
SELECT isnt(notify.send('00000000-0000-4000-8000-0000000000c1', 'task', 'Ticket #4 assigned', group_key => 'assign',
                        data => '{"group_title": "{count} tickets assigned"}'),
    (SELECT id FROM notify.notifications WHERE group_key = 'assign' AND group_count = 3),
    'five minutes after the group''s first notification the window is closed');
SELECT results_eq(
    $$SELECT group_count, title FROM notify.notifications WHERE group_key = 'assign' ORDER BY created_at$$,
    $$VALUES (3, '3 tickets assigned'), (1, 'Ticket #4 assigned')$$,
    'the late one starts a new group, titled by its own title while it is alone');

-- Read and deleted groups are closed.
RESET ROLE;
SET ROLE notify_authenticated;
SELECT set_config('request.jwt.claims', '{"sub": "00000000-0000-4000-8000-0000000000c1"}', true);
SELECT isnt(notify.mark_read((SELECT id FROM notify.notifications WHERE group_key = 'assign' AND group_count = 1)), NULL,
    'the user reads the new group');
RESET ROLE;
SET ROLE notify_service;
SELECT set_config('request.jwt.claims', '{"sub": "pgtap", "role": "service"}', true);
SELECT notify.send('00000000-0000-4000-8000-0000000000c1', 'task', 'Ticket #5 assigned', group_key => 'assign');
SELECT is((SELECT array_agg(group_count ORDER BY created_at, seq) FROM notify.notifications WHERE group_key = 'assign'),
    ARRAY[3, 1, 1], 'a read group is not folded into: the next send starts a new one');
RESET ROLE;
UPDATE notify.notifications SET deleted_at = notify.now() WHERE title = 'Ticket #5 assigned';
SET ROLE notify_service;
SELECT set_config('request.jwt.claims', '{"sub": "pgtap", "role": "service"}', true);
SELECT notify.send('00000000-0000-4000-8000-0000000000c1', 'task', 'Ticket #6 assigned', group_key => 'assign');
SELECT is((SELECT count(*) FROM notify.notifications WHERE group_key = 'assign')::int, 4,
    'nor is a deleted one');

-- What does not belong to the group.
SET notify.clock = '2030-01-01 10:00:00+00';
SELECT notify.send('00000000-0000-4000-8000-0000000000c1', 'task', 'a', group_key => 'build');
SELECT notify.send('00000000-0000-4000-8000-0000000000c1', 'task', 'b', group_key => 'deploy');
SELECT notify.send('00000000-0000-4000-8000-0000000000c1', 'agent', 'c', group_key => 'build');
SELECT notify.send('00000000-0000-4000-8000-0000000000c1', 'task', 'd');
SELECT notify.send('00000000-0000-4000-8000-0000000000c1', 'task', 'e');
SELECT notify.send('00000000-0000-4000-8000-0000000000c2', 'task', 'f', group_key => 'build');
SELECT is((SELECT count(*) FROM notify.notifications WHERE title IN ('a', 'b', 'c', 'd', 'e', 'f'))::int, 6,
    'another group_key, another type, no group_key or another user: each its own notification');
SELECT notify.send('00000000-0000-4000-8000-0000000000c1', 'task', 'g', priority => 'high', group_key => 'build');
SELECT notify.send('00000000-0000-4000-8000-0000000000c1', 'task', 'h', channels => ARRAY['in_app'], group_key => 'build');
SELECT is((SELECT count(*) FROM notify.notifications WHERE title IN ('g', 'h'))::int, 2,
    'another priority or other channels would be planned differently: not folded');
SELECT notify.send('00000000-0000-4000-8000-0000000000c1', 'security', 'Login', priority => 'critical', group_key => 'login');
SELECT notify.send('00000000-0000-4000-8000-0000000000c1', 'security', 'Login', priority => 'critical', group_key => 'login');
SELECT is((SELECT count(*) FROM notify.notifications WHERE group_key = 'login')::int, 2,
    'critical notifications never fold: each reaches the user on its own');
SELECT notify.send('00000000-0000-4000-8000-0000000000c1', 'task', 'Later', group_key => 'remind',
                   send_at => '2030-01-01 11:00:00+00');
SELECT notify.send('00000000-0000-4000-8000-0000000000c1', 'task', 'Now', group_key => 'remind');
SELECT notify.send('00000000-0000-4000-8000-0000000000c1', 'task', 'Later too', group_key => 'remind',
                   send_at => '2030-01-01 11:00:00+00');
SELECT is((SELECT array_agg(group_count ORDER BY seq) FROM notify.notifications WHERE group_key = 'remind'),
    ARRAY[1, 1, 1], 'a notification scheduled for later neither folds nor is folded into');
SELECT is((SELECT group_count FROM notify.notifications WHERE title = 'a'), 1,
    'and none of these touched the open build group');

-- Idempotency keys still win.
SELECT notify.send('00000000-0000-4000-8000-0000000000c1', 'task', 'First', group_key => 'pr', idempotency_key => 'pr-1');
SELECT is(notify.send('00000000-0000-4000-8000-0000000000c1', 'task', 'Second', group_key => 'pr', idempotency_key => 'pr-2'),
    (SELECT id FROM notify.notifications WHERE idempotency_key = 'pr-1'),
    'a keyed send folds like any other, and answers with the group''s id');
SELECT is(notify.send('00000000-0000-4000-8000-0000000000c1', 'task', 'Second', group_key => 'pr', idempotency_key => 'pr-2'),
    (SELECT id FROM notify.notifications WHERE idempotency_key = 'pr-1'),
    'replaying the folded key answers with the group''s id again');
SELECT is(notify.send('00000000-0000-4000-8000-0000000000c1', 'task', 'First', group_key => 'pr', idempotency_key => 'pr-1'),
    (SELECT id FROM notify.notifications WHERE idempotency_key = 'pr-1'),
    'replaying the group''s own key too');
SELECT results_eq($$SELECT group_count, title FROM notify.notifications WHERE group_key = 'pr'$$,
    $$VALUES (2, 'Second')$$, 'replays fold nothing: count 2, and without data.group_title the newest title');

-- A plain INSERT folds too, and reports it as no row inserted.
SELECT results_eq(
    $$WITH inserted AS (
          INSERT INTO notify.notifications (user_id, type, title, group_key)
          VALUES ('00000000-0000-4000-8000-0000000000c1', 'task', 'Third', 'pr') RETURNING id)
      SELECT count(*)::int FROM inserted$$,
    $$VALUES (0)$$, 'a plain INSERT that folds makes no row: RETURNING gives nothing');
SELECT is((SELECT group_count FROM notify.notifications WHERE group_key = 'pr'), 3, 'but the group counts it');
SELECT lives_ok(
    $$INSERT INTO notify.notifications (user_id, type, title, group_key, data)
      VALUES ('00000000-0000-4000-8000-0000000000c1', 'task', 'one', 'multi', '{"group_title": "{count} in one go"}'),
             ('00000000-0000-4000-8000-0000000000c1', 'task', 'two', 'multi', '{"group_title": "{count} in one go"}'),
             ('00000000-0000-4000-8000-0000000000c1', 'task', 'three', 'multi', '{"group_title": "{count} in one go"}')$$,
    'one INSERT of three rows of one group');
SELECT results_eq($$SELECT group_count, title FROM notify.notifications WHERE group_key = 'multi'$$,
    $$VALUES (3, '3 in one go')$$, 'folds into the first of them');

-- Bad input is refused whether or not it would fold.
SELECT throws_ok(
    $$SELECT notify.send('00000000-0000-4000-8000-0000000000c1', 'task', 'x', group_key => 'pr', data => '{"group_title": 5}')$$,
    '22023', 'data.group_title must be a string of 1 to 255 characters, got 5', 'a group_title that is no string is refused');
SELECT throws_ok(
    $$SELECT notify.send('00000000-0000-4000-8000-0000000000c1', 'task', '', group_key => 'pr')$$,
    '23514', NULL, 'an empty title is refused, not folded');
SELECT throws_ok(
    $$SELECT notify.send('00000000-0000-4000-8000-0000000000c1', 'task', repeat('x', 256), group_key => 'pr')$$,
    '23514', NULL, 'so is a title that is too long');
SELECT is((SELECT group_count FROM notify.notifications WHERE group_key = 'pr'), 3, 'and the group is unchanged');

-- A window of 0 turns folding off.
RESET ROLE;
UPDATE notify.settings SET value = '"0 seconds"' WHERE key = 'aggregation.window';
SET ROLE notify_service;
SELECT set_config('request.jwt.claims', '{"sub": "pgtap", "role": "service"}', true);
SELECT notify.send('00000000-0000-4000-8000-0000000000c1', 'task', 'Off', group_key => 'off');
SELECT notify.send('00000000-0000-4000-8000-0000000000c1', 'task', 'Off', group_key => 'off');
SELECT is((SELECT count(*) FROM notify.notifications WHERE group_key = 'off')::int, 2,
    'with aggregation.window at 0 nothing folds');

-- Folds are the user's own rows.
RESET ROLE;
SET ROLE notify_authenticated;
SELECT set_config('request.jwt.claims', '{"sub": "00000000-0000-4000-8000-0000000000c1"}', true);
SELECT is((SELECT count(*) FROM notify.notification_folds)::int, 6, 'a user reads the folds of their notifications');
SELECT set_config('request.jwt.claims', '{"sub": "00000000-0000-4000-8000-0000000000c2"}', true);
SELECT is((SELECT count(*) FROM notify.notification_folds)::int, 0, 'another user reads none of them');
RESET ROLE;

SELECT * FROM finish();
