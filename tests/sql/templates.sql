-- Templates as the database sees them: unknown names refused, SQL sends held until notifyd renders them.
SELECT plan(19);

SELECT is((SELECT count(DISTINCT type)::int FROM notify.notification_templates WHERE language = 'en'),
    (SELECT count(*)::int FROM notify.notification_types), 'every notification type has an English template');
SELECT is((SELECT count(DISTINCT type)::int FROM notify.notification_templates WHERE language = 'de'),
    (SELECT count(*)::int FROM notify.notification_types), 'and a German one');

INSERT INTO notify.recipients (user_id, email) VALUES ('00000000-0000-4000-8000-000000000008', 'eight@example.com');
SET ROLE notify_service;
SELECT set_config('request.jwt.claims', '{"sub": "pgtap", "role": "service"}', true);

SELECT throws_ok(
    $$SELECT notify.send('00000000-0000-4000-8000-000000000008', 'task', template => 'no_such_thing')$$,
    '22023', 'template "no_such_thing" does not exist in any language', 'an unknown template is refused at create');
SELECT lives_ok(
    $$SELECT notify.send('00000000-0000-4000-8000-000000000008', 'security', template => 'security_login',
                         template_vars => '{"device": "Firefox", "location": "Berlin"}', priority => 'critical')$$,
    'a template notification without a title is sent');
RESET ROLE;
SELECT is((SELECT held_until FROM notify.notifications WHERE template_id = 'security_login'), 'infinity'::timestamptz,
    'it is held until notifyd renders it');
SELECT is((SELECT reason FROM notify.notification_deliveries WHERE channel = 'in_app'),
    'waiting for its template to be rendered', 'its in-app delivery says why it waits');
SELECT is((SELECT array_agg(task_name) FROM procrastinate.procrastinate_jobs), ARRAY['render_notifications']::varchar[],
    'one render job, and no delivery job yet');
SELECT is((SELECT args -> 'notification_ids' FROM procrastinate.procrastinate_jobs),
    (SELECT jsonb_build_array(id) FROM notify.notifications), 'the render job names the notification');

SET ROLE notify_authenticated;
SELECT set_config('request.jwt.claims', '{"sub": "00000000-0000-4000-8000-000000000008", "role": "authenticated"}', true);
SELECT is(notify.unread_count() -> 'count', '0'::jsonb, 'the unread count leaves an unrendered notification out');
RESET ROLE;

SET ROLE notify_worker;
SELECT ok(notify_private.store_rendering((SELECT id FROM notify.notifications), 'New sign-in from Firefox',
    'From Berlin', '{"email": {"subject": "s", "html": "<p>h</p>", "text": "t"}}'), 'notifyd stores the rendering');
SELECT ok(NOT notify_private.store_rendering((SELECT id FROM notify.notifications), 'again', '', '{}'),
    'a second rendering (a retried job) changes nothing');
RESET ROLE;
SELECT is((SELECT (title, held_until IS NULL) FROM notify.notifications), ('New sign-in from Firefox'::text, true),
    'the notification shows the rendered title and is released');
SELECT is((SELECT status FROM notify.notification_deliveries WHERE channel = 'in_app'), 'sent', 'in-app is sent');
SELECT is((SELECT array_agg(task_name ORDER BY task_name) FROM procrastinate.procrastinate_jobs),
    ARRAY['dispatch_deliveries', 'render_notifications']::varchar[], 'its e-mail delivery got a dispatcher job');
SELECT is((SELECT array_agg(channel) FROM notify.notification_deliveries WHERE status = 'pending' AND queued_at IS NULL),
    ARRAY['email'], 'which hands it to a channel job');

SET ROLE notify_service;
SELECT notify.send('00000000-0000-4000-8000-000000000008', 'security', template => 'security_login', priority => 'critical');
RESET ROLE;
SET ROLE notify_worker;
SELECT ok(notify_private.render_failed((SELECT id FROM notify.notifications WHERE rendered IS NULL),
    'template "security_login" (en) title_template: ''device'' is undefined'), 'a rendering that failed is recorded');
RESET ROLE;
SELECT is((SELECT array_agg(DISTINCT d.status || ': ' || d.reason) FROM notify.notification_deliveries AS d
           JOIN notify.notifications AS n ON n.id = d.notification_id
           WHERE n.render_error IS NOT NULL AND d.channel <> 'push'),
    ARRAY['failed: template error: template "security_login" (en) title_template: ''device'' is undefined'],
    'its deliveries failed, with the reason');

SET ROLE notify_service;
SELECT notify.send('00000000-0000-4000-8000-000000000008', 'task', template => 'mention', send_at => now() + interval '1 hour',
                   template_vars => '{"actor": "A", "where": "B", "excerpt": "C"}', idempotency_key => 'later');
RESET ROLE;
SET ROLE notify_worker;
SELECT ok(notify_private.store_rendering((SELECT id FROM notify.notifications WHERE idempotency_key = 'later'),
    'A mentioned you in B', 'C', '{}'), 'a scheduled template notification is rendered at once');
RESET ROLE;
SELECT is((SELECT (n.held_until = n.send_at, d.status, d.scheduled_for = n.send_at AND d.queued_at IS NULL)
           FROM notify.notifications AS n
           JOIN notify.notification_deliveries AS d ON d.notification_id = n.id AND d.channel = 'in_app'
           WHERE n.idempotency_key = 'later'), (true, 'pending'::text, true),
    'but its real-time event still waits for send_at, released by the dispatcher then');

SELECT * FROM finish();
