-- 0022_inbox_marks: each user's "seen up to" watermark. Marking notifications seen keeps their seq (nothing is
-- sent again); the watermark row changes instead, and the real-time hub sends one seen_updated event per change.
-- Landed migrations never change: add a new numbered file instead.

CREATE TABLE notify.inbox_marks (
    user_id     uuid PRIMARY KEY REFERENCES notify.recipients (user_id) ON DELETE CASCADE,
    seen_seq    bigint NOT NULL DEFAULT 0,
    seen_at     timestamptz NOT NULL DEFAULT notify.now(),
    changed_xid xid8 NOT NULL DEFAULT pg_current_xact_id()
);
COMMENT ON TABLE notify.inbox_marks IS 'per user: the seen watermark the real-time hub sends as seen_updated';
COMMENT ON COLUMN notify.inbox_marks.user_id IS 'whose watermark; erased with the recipient';
COMMENT ON COLUMN notify.inbox_marks.seen_seq IS 'every notification of the center with a seq up to this one is seen';
COMMENT ON COLUMN notify.inbox_marks.seen_at IS 'when the user last marked notifications seen';
COMMENT ON COLUMN notify.inbox_marks.changed_xid IS 'transaction that last moved the watermark; the hub''s fan-out reads by it';
CREATE INDEX inbox_marks_changed_xid_idx ON notify.inbox_marks (changed_xid);
