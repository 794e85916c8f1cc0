-- Escalation chains as a DBA reads them: a type's steps become deliveries due at their times; seeing the
-- notification cancels the steps still waiting, with the time it was seen; critical ignores the chain.
-- Grace (no device, an e-mail address, a daily digest) gets "task" notifications; the clock is pinned.
SELECT plan(10);

UPDATE notify.settings SET value = 'true' WHERE key = 'clock.pinnable';
SET notify.clock = '2026-11-20 10:00+00';
INSERT INTO notify.recipients (user_id, email) VALUES ('00000000-0000-4000-8000-0000000000e1', 'grace@example.com');
INSERT INTO notify.notification_preferences (user_id, digest_frequency)
VALUES ('00000000-0000-4000-8000-0000000000e1', 'daily');

SELECT is(notify.set_escalation('task', '[{"channel": "in_app"}, {"channel": "email", "after": "15 minutes"}]'),
    '[{"channel": "in_app", "after": "00:00:00"}, {"channel": "email", "after": "00:15:00", "unless": "seen"}]'::jsonb,
    'the chain comes back normalized: every after an interval, a later step waits unless seen');

CREATE TEMPORARY TABLE sent AS
SELECT notify.send('00000000-0000-4000-8000-0000000000e1', 'task', 'Review the spec') AS id;

SELECT results_eq(
    $$SELECT channel, status, scheduled_for, unless FROM notify.notification_deliveries
      WHERE notification_id = (SELECT id FROM sent)$$,
    $$VALUES ('email', 'pending', '2026-11-20 10:15+00'::timestamptz, 'seen')$$,
    'the e-mail step waits in the ledger for its time, as an e-mail (not held for her daily digest)');
SELECT is(notify.explain((SELECT id FROM sent)) #>> '{escalation,1,state}', 'planned', 'explain: the step is planned');

SET notify.clock = '2026-11-20 10:07+00';
UPDATE notify.notifications SET seen_at = notify.now() WHERE id = (SELECT id FROM sent);
SELECT results_eq(
    $$SELECT status, reason FROM notify.notification_deliveries WHERE notification_id = (SELECT id FROM sent)$$,
    $$VALUES ('cancelled', 'cancelled: the user saw it at 2026-11-20 10:07:00 UTC')$$,
    'seeing it cancels the waiting step, and says when');
SELECT is(notify.explain((SELECT id FROM sent)) #>> '{escalation,1,cancelled_at}', '2026-11-20T10:07:00+00:00',
    'explain: cancelled at the time it was seen');
SELECT is(notify.explain((SELECT id FROM sent)) ->> 'rule',
    'escalation chain: each step on its channel at its time, a later one only while the notification is unseen (or unread); it replaces the channels of priority normal',
    'explain names the rule that applied');

CREATE TEMPORARY TABLE critical AS
SELECT notify.send('00000000-0000-4000-8000-0000000000e1', 'task', 'Outage', priority => 'critical') AS id;
SELECT results_eq(
    $$SELECT channel, status, scheduled_for, unless FROM notify.notification_deliveries
      WHERE notification_id = (SELECT id FROM critical)$$,
    $$VALUES ('email', 'pending', NULL::timestamptz, NULL::text)$$,
    'critical ignores the chain: every channel at once');
SELECT is(notify.explain((SELECT id FROM critical)) ->> 'escalation', NULL, 'explain: no steps for critical');

SELECT throws_ok(
    $$SELECT notify.set_escalation('task', '[{"channel": "fax"}]')$$,
    '22023', 'escalation step 1: channel must be one of in_app, push, email, webhook, chat, sms, got "fax"',
    'an unknown channel is refused with the step it is about');
SELECT throws_ok(
    $$SELECT notify.set_escalation('task', '[{"channel": "email", "after": "soon"}]')$$,
    '22007', 'escalation step 1: after must be an interval such as "15 minutes", got "soon"',
    'a malformed after is refused');

SELECT * FROM finish();
