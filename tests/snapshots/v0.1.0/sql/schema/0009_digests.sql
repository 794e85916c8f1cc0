-- 0009_digests: what sending daily and weekly digest e-mails needs beyond 0001's email_digests.
-- Landed migrations never change: add a new numbered file instead.

INSERT INTO notify.settings (key, value, kind, description) VALUES
    ('digest.batch_size', '500', 'integer', 'digests one pass of the periodic digest task claims per transaction');

ALTER TABLE notify.email_digests
    ADD COLUMN reason text,
    ADD COLUMN attempts integer NOT NULL DEFAULT 0,
    ADD COLUMN sending_since timestamptz,
    ADD COLUMN provider_message_id text,
    ADD COLUMN updated_at timestamptz NOT NULL DEFAULT notify.now();
COMMENT ON COLUMN notify.email_digests.reason IS 'why a digest was skipped (nothing new, no address, suppressed)';
COMMENT ON COLUMN notify.email_digests.attempts IS 'sending attempts; delivery.max_attempts then failed';
COMMENT ON COLUMN notify.email_digests.sending_since IS
    'set while a worker is sending; still set at the next attempt means the last answer was never recorded';
COMMENT ON COLUMN notify.email_digests.provider_message_id IS 'Resend''s e-mail id once sent';
CREATE INDEX email_digests_user_sent_idx ON notify.email_digests (user_id, frequency, sent_at DESC)
    WHERE status = 'sent';

-- A held e-mail belongs to at most one digest: the one that claimed it.
ALTER TABLE notify.notification_deliveries
    ADD COLUMN digest_id uuid REFERENCES notify.email_digests (id) ON DELETE SET NULL;
COMMENT ON COLUMN notify.notification_deliveries.digest_id IS 'the digest e-mail this held e-mail went out in';
CREATE INDEX notification_deliveries_digest_idx ON notify.notification_deliveries (digest_id)
    WHERE digest_id IS NOT NULL;
