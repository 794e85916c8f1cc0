-- 0023_escalation: escalation chains. A type's chain (or one a sender gives a single notification) replaces
-- the priority's channel choice with steps that go one after another, each later one only while the user has
-- not seen (or read) the notification. A step is a delivery in the ledger, due at its time; seeing or reading
-- the notification cancels the steps still waiting. The functions that plan, cancel and explain steps are
-- declared in sql/functions/058_escalation.sql.
-- Landed migrations never change: add a new numbered file instead.

CREATE TABLE notify.escalation_chains (
    type       text PRIMARY KEY REFERENCES notify.notification_types (name) ON DELETE CASCADE,
    steps      jsonb NOT NULL
               CONSTRAINT "steps must be a non-empty JSON array" CHECK (jsonb_typeof(steps) = 'array'
                                                                        AND jsonb_array_length(steps) > 0),
    updated_at timestamptz NOT NULL DEFAULT notify.now(),
    updated_by text
);
COMMENT ON TABLE notify.escalation_chains IS 'the escalation chain of a notification type: its steps, checked and normalized by notify.set_escalation';
COMMENT ON COLUMN notify.escalation_chains.type IS 'the notification type whose non-critical notifications follow this chain';
COMMENT ON COLUMN notify.escalation_chains.steps IS 'the steps, in order: [{"channel", "after" (an interval from the send), "unless" (seen or read)}]';
COMMENT ON COLUMN notify.escalation_chains.updated_at IS 'when the chain was last set';
COMMENT ON COLUMN notify.escalation_chains.updated_by IS 'the sub of the admin who set it last (NULL: from SQL without claims)';

ALTER TABLE notify.notifications ADD COLUMN escalation jsonb;
COMMENT ON COLUMN notify.notifications.escalation IS
    'the escalation chain its sender gave this notification instead of its type''s (NULL: the type''s, if any)';

-- The condition that cancels a step still waiting: the ledger row is where the read and the worker meet.
ALTER TABLE notify.notification_deliveries ADD COLUMN unless text
    CONSTRAINT "unless must be seen or read" CHECK (unless IN ('seen', 'read'));
COMMENT ON COLUMN notify.notification_deliveries.unless IS
    'an escalation step''s condition: seen or read cancels it while it waits; NULL: not a cancellable step';
