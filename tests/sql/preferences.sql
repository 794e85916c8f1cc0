-- Preferences and org policy as a DBA reads them: a user's switches, an org admin's lock, what the planner does.
SELECT plan(14);

SET ROLE notify_service;
SELECT set_config('request.jwt.claims', '{"sub": "pgtap", "role": "service"}', true);
SELECT notify.upsert_recipient_v2('00000000-0000-4000-8000-0000000000c1', 'cy@example.com',
                               org_id => '00000000-0000-4000-8000-0000000000f1');
RESET ROLE;

-- The user, through PostgREST-style SQL.
SET ROLE notify_authenticated;
SELECT set_config('request.jwt.claims', '{"sub": "00000000-0000-4000-8000-0000000000c1"}', true);
SELECT is(jsonb_array_length(notify.preferences() -> 'items'), (SELECT count(*)::int FROM notify.notification_types),
    'notify.preferences() has one item per notification type');
SELECT is(notify.preferences() #>> '{global,default_digest_frequency}', 'daily', 'new users get the daily digest');
SELECT is(notify.set_preference('task', '{"push_enabled": false, "digest_frequency": "instant"}') ->> 'push_enabled',
    'false', 'set_preference turns push off for task and answers the item');
SELECT is((SELECT count(*)::int FROM notify.notification_preferences), 1, 'one row, the user''s own, for task');
SELECT throws_ok($$SELECT notify.set_preference('task', '{"digest_time": "25:00"}')$$, '22007',
    'digest_time must be a time of day "HH:MM" or "HH:MM:SS" from 00:00 to 23:59:59, got "25:00"',
    'a bad time is refused with its key and value');
SELECT throws_ok($$SELECT notify.set_preference('task', '{"in_app_enabled": false}')$$, '23514', NULL,
    'in-app cannot be turned off');
SELECT throws_ok($$SELECT notify.set_preference('parcel', '{}')$$, '22023', 'unknown notification type "parcel"',
    'an unknown type is refused');
SELECT lives_ok($$SELECT notify.set_global_preferences('{"all_email_enabled": false, "default_digest_frequency": "instant"}')$$,
    'the global switches are the seed''s keys');
SELECT throws_ok($$SELECT notify.set_org_preference('00000000-0000-4000-8000-0000000000f1', 'security', '{}')$$,
    '42501', NULL, 'users do not set org policy');
RESET ROLE;

-- The org admin: security e-mail is mandatory.
SET ROLE notify_admin;
SELECT set_config('request.jwt.claims', '{"sub": "ops", "org_id": "00000000-0000-4000-8000-0000000000f1"}', true);
SELECT is(notify.set_org_preference('00000000-0000-4000-8000-0000000000f1', 'security',
                                    '{"email_enabled": true, "email_locked": true}') ->> 'email_locked',
    'true', 'an org admin locks security e-mail on');
SELECT throws_ok($$SELECT notify.org_preferences('00000000-0000-4000-8000-0000000000f2')$$, 'P0002', NULL,
    'and sees no other org');
RESET ROLE;

SET ROLE notify_authenticated;
SELECT set_config('request.jwt.claims', '{"sub": "00000000-0000-4000-8000-0000000000c1"}', true);
SELECT throws_ok($$SELECT notify.set_preference('security', '{"email_enabled": false}')$$, '23514',
    'e-mail is locked on by your organization''s admin for security notifications',
    'the user cannot turn a locked channel off, and is told why');
RESET ROLE;

-- What the planner makes of it.
SET ROLE notify_service;
SELECT set_config('request.jwt.claims', '{"sub": "pgtap", "role": "service"}', true);
SELECT notify.send('00000000-0000-4000-8000-0000000000c1', 'task', 'Task', priority => 'high');
SELECT notify.send('00000000-0000-4000-8000-0000000000c1', 'security', 'Login', priority => 'high');
SELECT results_eq(
    $$SELECT n.title, d.channel, d.status FROM notify.delivery_decisions d
      JOIN notify.notifications n ON n.id = d.notification_id WHERE d.channel IN ('push', 'email')
      ORDER BY n.title, d.channel$$,
    $$VALUES ('Login', 'email', 'pending'), ('Login', 'push', 'skipped'),
             ('Task', 'email', 'skipped'), ('Task', 'push', 'skipped')$$,
    'push off for task is skipped; task e-mail follows the global switch the user turned off (the task row never set it); security e-mail goes out because the org locked it on');
RESET ROLE;

SET ROLE notify_admin;
SELECT set_config('request.jwt.claims', '{"sub": "ops", "org_id": "00000000-0000-4000-8000-0000000000f1"}', true);
SELECT is(notify.org_delivery_stats('00000000-0000-4000-8000-0000000000f1') #>> '{deliveries,email,skipped}', '1',
    'the org admin counts the org''s deliveries by channel and status');
RESET ROLE;

SELECT * FROM finish();
