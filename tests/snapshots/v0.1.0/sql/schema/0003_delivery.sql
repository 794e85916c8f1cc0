-- 0003_delivery: what delivering on Web Push, FCM and e-mail needs beyond 0001.
-- Landed migrations never change: add a new numbered file instead.

INSERT INTO notify.settings (key, value, kind, description) VALUES
    ('delivery.max_attempts', '5', 'integer', 'attempts per delivery before it goes to the dead letters'),
    ('delivery.retry_base', '"10 seconds"', 'interval', 'wait before the first retry; doubles each attempt, with jitter'),
    ('delivery.retry_cap', '"1 hour"', 'interval', 'longest wait between two attempts'),
    ('delivery.job_size', '50', 'integer', 'deliveries one worker job carries (a bulk send makes several jobs)'),
    ('push.failures_before_deactivation', '3', 'integer', 'consecutive failures after which a device is deactivated'),
    ('vapid.rotate_after', '"30 days"', 'interval', 'age at which a new VAPID key replaces the current one for new subscribers');

-- VAPID key pairs: the newest unretired one is what new subscribers get; a key retires when no
-- active subscription uses it any more.
CREATE TABLE notify.vapid_keys (
    id                    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    public_key            text NOT NULL UNIQUE
                          CONSTRAINT "public_key must be base64url of a 65-byte P-256 point"
                          CHECK (public_key ~ '^[A-Za-z0-9_-]{87}$'),
    private_key_encrypted text NOT NULL,
    created_at            timestamptz NOT NULL DEFAULT notify.now(),
    retired_at            timestamptz
);
COMMENT ON TABLE notify.vapid_keys IS 'VAPID key pairs; private keys encrypted with NOTIFICATION_ENCRYPTION_KEY';

ALTER TABLE notify.push_subscriptions
    ADD COLUMN token_hash bytea,
    ADD COLUMN deactivated_reason text,
    ADD COLUMN last_failure_at timestamptz,
    ADD CONSTRAINT push_subscriptions_vapid_key_fkey FOREIGN KEY (vapid_key_id) REFERENCES notify.vapid_keys (id),
    ADD CONSTRAINT "a Web Push subscription names its VAPID key" CHECK (kind <> 'webpush' OR vapid_key_id IS NOT NULL);
COMMENT ON COLUMN notify.push_subscriptions.token_hash IS 'sha256 of the endpoint or FCM token: one row per device, found although its keys are encrypted';
COMMENT ON COLUMN notify.push_subscriptions.p256dh_key IS 'encrypted with NOTIFICATION_ENCRYPTION_KEY';
COMMENT ON COLUMN notify.push_subscriptions.auth_key IS 'encrypted with NOTIFICATION_ENCRYPTION_KEY';
COMMENT ON COLUMN notify.push_subscriptions.fcm_token IS 'encrypted with NOTIFICATION_ENCRYPTION_KEY';
CREATE UNIQUE INDEX push_subscriptions_token_hash_idx ON notify.push_subscriptions (token_hash)
    WHERE token_hash IS NOT NULL;
CREATE INDEX push_subscriptions_vapid_key_idx ON notify.push_subscriptions (vapid_key_id) WHERE is_active;

ALTER TABLE notify.notification_deliveries
    ADD COLUMN sending_since timestamptz,
    ADD COLUMN repeats integer NOT NULL DEFAULT 0,
    ADD COLUMN opened_at timestamptz,
    ADD COLUMN clicked_at timestamptz;
COMMENT ON COLUMN notify.notification_deliveries.sending_since IS
    'set while a worker is sending; still set at the next attempt means the last answer was never recorded';
COMMENT ON COLUMN notify.notification_deliveries.repeats IS
    'attempts made after an attempt whose answer was never recorded: the provider may have got it twice';
CREATE UNIQUE INDEX notification_deliveries_once_idx
    ON notify.notification_deliveries (notification_id, channel, subscription_id) NULLS NOT DISTINCT;
CREATE INDEX notification_deliveries_provider_message_idx ON notify.notification_deliveries (provider_message_id)
    WHERE provider_message_id IS NOT NULL;

-- Addresses that bounced hard or complained get no more e-mail.
CREATE TABLE notify.email_suppressions (
    email      text PRIMARY KEY CONSTRAINT "suppressed addresses are stored lowercase" CHECK (email = lower(email)),
    reason     text NOT NULL CHECK (reason IN ('bounced', 'complained', 'manual')),
    detail     jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(detail) = 'object'),
    created_at timestamptz NOT NULL DEFAULT notify.now()
);
COMMENT ON TABLE notify.email_suppressions IS 'addresses no e-mail goes to: hard bounces, complaints, or added by a DBA';

-- Providers redeliver webhooks: each event is applied once.
CREATE TABLE notify.webhook_events (
    provider    text NOT NULL,
    event_id    text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT notify.now(),
    PRIMARY KEY (provider, event_id)
);
COMMENT ON TABLE notify.webhook_events IS 'ids of provider webhook events already applied (Svix redelivers)';
