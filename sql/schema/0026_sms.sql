-- 0026_sms: SMS as a channel. Every list of channels the tables check grows to the agreed set (in_app, push,
-- email, webhook, chat, sms: outbound webhooks and chat arrive in their own migration); recipients gain a phone
-- number (E.164) and an SMS opt-out (a STOP reply), preferences an SMS switch, the ledger the provider that
-- took each delivery, and SMS a per-user daily limit. The functions that use them are in sql/functions.
-- Landed migrations never change: add a new numbered file instead.

-- A constraint that names its list in its name is given the new list's name (IF EXISTS: the other channels'
-- migration may have renamed it first); one PostgreSQL named keeps its name.
ALTER TABLE notify.notifications
    DROP CONSTRAINT IF EXISTS "channels must be some of in_app, push, email",
    DROP CONSTRAINT IF EXISTS "channels must be in_app, push, email, webhook, chat or sms",
    DROP CONSTRAINT IF EXISTS "channels must be some of in_app, push, email, webhook, chat, sm",
    ADD CONSTRAINT "channels must be in_app, push, email, webhook, chat or sms"
        CHECK (cardinality(channels) > 0 AND channels <@ ARRAY['in_app', 'push', 'email', 'webhook', 'chat', 'sms']
               AND array_position(channels, NULL) IS NULL);

ALTER TABLE notify.notification_deliveries
    DROP CONSTRAINT notification_deliveries_channel_check,
    ADD CONSTRAINT notification_deliveries_channel_check
        CHECK (channel IN ('in_app', 'push', 'email', 'webhook', 'chat', 'sms'));

ALTER TABLE notify.notification_templates
    DROP CONSTRAINT notification_templates_default_channels_check,
    ADD CONSTRAINT notification_templates_default_channels_check
        CHECK (default_channels <@ ARRAY['in_app', 'push', 'email', 'webhook', 'chat', 'sms']);

ALTER TABLE notify.notification_analytics
    DROP CONSTRAINT notification_analytics_channel_check,
    ADD CONSTRAINT notification_analytics_channel_check
        CHECK (channel IN ('in_app', 'push', 'email', 'webhook', 'chat', 'sms'));

ALTER TABLE notify.rate_buckets
    DROP CONSTRAINT IF EXISTS "channel must be in_app, push, email or test",
    DROP CONSTRAINT IF EXISTS "channel must be in_app, push, email, webhook, chat, sms or test",
    ADD CONSTRAINT "channel must be in_app, push, email, webhook, chat, sms or test"
        CHECK (channel IN ('in_app', 'push', 'email', 'webhook', 'chat', 'sms', 'test'));

ALTER TABLE notify.recipients
    ADD COLUMN phone text CONSTRAINT "phone must be an E.164 number such as +14155550100"
        CHECK (phone ~ '^\+[1-9][0-9]{6,14}$'),
    ADD COLUMN sms_opted_out_at timestamptz;
COMMENT ON COLUMN notify.recipients.phone IS 'the number SMS go to, E.164 (+ and up to 15 digits); NULL: no SMS';
COMMENT ON COLUMN notify.recipients.sms_opted_out_at
    IS 'when the number replied STOP (no SMS until it replies START); NULL: not opted out';
-- A STOP or START reply finds its recipients by number.
CREATE INDEX recipients_phone_idx ON notify.recipients (phone) WHERE phone IS NOT NULL;

ALTER TABLE notify.notification_preferences ADD COLUMN sms_enabled boolean;
COMMENT ON COLUMN notify.notification_preferences.sms_enabled
    IS 'whether SMS the sender asks for reach the user for this type (global row: every type); NULL: the next level decides';

ALTER TABLE notify.notification_deliveries ADD COLUMN provider text;
COMMENT ON COLUMN notify.notification_deliveries.provider
    IS 'the provider that took the delivery (resend, twilio...); NULL until one answered it was sent';

INSERT INTO notify.settings (key, value, kind, description) VALUES
    ('rate_limit.sms_per_day', '5', 'integer', 'SMS per user per day (each costs money); more wait for a token');
