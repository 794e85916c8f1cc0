-- 0016_write_less: what a send writes. Time-ordered ids, so that new rows land at the right-hand edge of
-- their primary-key indexes instead of dirtying (and, after each checkpoint, logging whole) pages all
-- over them; how each channel was decided kept as a compact record on the notification, so that a channel it is
-- not sent on needs no delivery row.
-- Landed migrations never change: add a new numbered file instead.

-- PostgreSQL 15 has no uuidv7(): the 48-bit Unix time in milliseconds, then the random bits of a v4
-- uuid with its version nibble turned from 4 into 7 (the variant bits of v4 and v7 are the same).
-- SQL without SET options, so that PostgreSQL inlines it into the INSERT that uses it as a default.
CREATE FUNCTION notify_private.uuid_v7() RETURNS uuid
    LANGUAGE sql VOLATILE PARALLEL SAFE
AS $$
    SELECT pg_catalog.encode(
        pg_catalog.set_bit(pg_catalog.set_bit(
            overlay(pg_catalog.uuid_send(pg_catalog.gen_random_uuid())
                               PLACING substring(pg_catalog.int8send(
                                   pg_catalog.floor(EXTRACT(epoch FROM pg_catalog.clock_timestamp()) * 1000)::bigint)
                                   FROM 3)
                               FROM 1 FOR 6),
            52, 1), 53, 1),
        'hex')::uuid
$$;
COMMENT ON FUNCTION notify_private.uuid_v7() IS 'a new time-ordered (version 7) uuid: milliseconds since 1970, then random bits';

ALTER TABLE notify.notifications ALTER COLUMN id SET DEFAULT notify_private.uuid_v7();
ALTER TABLE notify.notification_deliveries ALTER COLUMN id SET DEFAULT notify_private.uuid_v7();

ALTER TABLE notify.notifications ADD COLUMN decisions jsonb
    CONSTRAINT "decisions must be a JSON object" CHECK (jsonb_typeof(decisions) = 'object');
COMMENT ON COLUMN notify.notifications.decisions IS
    'each channel not sent at once, decided when it was sent: {"push": {"status": "skipped", "reason": …}}; NULL: all at once';

-- The unique (notification_id, channel, subscription_id) index finds a notification's deliveries as well.
DROP INDEX notify.notification_deliveries_notification_idx;
