-- 0028_channel_policy: webhook, chat and SMS as full citizens of the preferences. Users gain a webhook and a
-- chat switch (SMS has one since 0026); orgs gain defaults and locks for SMS, webhook and chat, and an org-wide
-- say in whether its users may register webhook endpoints of their own (NULL: the webhook.user_endpoints
-- setting decides). The functions that use them are in sql/functions (070_preferences.sql, 072_org_policy.sql,
-- 060_delivery_planning.sql, 066_webhooks_chat.sql).
-- Landed migrations never change: add a new numbered file instead.

ALTER TABLE notify.notification_preferences
    ADD COLUMN webhook_enabled boolean,
    ADD COLUMN chat_enabled boolean;
COMMENT ON COLUMN notify.notification_preferences.webhook_enabled
    IS 'whether the user''s notifications of this type go to webhook endpoints (theirs and their org''s; global row: every type); NULL: the next level decides';
COMMENT ON COLUMN notify.notification_preferences.chat_enabled
    IS 'whether the user''s notifications of this type go to chat connections (theirs and their org''s; global row: every type); NULL: the next level decides';

ALTER TABLE notify.org_notification_preferences
    ADD COLUMN sms_enabled boolean,
    ADD COLUMN sms_locked boolean NOT NULL DEFAULT false,
    ADD COLUMN webhook_enabled boolean,
    ADD COLUMN webhook_locked boolean NOT NULL DEFAULT false,
    ADD COLUMN chat_enabled boolean,
    ADD COLUMN chat_locked boolean NOT NULL DEFAULT false,
    ADD COLUMN user_webhook_endpoints boolean,
    ADD CONSTRAINT "user_webhook_endpoints is set on the org's global row only"
        CHECK (notification_type IS NULL OR user_webhook_endpoints IS NULL);
COMMENT ON COLUMN notify.org_notification_preferences.sms_enabled
    IS 'the org''s SMS default for its users (with sms_locked: their setting); NULL: no org default';
COMMENT ON COLUMN notify.org_notification_preferences.sms_locked
    IS 'true: sms_enabled is every user''s setting, and the user cannot change it';
COMMENT ON COLUMN notify.org_notification_preferences.webhook_enabled
    IS 'the org''s webhook default for its users (with webhook_locked: their setting); NULL: no org default';
COMMENT ON COLUMN notify.org_notification_preferences.webhook_locked
    IS 'true: webhook_enabled is every user''s setting, and the user cannot change it';
COMMENT ON COLUMN notify.org_notification_preferences.chat_enabled
    IS 'the org''s chat default for its users (with chat_locked: their setting); NULL: no org default';
COMMENT ON COLUMN notify.org_notification_preferences.chat_locked
    IS 'true: chat_enabled is every user''s setting, and the user cannot change it';
COMMENT ON COLUMN notify.org_notification_preferences.user_webhook_endpoints
    IS 'whether the org''s users may register webhook endpoints of their own (global row only); NULL: the webhook.user_endpoints setting decides';
