-- 0005_aggregation: folding notifications of one user, type and group_key into one unread group.
-- Landed migrations never change: add a new numbered file instead.
--
-- The window is measured from the group's FIRST notification (the group row's created_at, which a
-- fold keeps): a group takes newcomers for aggregation.window at most, so a steady trickle still
-- starts a new group, and so a new push, once per window instead of growing one row forever.

UPDATE notify.settings
SET description = 'notifications of one user, type and group_key fold into one unread group for this long after its first (0 turns folding off)'
WHERE key = 'aggregation.window';

CREATE TABLE notify.notification_folds (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    notification_id uuid NOT NULL REFERENCES notify.notifications (id) ON DELETE CASCADE,
    user_id         uuid NOT NULL REFERENCES notify.recipients (user_id) ON DELETE CASCADE,
    group_count     integer NOT NULL CHECK (group_count >= 2),
    title           text NOT NULL,
    idempotency_key text CONSTRAINT "idempotency_key must be 1 to 255 characters"
                    CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    batch_id        uuid REFERENCES notify.notification_batches (id) ON DELETE SET NULL,
    folded_at       timestamptz NOT NULL DEFAULT notify.now()
);
COMMENT ON TABLE notify.notification_folds IS
    'one row per notification folded into an existing group: why it made no row of its own, and its idempotency key';
COMMENT ON COLUMN notify.notification_folds.notification_id IS 'the group''s notification, which the fold updated';
COMMENT ON COLUMN notify.notification_folds.group_count IS 'the group''s count after this fold';
COMMENT ON COLUMN notify.notification_folds.title IS 'the folded notification''s own title, as its sender gave it';
CREATE INDEX notification_folds_notification_idx ON notify.notification_folds (notification_id);
-- A replayed key finds its fold here; NULL keys are distinct, so this also serves the user_id lookups.
CREATE UNIQUE INDEX notification_folds_user_idempotency_key_idx ON notify.notification_folds (user_id, idempotency_key);
CREATE INDEX notification_folds_batch_id_idx ON notify.notification_folds (batch_id) WHERE batch_id IS NOT NULL;
