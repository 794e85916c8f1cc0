-- 0015_idempotency_fingerprint: what a request with an idempotency key asked for, so that a replay of
-- that key with another request is refused instead of answered with the first one's id; and the
-- per-user bucket of self-service test sends.
-- Landed migrations never change: add a new numbered file instead.

ALTER TABLE notify.notifications ADD COLUMN request_digest bytea;
COMMENT ON COLUMN notify.notifications.request_digest IS
    'sha256 of the request notify.send made it from (notify.request_digest), kept with its idempotency key';
ALTER TABLE notify.notification_folds ADD COLUMN request_digest bytea;
COMMENT ON COLUMN notify.notification_folds.request_digest IS
    'sha256 of the request notify.send made the folded notification from, kept with its idempotency key';
ALTER TABLE notify.notification_batches ADD COLUMN request_digest bytea;
COMMENT ON COLUMN notify.notification_batches.request_digest IS
    'sha256 of the request notify.send_bulk made the batch from (recipients included), kept with its idempotency key';

INSERT INTO notify.settings (key, value, kind, description) VALUES
    ('rate_limit.test_sends_per_hour', '5', 'integer',
     'test notifications a user may send themself per hour (notify.send_test); one more fails with SQLSTATE NT429');

-- A test send spends a token of its own bucket: it is critical, so no other limit holds it back.
ALTER TABLE notify.rate_buckets DROP CONSTRAINT rate_buckets_channel_check;
ALTER TABLE notify.rate_buckets ADD CONSTRAINT "channel must be in_app, push, email or test"
    CHECK (channel IN ('in_app', 'push', 'email', 'test'));
