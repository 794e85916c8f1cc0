-- 0021_partitions: notify.notifications becomes a table partitioned by week on created_at, managed by
-- pg_partman, so that retention past the largest age in force drops whole partitions instead of deleting
-- rows. The rows of the unpartitioned table are copied over. What a partitioned table cannot keep:
--   * unique keys without created_at: the primary key becomes (id, created_at); the idempotency keys move to
--     their own unpartitioned table (notify_private.notification_keys), which the insert trigger checks; seq
--     stays unique per user because next_seq hands it out under the recipient's row lock;
--   * foreign keys into it (deliveries, actions, folds, analytics): they would block dropping a partition.
--     Those rows keep notification_id without a foreign key and go with their notification: a row DELETE
--     removes them in a statement trigger, a partition drop removes them first (sql/functions/115_partitions.sql).
-- A notification's id is a UUIDv7 that carries its created_at's millisecond, so that a lookup by id can
-- bound created_at and reach one partition. Rows written before 0016 keep their random (version 4) ids,
-- whose lookups probe every partition; they leave with retention.
-- Landed migrations never change: add a new numbered file instead.

CREATE SCHEMA IF NOT EXISTS partman;
COMMENT ON SCHEMA partman IS 'pg_partman: the partition manager of notify.notifications';
CREATE EXTENSION IF NOT EXISTS pg_partman SCHEMA partman;

-- These five are SQL without SET options, every name qualified, so that PostgreSQL inlines them into the
-- statements that use them (a SQL function it cannot inline is planned anew at every call), and the four
-- IMMUTABLE ones use only immutable functions, which inlining requires.
CREATE FUNCTION notify_private.uuid_v7_millis(id uuid) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN pg_catalog.substr(id::text, 15, 1) = '7'
        THEN ('x' || pg_catalog.substr(pg_catalog.replace(id::text, '-', ''), 1, 12))::bit(48)::bigint
    END
$$;
COMMENT ON FUNCTION notify_private.uuid_v7_millis(uuid) IS 'the Unix time in milliseconds a version 7 uuid carries; NULL for other versions';

CREATE FUNCTION notify_private.uuid_v7_time(id uuid) RETURNS timestamptz
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT pg_catalog.to_timestamp(notify_private.uuid_v7_millis(id) / 1000.0)
$$;
COMMENT ON FUNCTION notify_private.uuid_v7_time(uuid) IS 'the millisecond a version 7 uuid carries; NULL for other versions';

CREATE FUNCTION notify_private.uuid_v7_at(at timestamptz) RETURNS uuid
    LANGUAGE sql VOLATILE PARALLEL SAFE
AS $$
    SELECT pg_catalog.encode(
        pg_catalog.set_bit(pg_catalog.set_bit(
            overlay(pg_catalog.uuid_send(pg_catalog.gen_random_uuid())
                    PLACING substring(pg_catalog.int8send(pg_catalog.floor(EXTRACT(epoch FROM at) * 1000)::bigint)
                                      FROM 3)
                    FROM 1 FOR 6),
            52, 1), 53, 1),
        'hex')::uuid
$$;
COMMENT ON FUNCTION notify_private.uuid_v7_at(timestamptz) IS 'a new version 7 uuid carrying the millisecond of `at`';

-- The bounds of created_at that a lookup by id may assume: the id's millisecond for a version 7 id, all
-- time for an older one. IMMUTABLE, so that the planner prunes partitions with them.
CREATE FUNCTION notify_private.created_from(id uuid) RETURNS timestamptz
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT coalesce(notify_private.uuid_v7_time(id), '-infinity'::timestamptz)
$$;
COMMENT ON FUNCTION notify_private.created_from(uuid) IS 'the earliest created_at a notification with this id can have';

CREATE FUNCTION notify_private.created_before(id uuid) RETURNS timestamptz
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT coalesce(pg_catalog.to_timestamp((notify_private.uuid_v7_millis(id) + 1) / 1000.0), 'infinity'::timestamptz)
$$;
COMMENT ON FUNCTION notify_private.created_before(uuid) IS 'a created_at past every one a notification with this id can have';

-- The children keep their notification_id without a foreign key (see above).
ALTER TABLE notify.notification_deliveries DROP CONSTRAINT notification_deliveries_notification_id_fkey;
ALTER TABLE notify.notification_actions DROP CONSTRAINT notification_actions_notification_id_fkey;
ALTER TABLE notify.notification_folds DROP CONSTRAINT notification_folds_notification_id_fkey;
ALTER TABLE notify.notification_analytics DROP CONSTRAINT notification_analytics_notification_id_fkey;

-- Out of the way with its indexes (their names are taken again below); its triggers stay quiet while its rows
-- are fixed up for the copy.
ALTER TABLE notify.notifications SET SCHEMA notify_private;
ALTER TABLE notify_private.notifications RENAME TO notifications_unpartitioned;
ALTER TABLE notify_private.notifications_unpartitioned DISABLE TRIGGER USER;

-- Rows made between 0016 and now carry the clock of their INSERT in the id, a few milliseconds after the
-- transaction's start that created_at holds: created_at takes the id's millisecond.
UPDATE notify_private.notifications_unpartitioned AS u SET created_at = notify_private.uuid_v7_time(u.id)
WHERE notify_private.uuid_v7_time(u.id) <> pg_catalog.date_trunc('milliseconds', u.created_at, 'UTC');

