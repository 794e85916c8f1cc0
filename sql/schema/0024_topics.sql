-- 0024_topics: topic subscriptions (a user follows a topic; a send to the topic reaches every follower), and
-- what a batch was sent to when it was no list of users (a topic, an org broadcast) and by which org's admin.
-- The functions that use them are declared in sql/functions/075_topics.sql, their rights in sql/rls.
-- Landed migrations never change: add a new numbered file instead.

CREATE TABLE notify.topic_subscriptions (
    user_id    uuid NOT NULL REFERENCES notify.recipients (user_id) ON DELETE CASCADE,
    topic      text NOT NULL
               CONSTRAINT "topic must be 1 to 200 letters, digits or . _ : - (starting with a letter or digit)"
               CHECK (topic ~ '^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$'),
    muted      boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT notify.now(),
    PRIMARY KEY (user_id, topic)
);
COMMENT ON TABLE notify.topic_subscriptions IS 'one row per user and topic they follow: notify.send_topic reaches every follower';
COMMENT ON COLUMN notify.topic_subscriptions.topic IS 'the topic''s name, e.g. project:42 or releases';
COMMENT ON COLUMN notify.topic_subscriptions.muted IS 'the user''s per-topic mute: still subscribed, but sends to the topic skip them';
COMMENT ON COLUMN notify.topic_subscriptions.created_at IS 'when the user subscribed';
-- A send to a topic reads its unmuted followers in user order (the order their rows are locked in).
CREATE INDEX topic_subscriptions_topic_idx ON notify.topic_subscriptions (topic, user_id) WHERE NOT muted;

ALTER TABLE notify.notification_batches
    ADD COLUMN org_id   uuid,
    ADD COLUMN audience jsonb;
COMMENT ON COLUMN notify.notification_batches.org_id
    IS 'the org of the admin who sent the batch (NULL: a service or a DBA); an org admin sees their org''s batches only';
COMMENT ON COLUMN notify.notification_batches.audience
    IS 'whom a topic send or broadcast went to: {"topic", "org_id", "locale", "timezone"}; NULL for send_bulk''s list of users';
