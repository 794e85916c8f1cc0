-- Policy values live in notify.settings, where a DBA changes them with UPDATE.
SELECT plan(6);

SELECT is(notify.setting('rate_limit.push_per_hour'), '10'::jsonb, '10 push per user per hour');
SELECT is(notify.setting('rate_limit.in_app_per_hour'), '100'::jsonb, '100 in-app per user per hour');
SELECT is(notify.setting('rate_limit.email_per_day'), '20'::jsonb, '20 e-mails per user per day');
SELECT is(notify.setting('rate_limit.global_per_minute'), '10000'::jsonb, '10,000 per minute for bulk sends');
SELECT is((SELECT max_age FROM notify.retention_policies WHERE notification_type IS NULL), '90 days'::interval,
    'notifications are kept 90 days by default');
SELECT throws_ok($$UPDATE notify.settings SET value = '"soon"' WHERE key = 'aggregation.window'$$,
    '22023', 'setting "aggregation.window" must be a JSON interval value, got "soon"', 'a value its kind cannot read is refused');

SELECT * FROM finish();
