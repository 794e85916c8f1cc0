-- 0006_rate_limits: token buckets per user and channel, a global bucket for bulk sends, and held real-time events.
-- Landed migrations never change: add a new numbered file instead.

INSERT INTO notify.settings (key, value, kind, description) VALUES
    ('rate_limit.max_queued', '100', 'integer',
     'deliveries one user may have waiting for tokens per channel; one more and sending fails (SQLSTATE NT429)');

-- Tokens may go below zero: a delivery that finds none is scheduled for when its token frees up,
-- so excess waits in order and is never dropped; -tokens is the user's queue on that channel.
CREATE TABLE notify.rate_buckets (
    user_id      uuid NOT NULL REFERENCES notify.recipients (user_id) ON DELETE CASCADE,
    channel      text NOT NULL CHECK (channel IN ('in_app', 'push', 'email')),
    tokens       double precision NOT NULL,
    refreshed_at timestamptz NOT NULL,
    PRIMARY KEY (user_id, channel)
);
COMMENT ON TABLE notify.rate_buckets IS 'per user and channel token buckets (rate_limit.* settings); below zero is a queue';

CREATE TABLE notify.global_rate_bucket (
    only_row     boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    tokens       double precision NOT NULL,
    refreshed_at timestamptz NOT NULL
);
COMMENT ON TABLE notify.global_rate_bucket IS 'the bucket of all bulk sends together (rate_limit.global_per_minute)';
INSERT INTO notify.global_rate_bucket (tokens, refreshed_at) VALUES (10000, now());

ALTER TABLE notify.notifications ADD COLUMN held_until timestamptz;
COMMENT ON COLUMN notify.notifications.held_until IS
    'while set, its real-time event waits (a rate limit, send_at): released with a new seq when it comes due';
CREATE INDEX notifications_held_idx ON notify.notifications (held_until) WHERE held_until IS NOT NULL;
