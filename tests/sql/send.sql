-- The notify SQL API as a DBA reads it: what a service may send, and what it may not.
SELECT plan(14);

SET ROLE notify_service;
SELECT set_config('request.jwt.claims', '{"sub": "pgtap", "role": "service"}', true);

SELECT lives_ok(
    $$SELECT notify.send('00000000-0000-4000-8000-000000000001', 'task', 'Review PR #1')$$,
    'a service sends a notification to a user nobody told us about');
SELECT is((SELECT count(*) FROM notify.recipients WHERE user_id = '00000000-0000-4000-8000-000000000001')::int, 1,
    'and that user now exists as a bare recipient');
SELECT is((SELECT email FROM notify.recipients WHERE user_id = '00000000-0000-4000-8000-000000000001'), NULL,
    'without an e-mail address until one is known');
SELECT lives_ok(
    $$INSERT INTO notify.notifications (user_id, type, title) VALUES ('00000000-0000-4000-8000-000000000001', 'user', 'plain')$$,
    'a plain INSERT is a send too');
SELECT is((SELECT array_agg(seq ORDER BY seq) FROM notify.notifications), ARRAY[1, 2]::bigint[],
    'each gets the next seq of its user');

SELECT throws_ok($$SELECT notify.send('00000000-0000-4000-8000-000000000001', 'tweet', 'x')$$,
    '22023', 'unknown notification type "tweet"', 'an unknown type is refused');
SELECT throws_ok($$SELECT notify.send('00000000-0000-4000-8000-000000000001', 'task', 'x', priority => 'asap')$$,
    '23514', NULL, 'an unknown priority is refused');
SELECT throws_ok($$SELECT notify.send('00000000-0000-4000-8000-000000000001', 'task', '')$$,
    '23514', NULL, 'an empty title without a template is refused');
SELECT throws_ok($$SELECT notify.send_bulk(ARRAY(SELECT gen_random_uuid() FROM generate_series(1, 10001)), 'system', 'x')$$,
    '22003', 'send_bulk takes at most 10000 recipients, got 10001', 'more recipients than batch.max_recipients are refused');
SELECT throws_ok($$SELECT notify.mark_all_read()$$, '42501', NULL, 'a service cannot mark a user''s notifications read');

RESET ROLE;
SET ROLE notify_authenticated;
SELECT set_config('request.jwt.claims', '{"sub": "00000000-0000-4000-8000-000000000001"}', true);
SELECT is(notify.unread_count(), '{"count": 2, "by_type": {"task": 1, "user": 1}}'::jsonb, 'the user sees two unread');
SELECT is(notify.mark_all_read(), 2, 'and marks both read');
SELECT throws_ok($$SELECT notify.send('00000000-0000-4000-8000-000000000002', 'task', 'x')$$,
    '42501', NULL, 'a user cannot send');

SELECT set_config('request.jwt.claims', '{"sub": "00000000-0000-4000-8000-000000000002"}', true);
SELECT is((SELECT count(*) FROM notify.notifications)::int, 0, 'another user sees none of them');
RESET ROLE;

SELECT * FROM finish();
