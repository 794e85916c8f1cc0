-- Retention, erasure and the audit log: who may call what, and what the log refuses.
SELECT plan(8);

SELECT is((SELECT max_read_per_user FROM notify.retention_policies WHERE notification_type IS NULL), 1000,
    'the default policy keeps 1,000 read notifications per user');
SELECT function_privs_are('notify', 'apply_retention', ARRAY['integer', 'integer'], 'notify_service', '{}'::text[],
    'services cannot apply retention');
SELECT function_privs_are('notify', 'erase_user', ARRAY['uuid'], 'notify_worker', '{}'::text[],
    'the worker cannot erase users');

INSERT INTO notify.recipients (user_id, email, org_id)
VALUES ('a11ce000-0000-4000-8000-000000000001', 'alice@example.com', '0a000000-0000-4000-8000-00000000000a');
SET LOCAL ROLE notify_admin;
SELECT set_config('request.jwt.claims', '{"sub": "d0000000-0000-4000-8000-000000000009", "role": "admin", '
    '"org_id": "0b000000-0000-4000-8000-00000000000b"}', true);
SELECT throws_ok($$SELECT notify.apply_retention()$$, '42501', NULL, 'an org admin cannot apply retention');
SELECT throws_ok($$SELECT notify.erase_user('a11ce000-0000-4000-8000-000000000001')$$, 'P0002', 'user not found',
    'an org admin cannot erase a user of another org');
SELECT set_config('request.jwt.claims', '{"sub": "dba", "role": "admin"}', true);
SELECT is((notify.erase_user('a11ce000-0000-4000-8000-000000000001') ->> 'recipients')::int, 1,
    'a DBA erases any user');
SELECT is((SELECT target FROM notify.audit_log WHERE action = 'user.erased') LIKE 'h:%', true,
    'the erasure is audited with a hashed user id');
RESET ROLE;
SELECT throws_ok($$DELETE FROM notify.audit_log$$, '42501', 'the audit log is append-only',
    'not even the owner deletes audit rows');

SELECT * FROM finish();
