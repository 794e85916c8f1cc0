-- 0025_webhooks_chat: two more channels. `webhook` POSTs a notification, signed per Standard Webhooks, to
-- endpoints a user (or an org admin, for all of the org's users) registers; `chat` posts it to a Slack,
-- Microsoft Teams or Discord incoming-webhook URL. Each channel's targets are rows of their own, and a
-- delivery names its target (target_id) the way a push delivery names its device (subscription_id).
-- Landed migrations never change: add a new numbered file instead.

-- The channel lists: every constraint keeps its name.
ALTER TABLE notify.notifications DROP CONSTRAINT "channels must be some of in_app, push, email";
ALTER TABLE notify.notifications ADD CONSTRAINT "channels must be some of in_app, push, email"
    CHECK (cardinality(channels) > 0 AND channels <@ ARRAY['in_app', 'push', 'email', 'webhook', 'chat']
           AND array_position(channels, NULL) IS NULL);
ALTER TABLE notify.notification_deliveries DROP CONSTRAINT notification_deliveries_channel_check;
ALTER TABLE notify.notification_deliveries ADD CONSTRAINT notification_deliveries_channel_check
    CHECK (channel IN ('in_app', 'push', 'email', 'webhook', 'chat'));
ALTER TABLE notify.notification_templates DROP CONSTRAINT notification_templates_default_channels_check;
ALTER TABLE notify.notification_templates ADD CONSTRAINT notification_templates_default_channels_check
    CHECK (default_channels <@ ARRAY['in_app', 'push', 'email', 'webhook', 'chat']);
ALTER TABLE notify.notification_analytics DROP CONSTRAINT notification_analytics_channel_check;
ALTER TABLE notify.notification_analytics ADD CONSTRAINT notification_analytics_channel_check
    CHECK (channel IN ('in_app', 'push', 'email', 'webhook', 'chat'));
ALTER TABLE notify.rate_buckets DROP CONSTRAINT "channel must be in_app, push, email or test";
ALTER TABLE notify.rate_buckets ADD CONSTRAINT "channel must be in_app, push, email or test"
    CHECK (channel IN ('in_app', 'push', 'email', 'webhook', 'chat', 'test'));

INSERT INTO notify.settings (key, value, kind, description) VALUES
    ('rate_limit.webhook_per_hour', '1000', 'integer', 'webhook deliveries per user per hour; past it they wait their turn'),
    ('rate_limit.chat_per_hour', '60', 'integer', 'chat messages per user per hour; past it they wait their turn'),
    ('webhook.disable_after', '"5 days"', 'interval',
     'an endpoint that has failed every delivery for this long is disabled, and its owner told in-app'),
    ('webhook.rotation_overlap', '"24 hours"', 'interval',
     'after a secret is rotated, the old one still signs (beside the new) for this long'),
    ('webhook.user_endpoints', 'true', 'boolean',
     'whether users may register webhook endpoints of their own (org admins always may, for their org)');

CREATE TABLE notify.webhook_endpoints (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id              uuid NOT NULL REFERENCES notify.recipients (user_id) ON DELETE CASCADE,
    org_id               uuid,
    url                  text NOT NULL CONSTRAINT "url must be 1 to 2000 characters" CHECK (length(url) BETWEEN 1 AND 2000),
    description          text NOT NULL DEFAULT ''
                         CONSTRAINT "description must be at most 200 characters" CHECK (length(description) <= 200),
    types                text[] CONSTRAINT "types must be a non-empty list" CHECK (cardinality(types) > 0),
    secret_encrypted     text NOT NULL,
    previous_secret_encrypted text,
    previous_secret_until timestamptz,
    is_active            boolean NOT NULL DEFAULT true,
    deactivated_reason   text,
    failing_since        timestamptz,
    last_success_at      timestamptz,
    created_at           timestamptz NOT NULL DEFAULT notify.now()
);
COMMENT ON TABLE notify.webhook_endpoints IS 'URLs notifications are POSTed to, signed per Standard Webhooks';
COMMENT ON COLUMN notify.webhook_endpoints.user_id IS 'the owner: whose notifications it gets (org_id NULL), and who is told when it is disabled';
COMMENT ON COLUMN notify.webhook_endpoints.org_id IS 'set: the endpoint gets the notifications of every user of this org';
COMMENT ON COLUMN notify.webhook_endpoints.url IS 'where deliveries are POSTed; checked against the SSRF rules when registered and when sent';
COMMENT ON COLUMN notify.webhook_endpoints.description IS 'what the owner calls it';
COMMENT ON COLUMN notify.webhook_endpoints.types IS 'the notification types it gets; NULL: all';
COMMENT ON COLUMN notify.webhook_endpoints.secret_encrypted IS 'the signing secret (whsec_…), encrypted with NOTIFICATION_ENCRYPTION_KEY';
COMMENT ON COLUMN notify.webhook_endpoints.previous_secret_encrypted IS 'the secret before the last rotation, still signing until previous_secret_until';
COMMENT ON COLUMN notify.webhook_endpoints.previous_secret_until IS 'the end of the rotation overlap';
COMMENT ON COLUMN notify.webhook_endpoints.is_active IS 'false: disabled (failing too long, or by its owner); it gets no deliveries';
COMMENT ON COLUMN notify.webhook_endpoints.deactivated_reason IS 'why it was disabled';
COMMENT ON COLUMN notify.webhook_endpoints.failing_since IS 'the first failure since its last success; NULL: not failing';
COMMENT ON COLUMN notify.webhook_endpoints.last_success_at IS 'when it last answered 2xx';
CREATE INDEX webhook_endpoints_user_idx ON notify.webhook_endpoints (user_id) WHERE is_active;
COMMENT ON INDEX notify.webhook_endpoints_user_idx IS 'a user''s own active endpoints, read by every send';
CREATE INDEX webhook_endpoints_org_idx ON notify.webhook_endpoints (org_id) WHERE is_active AND org_id IS NOT NULL;
COMMENT ON INDEX notify.webhook_endpoints_org_idx IS 'an org''s active endpoints, read by every send to its users';

CREATE TABLE notify.chat_connections (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id            uuid NOT NULL REFERENCES notify.recipients (user_id) ON DELETE CASCADE,
    org_id             uuid,
    platform           text NOT NULL CONSTRAINT "platform must be slack, teams or discord"
                       CHECK (platform IN ('slack', 'teams', 'discord')),
    url_encrypted      text NOT NULL,
    label              text NOT NULL DEFAULT ''
                       CONSTRAINT "label must be at most 200 characters" CHECK (length(label) <= 200),
    types              text[] CONSTRAINT "types must be a non-empty list" CHECK (cardinality(types) > 0),
    is_active          boolean NOT NULL DEFAULT true,
    deactivated_reason text,
    created_at         timestamptz NOT NULL DEFAULT notify.now()
);
COMMENT ON TABLE notify.chat_connections IS 'Slack, Teams and Discord incoming-webhook URLs notifications are posted to';
COMMENT ON COLUMN notify.chat_connections.user_id IS 'the owner: whose notifications it gets (org_id NULL)';
COMMENT ON COLUMN notify.chat_connections.org_id IS 'set: an org channel, which gets the notifications of every user of this org';
COMMENT ON COLUMN notify.chat_connections.platform IS 'which platform the URL belongs to, and so how a message is shaped';
COMMENT ON COLUMN notify.chat_connections.url_encrypted IS 'the incoming-webhook URL (it is the credential), encrypted with NOTIFICATION_ENCRYPTION_KEY';
COMMENT ON COLUMN notify.chat_connections.label IS 'what the owner calls it (the channel''s name)';
COMMENT ON COLUMN notify.chat_connections.types IS 'the notification types it gets; NULL: all';
COMMENT ON COLUMN notify.chat_connections.is_active IS 'false: the platform said the webhook is gone (404/410); no more deliveries';
COMMENT ON COLUMN notify.chat_connections.deactivated_reason IS 'why it was deactivated';
CREATE INDEX chat_connections_user_idx ON notify.chat_connections (user_id) WHERE is_active;
COMMENT ON INDEX notify.chat_connections_user_idx IS 'a user''s own active connections, read by every send';
CREATE INDEX chat_connections_org_idx ON notify.chat_connections (org_id) WHERE is_active AND org_id IS NOT NULL;
COMMENT ON INDEX notify.chat_connections_org_idx IS 'an org''s active channels, read by every send to its users';

-- A webhook or chat delivery names its endpoint or connection: one delivery per notification and target.
-- No foreign key: a target deleted while a delivery to it waits ends that delivery (claim_deliveries).
ALTER TABLE notify.notification_deliveries ADD COLUMN target_id uuid;
COMMENT ON COLUMN notify.notification_deliveries.target_id IS
    'the webhook endpoint (channel webhook) or chat connection (channel chat) it goes to; NULL for other channels';
DROP INDEX notify.notification_deliveries_once_idx;
CREATE UNIQUE INDEX notification_deliveries_once_idx
    ON notify.notification_deliveries (notification_id, channel, subscription_id, target_id) NULLS NOT DISTINCT;
CREATE INDEX notification_deliveries_target_idx ON notify.notification_deliveries (target_id, created_at DESC)
    WHERE target_id IS NOT NULL;
COMMENT ON INDEX notify.notification_deliveries_target_idx IS 'an endpoint''s delivery log, newest first';
