-- 0002_service_keys: keys of backend services (stored hashed) and the action-button ledger.
-- Landed migrations never change: add a new numbered file instead.

CREATE TABLE notify.service_keys (
    name       text PRIMARY KEY
               CONSTRAINT "service names are 1 to 64 lowercase letters, digits, dots, dashes or underscores"
               CHECK (name ~ '^[a-z0-9][a-z0-9_.-]{0,63}$'),
    key_hash   bytea NOT NULL UNIQUE CHECK (length(key_hash) = 32),
    created_at timestamptz NOT NULL DEFAULT notify.now(),
    revoked_at timestamptz
);
COMMENT ON TABLE notify.service_keys IS 'X-Internal-Service-Key credentials: sha256 of each key, never the key itself';
COMMENT ON COLUMN notify.service_keys.key_hash IS 'sha256 of the key; the key is shown once, by notify.create_service_key';

CREATE TABLE notify.notification_actions (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    notification_id uuid NOT NULL REFERENCES notify.notifications (id) ON DELETE CASCADE,
    user_id         uuid NOT NULL REFERENCES notify.recipients (user_id) ON DELETE CASCADE,
    type            text NOT NULL,
    action          text NOT NULL CHECK (length(action) BETWEEN 1 AND 100),
    batch_id        uuid,
    taken_at        timestamptz NOT NULL DEFAULT notify.now()
);
COMMENT ON TABLE notify.notification_actions IS
    'append-only: one row per action button a user pressed; services may put a trigger here, '
    'and each row is announced by NOTIFY notify_actions carrying only its id';
CREATE INDEX notification_actions_notification_idx ON notify.notification_actions (notification_id);
CREATE INDEX notification_actions_taken_at_idx ON notify.notification_actions (taken_at);
