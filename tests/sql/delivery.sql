-- Delivery planning as a DBA reads it: which channels a notification goes out on, and why not.
SELECT plan(13);

SET ROLE notify_service;
SELECT set_config('request.jwt.claims', '{"sub": "pgtap", "role": "service"}', true);
SELECT notify.upsert_recipient_v2('00000000-0000-4000-8000-00000000000a', 'ada@example.com');

SELECT notify.send('00000000-0000-4000-8000-00000000000a', 'task', 'Normal', priority => 'normal');
SELECT results_eq(
    $$SELECT channel, status, reason FROM notify.delivery_decisions d
      JOIN notify.notifications n ON n.id = d.notification_id WHERE n.title = 'Normal'
      ORDER BY array_position(ARRAY['in_app', 'push', 'email'], channel)$$,
    $$VALUES ('in_app', 'sent', NULL), ('push', 'skipped', 'no active push subscription'),
             ('email', 'held', 'for the daily digest')$$,
    'a normal notification: in-app now, no device for push, e-mail waits for the daily digest');

SELECT notify.send('00000000-0000-4000-8000-00000000000a', 'security', 'Critical', priority => 'critical');
SELECT is((SELECT d.status FROM notify.delivery_decisions d JOIN notify.notifications n ON n.id = d.notification_id
           WHERE n.title = 'Critical' AND d.channel = 'email'), 'pending',
    'a critical one e-mails at once, digest or not');

SELECT notify.send('00000000-0000-4000-8000-00000000000a', 'user', 'Low', priority => 'low');
SELECT is((SELECT array_agg(d.channel ORDER BY d.channel) FROM notify.delivery_decisions d
           JOIN notify.notifications n ON n.id = d.notification_id WHERE n.title = 'Low'),
    ARRAY['email', 'in_app'], 'a low one never pushes');

SELECT notify.send('00000000-0000-4000-8000-00000000000a', 'task', 'In-app only', channels => ARRAY['in_app']);
SELECT is((SELECT count(*) FROM notify.delivery_decisions d JOIN notify.notifications n ON n.id = d.notification_id
           WHERE n.title = 'In-app only')::int, 1, 'a sender''s channels narrow the plan');

RESET ROLE;
SELECT is((SELECT array_agg(task_name) FROM procrastinate.procrastinate_jobs), ARRAY['dispatch_deliveries']::varchar[],
    'the sends queued one dispatcher job, no job per channel');
SELECT is((SELECT array_agg(channel) FROM notify.notification_deliveries WHERE status = 'pending' AND queued_at IS NULL),
    ARRAY['email'], 'only the pending e-mail waits for it');
SET ROLE notify_service;

SELECT notify.send('00000000-0000-4000-8000-00000000000b', 'security', 'No address', priority => 'critical');
SELECT is((SELECT d.reason FROM notify.delivery_decisions d JOIN notify.notifications n ON n.id = d.notification_id
           WHERE n.title = 'No address' AND d.channel = 'email'), 'no e-mail address',
    'a user without an address is skipped, with the reason');
RESET ROLE;

INSERT INTO notify.email_suppressions (email, reason) VALUES ('ada@example.com', 'bounced');
SET ROLE notify_service;
SELECT notify.send('00000000-0000-4000-8000-00000000000a', 'security', 'Suppressed', priority => 'critical');
SELECT is((SELECT d.status || ': ' || d.reason FROM notify.delivery_decisions d
           JOIN notify.notifications n ON n.id = d.notification_id
           WHERE n.title = 'Suppressed' AND d.channel = 'email'), 'suppressed: the address bounced',
    'an address that bounced gets nothing');
RESET ROLE;

SET ROLE notify_authenticated;
SELECT set_config('request.jwt.claims', '{"sub": "00000000-0000-4000-8000-00000000000a"}', true);
SELECT is((SELECT array_agg(DISTINCT user_id) FROM notify.delivery_decisions),
    ARRAY['00000000-0000-4000-8000-00000000000a']::uuid[], 'a user sees only their own deliveries');
SELECT throws_ok($$SELECT * FROM notify.dead_letters$$, '42501', NULL, 'and not the dead letters');
SELECT throws_ok($$SELECT notify_private.defer_jobs('[]')$$, '42501', NULL,
    'nor may they defer jobs themselves');
RESET ROLE;

SET ROLE notify_admin;
SELECT set_config('request.jwt.claims', '{"sub": "dba"}', true);
SELECT is((SELECT sum(deliveries)::int FROM notify.delivery_counts WHERE channel = 'email'), 5,
    'a DBA counts deliveries by channel and status');
SELECT is((SELECT jobs::int FROM notify.queue_depth WHERE queue = 'dispatch' AND status = 'todo'), 1,
    'and sees the queue depth (the dispatcher job waiting)');
RESET ROLE;

SELECT * FROM finish();
