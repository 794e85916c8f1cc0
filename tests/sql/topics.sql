-- Topics as they read in SQL: a user follows and mutes a topic, a service sends to it, an org admin broadcasts.
SELECT plan(12);

SELECT notify.upsert_recipient('00000000-0000-4000-8000-0000000000a1', org_id => '00000000-0000-4000-8000-00000000000a');
SELECT notify.upsert_recipient('00000000-0000-4000-8000-0000000000a2', org_id => '00000000-0000-4000-8000-00000000000a',
                               locale => 'de-CH');
SELECT notify.upsert_recipient('00000000-0000-4000-8000-0000000000b1', org_id => '00000000-0000-4000-8000-00000000000b');

SET ROLE notify_authenticated;
SELECT set_config('request.jwt.claims', '{"sub": "00000000-0000-4000-8000-0000000000a1"}', true);
SELECT is(notify.subscribe('00000000-0000-4000-8000-0000000000a1', 'releases'), true, 'a user follows a topic');
SELECT is(notify.subscribe('00000000-0000-4000-8000-0000000000a1', 'releases'), false, 'twice is once');
SELECT throws_ok($$SELECT notify.subscribe('00000000-0000-4000-8000-0000000000b1', 'releases')$$,
    'P0002', 'no recipient 00000000-0000-4000-8000-0000000000b1 in your scope', 'but not for someone else');
SELECT throws_ok($$SELECT notify.subscribe('00000000-0000-4000-8000-0000000000a1', 'no spaces')$$,
    '22023', NULL, 'a topic name has no spaces');
RESET ROLE;

SET ROLE notify_service;
SELECT set_config('request.jwt.claims', '{"sub": "pgtap", "role": "service"}', true);
SELECT lives_ok($$SELECT notify.subscribe('00000000-0000-4000-8000-0000000000a2', 'releases'),
                         notify.subscribe('00000000-0000-4000-8000-0000000000b1', 'releases'),
                         notify.mute_topic('00000000-0000-4000-8000-0000000000b1', 'releases')$$,
    'a service subscribes and mutes anyone');
SELECT isnt(notify.send_topic('releases', 'system', 'v2 is out'), NULL, 'a send to the topic makes a batch');
SELECT results_eq(
    $$SELECT user_id FROM notify.notifications WHERE title = 'v2 is out' ORDER BY user_id$$,
    $$VALUES ('00000000-0000-4000-8000-0000000000a1'::uuid), ('00000000-0000-4000-8000-0000000000a2'::uuid)$$,
    'that reached every follower but the muted one');
SELECT is(notify.send_topic('quiet-topic', 'system', 'x'), NULL, 'nobody follows it: no batch');
RESET ROLE;

SET ROLE notify_admin;
SELECT set_config('request.jwt.claims', '{"sub": "ops", "role": "admin", "org_id": "00000000-0000-4000-8000-00000000000a"}', true);
SELECT is(notify.broadcast_preview('00000000-0000-4000-8000-00000000000a', 'system', locale => 'de') -> 'recipients',
    '1'::jsonb, 'the preview counts the org''s German speakers');
SELECT throws_ok($$SELECT notify.broadcast('00000000-0000-4000-8000-00000000000b', 'system', 'x')$$,
    'P0002', NULL, 'another org is not found');
SELECT throws_ok($$SELECT notify.broadcast(NULL, 'system', 'x')$$, '42501', NULL, 'every org is for DBAs');
SELECT is((SELECT count(*) FROM notify.notification_batches)::int, 0,
    'and the service''s batch is not this org admin''s to see');
RESET ROLE;

SELECT * FROM finish();
