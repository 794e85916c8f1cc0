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
    IS 'the provider that took the delivery (resend, smtp, twilio), or that may have (no answer came: retries go there)';

INSERT INTO notify.settings (key, value, kind, description) VALUES
    ('rate_limit.sms_per_day', '5', 'integer', 'SMS per user per day (each costs money); more wait for a token');

-- E-mail failover: a circuit breaker per provider, shared by every worker process (and read by every serve
-- process's /metrics and by notify.explain), so that all of them agree where new e-mail goes.
CREATE TABLE notify_private.provider_circuits (
    provider      text PRIMARY KEY CONSTRAINT "provider must be a lowercase name" CHECK (provider ~ '^[a-z][a-z0-9_]*$'),
    state         text NOT NULL DEFAULT 'closed'
                  CONSTRAINT "state must be closed, open or half_open" CHECK (state IN ('closed', 'open', 'half_open')),
    failures      integer NOT NULL DEFAULT 0 CHECK (failures >= 0),
    opened_at     timestamptz,
    probe_at      timestamptz,
    timeouts      bigint NOT NULL DEFAULT 0 CHECK (timeouts >= 0),
    server_errors bigint NOT NULL DEFAULT 0 CHECK (server_errors >= 0),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE notify_private.provider_circuits
    IS 'one circuit breaker per provider: closed (in use), open (new attempts go to the fallback), half_open (a probe is out)';
COMMENT ON COLUMN notify_private.provider_circuits.provider IS 'the provider: resend, smtp, twilio';
COMMENT ON COLUMN notify_private.provider_circuits.state IS 'closed, open or half_open';
COMMENT ON COLUMN notify_private.provider_circuits.failures IS 'timeouts and 5xx answers in a row (a success resets it)';
COMMENT ON COLUMN notify_private.provider_circuits.opened_at IS 'when the circuit last opened';
COMMENT ON COLUMN notify_private.provider_circuits.probe_at IS 'when the last half-open probe went out';
COMMENT ON COLUMN notify_private.provider_circuits.timeouts IS 'attempts whose answer never came, ever (a counter)';
COMMENT ON COLUMN notify_private.provider_circuits.server_errors IS '5xx answers and refused connections, ever (a counter)';
COMMENT ON COLUMN notify_private.provider_circuits.updated_at IS 'when the row last changed';
INSERT INTO notify_private.provider_circuits (provider) VALUES ('resend'), ('smtp'), ('twilio');

INSERT INTO notify.settings (key, value, kind, description) VALUES
    ('circuit.failures_to_open', '5', 'integer',
     'timeouts or 5xx answers in a row from a provider after which new e-mail goes to the other provider'),
    ('circuit.probe_after', '"30 seconds"', 'interval',
     'how long an open circuit waits before one batch probes the provider again (half-open)');