CREATE TABLE notify.notifications (
    LIKE notify_private.notifications_unpartitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING COMMENTS
        INCLUDING STORAGE,
    PRIMARY KEY (id, created_at),
    CONSTRAINT "id must be a UUIDv7 of created_at's millisecond"
        CHECK (notify_private.uuid_v7_time(id) IS NULL
               OR notify_private.uuid_v7_time(id) = pg_catalog.date_trunc('milliseconds', created_at, 'UTC')),
    CONSTRAINT notifications_user_id_fkey FOREIGN KEY (user_id)
        REFERENCES notify.recipients (user_id) ON DELETE CASCADE,
    CONSTRAINT "type must be a row of notify.notification_types" FOREIGN KEY (type)
        REFERENCES notify.notification_types (name),
    CONSTRAINT notifications_batch_id_fkey FOREIGN KEY (batch_id)
        REFERENCES notify.notification_batches (id) ON DELETE SET NULL
) PARTITION BY RANGE (created_at);
COMMENT ON TABLE notify.notifications IS 'one row per notification per recipient, partitioned by week on created_at';
COMMENT ON CONSTRAINT "id must be a UUIDv7 of created_at's millisecond" ON notify.notifications
    IS 'a lookup by id bounds created_at by the id''s millisecond and so reaches one partition';
COMMENT ON CONSTRAINT notifications_pkey ON notify.notifications IS 'a partitioned table''s keys include its partition key';

-- The indexes of 0001 to 0020, made on every partition. The per-user keys are no longer unique here.
CREATE INDEX notifications_user_idempotency_key_idx ON notify.notifications (user_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX notifications_user_seq_idx ON notify.notifications (user_id, seq);
CREATE INDEX notifications_user_newest_idx ON notify.notifications (user_id, created_at DESC, id DESC)
    WHERE deleted_at IS NULL;
CREATE INDEX notifications_user_unread_idx ON notify.notifications (user_id, type)
    WHERE read_at IS NULL AND deleted_at IS NULL;
CREATE INDEX notifications_group_idx ON notify.notifications (user_id, type, group_key, created_at DESC)
    WHERE group_key IS NOT NULL;
CREATE INDEX notifications_batch_id_idx ON notify.notifications (batch_id) WHERE batch_id IS NOT NULL;
CREATE INDEX notifications_changed_xid_idx ON notify.notifications (changed_xid);
CREATE INDEX notifications_held_idx ON notify.notifications (held_until) WHERE held_until IS NOT NULL;

-- pg_partman names and bounds partitions in the session's time zone: days are UTC days, here and in
-- notify_private.maintain_partitions (which sets it too), whatever the server's or the session's zone.
SET LOCAL TimeZone = 'UTC';

-- A week per partition (ISO weeks, from Monday 00:00 UTC): a query that cannot prune by time (a user's list,
-- unread count) is planned and started over every partition, so their number is kept to a year's 53 or so;
-- retention then drops a week at a time. Partitions from the oldest row's week (at most a year back: older rows
-- wait in the default partition for the bounded DELETE of retention), four weeks ahead; the worker keeps making
-- them (notify_private.maintain_partitions).
SELECT partman.create_parent(
    p_parent_table => 'notify.notifications', p_control => 'created_at', p_type => 'native',
    p_interval => 'weekly', p_premake => 4, p_jobmon => false,
    p_start_partition => pg_catalog.date_trunc('week', greatest(
        coalesce((SELECT min(u.created_at) FROM notify_private.notifications_unpartitioned AS u), notify.now()),
        notify.now() - interval '1 year'), 'UTC')::text);
-- Partitions are dropped by notify_private.maintain_partitions, which removes their children first.
UPDATE partman.part_config SET retention = NULL, infinite_time_partitions = true
WHERE parent_table = 'notify.notifications';

INSERT INTO notify.notifications SELECT * FROM notify_private.notifications_unpartitioned;
RESET TimeZone;

CREATE TABLE notify_private.notification_keys (
    user_id         uuid NOT NULL REFERENCES notify.recipients (user_id) ON DELETE CASCADE,
    idempotency_key text NOT NULL,
    notification_id uuid NOT NULL,
    created_at      timestamptz NOT NULL,
    PRIMARY KEY (user_id, idempotency_key)
);
COMMENT ON TABLE notify_private.notification_keys IS 'the idempotency keys of notifications, unique per user across all partitions';
COMMENT ON COLUMN notify_private.notification_keys.user_id IS 'the recipient whose key it is';
COMMENT ON COLUMN notify_private.notification_keys.idempotency_key IS 'the key as sent';
COMMENT ON COLUMN notify_private.notification_keys.notification_id IS 'the notification the first send with the key made';
COMMENT ON COLUMN notify_private.notification_keys.created_at IS 'that notification''s created_at: its partition';
CREATE INDEX notification_keys_created_idx ON notify_private.notification_keys (created_at);
CREATE INDEX notification_keys_notification_idx ON notify_private.notification_keys (notification_id);

INSERT INTO notify_private.notification_keys (user_id, idempotency_key, notification_id, created_at)
SELECT n.user_id, n.idempotency_key, n.id, n.created_at
FROM notify.notifications AS n
WHERE n.idempotency_key IS NOT NULL;

-- The views and functions over the old table's row type go with it; sql/functions declares them again.
DROP TABLE notify_private.notifications_unpartitioned CASCADE;
