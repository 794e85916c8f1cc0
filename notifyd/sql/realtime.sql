-- The LISTEN hub and the WebSocket sessions (notifyd.hub, notifyd.realtime).
-- A notification's event shape is the row minus the columns that are notifyd's bookkeeping.

-- hub_watermark --
-- The oldest transaction still running: every change from an older one is already visible
SELECT pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot())::text

-- hub_fan_out --
-- As notify_worker: the given users' notifications changed since watermark $1, their unread counts, and the next watermark, in one snapshot
WITH changed AS (
    SELECT n.user_id, n.seq, n.id, n.read_at, n.deleted_at, n.updated_at,
           pg_catalog.to_jsonb(n) - ARRAY['user_id', 'changed_xid', 'template_vars', 'idempotency_key', 'batch_id', 'held_until', 'rendered', 'render_error'] AS data
    FROM notify.notifications AS n
    -- A held row's event waits for its release, which gives it a new seq and xid.
    WHERE n.changed_xid >= $1::text::xid8 AND n.user_id = ANY($2::uuid[]) AND n.held_until IS NULL
), unread AS (
    -- Per user through the (user_id, type) unread index: cost follows the users woken, not the table.
    SELECT u.user_id, counts.count, counts.by_type
    FROM (SELECT DISTINCT c.user_id FROM changed AS c) AS u
    CROSS JOIN LATERAL (
        SELECT coalesce(sum(per_type.unread), 0)::bigint AS count,
               coalesce(jsonb_object_agg(per_type.type, per_type.unread), '{}'::jsonb) AS by_type
        FROM (
            SELECT n.type, count(*) AS unread
            FROM notify.notifications AS n
            WHERE n.user_id = u.user_id AND n.read_at IS NULL AND n.deleted_at IS NULL
              AND (n.send_at IS NULL OR n.send_at <= notify.now())
              AND n.held_until IS DISTINCT FROM 'infinity'  -- a template not rendered (yet)
            GROUP BY n.type
        ) AS per_type
    ) AS counts
)
SELECT pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot())::text AS watermark,
       coalesce((SELECT jsonb_agg(jsonb_build_object(
                    'user_id', c.user_id, 'seq', c.seq, 'id', c.id, 'read_at', c.read_at,
                    'deleted_at', c.deleted_at, 'data', c.data,
                    'lag', extract(epoch FROM pg_catalog.clock_timestamp() - c.updated_at))
                 ORDER BY c.user_id, c.seq) FROM changed AS c), '[]'::jsonb) AS rows,
       coalesce((SELECT jsonb_object_agg(u.user_id, jsonb_build_object('count', u.count, 'by_type', u.by_type))
                 FROM unread AS u), '{}'::jsonb) AS unread

-- ws_max_seq --
-- As the caller: the highest seq of the caller's notifications (0 if none)
SELECT coalesce(max(n.seq), 0) FROM notify.notifications AS n WHERE n.user_id = notify.current_user_id()

-- ws_seq_of --
-- As the caller: the current seq of one of the caller's notifications (no row if not visible)
SELECT n.seq FROM notify.notifications AS n WHERE n.id = $1 AND n.user_id = notify.current_user_id()

-- ws_resume_page --
-- As the caller: the caller's notifications created or changed after seq $1 (not held), in seq order, at most $2
SELECT n.seq, pg_catalog.to_jsonb(n) - ARRAY['user_id', 'changed_xid', 'template_vars', 'idempotency_key', 'batch_id', 'held_until', 'rendered', 'render_error'] AS data
FROM notify.notifications AS n
WHERE n.user_id = notify.current_user_id() AND n.seq > $1 AND n.held_until IS NULL
ORDER BY n.seq
LIMIT $2

-- ws_mark_read --
-- As the caller: marks one notification read; NULL if it is not the caller's
SELECT notify.mark_read($1)

-- ws_unread_count --
-- As the caller: {"count", "by_type"} of the caller's unread notifications
SELECT notify.unread_count()
