-- The LISTEN hub and the WebSocket sessions (notifyd.realtime.hub, notifyd.realtime.session).
-- A notification's event shape is the row minus the columns that are notifyd's bookkeeping.

-- hub_become_worker --
-- Makes the hub's own reading connection notify_worker for its whole life (the worker's policies need no claims)
SELECT pg_catalog.set_config('role', 'notify_worker', false)

-- hub_snapshot --
-- The current snapshot: every change it already sees is not the fan-out's to send
SELECT pg_catalog.pg_current_snapshot()::text

-- hub_fan_out --
-- As notify_worker: every notification changed since snapshot $1 (not visible in it, not held), in seq order, each with this read's snapshot; one row of NULLs but the snapshot when none changed
-- No filter by the sessions' users: the changed set per wake-up is small and the session set large (the hub filters in Python).
-- The index range starts at $1's xmin; rows seen by $1 (re-read behind a long transaction) are filtered before their JSON is built.
-- `seen`: the seen watermarks moved since $1, [[user_id, seen_seq], ...] as JSON text (NULL: none), read in the same snapshot.
SELECT s.snapshot, s.seen, c.user_id, c.seq, c.id, c.read_at, c.deleted, c.lag, c.data
FROM (SELECT pg_catalog.pg_current_snapshot()::text AS snapshot,
             (SELECT pg_catalog.json_agg(pg_catalog.json_build_array(m.user_id, m.seen_seq))::text
              FROM notify.inbox_marks AS m
              WHERE m.changed_xid >= pg_catalog.pg_snapshot_xmin($1::text::pg_snapshot)
                AND NOT pg_catalog.pg_visible_in_snapshot(m.changed_xid, $1::text::pg_snapshot)) AS seen) AS s
LEFT JOIN LATERAL (
    SELECT n.user_id, n.seq, n.id::text AS id,
           -- the read_status_updated event's read_at, as the notification's JSON has it
           CASE WHEN n.deleted_at IS NULL THEN pg_catalog.to_jsonb(n.read_at) #>> '{}' END AS read_at,
           n.deleted_at IS NOT NULL AS deleted,
           extract(epoch FROM pg_catalog.clock_timestamp() - n.updated_at)::float8 AS lag,
           (pg_catalog.to_jsonb(n) - ARRAY['user_id', 'changed_xid', 'template_vars', 'idempotency_key', 'batch_id', 'held_until', 'rendered', 'render_error', 'sealed', 'decisions'])::text AS data
    FROM notify.notifications AS n
    WHERE n.changed_xid >= pg_catalog.pg_snapshot_xmin($1::text::pg_snapshot)
      AND NOT pg_catalog.pg_visible_in_snapshot(n.changed_xid, $1::text::pg_snapshot)
      -- A held row's event waits for its release, which gives it a new seq and xid.
      AND n.held_until IS NULL
    ORDER BY n.seq
) AS c ON true

-- hub_unread_counts --
-- As notify_worker: the count and the by-type counts (JSON text) of each given user's unread notifications in the inbox proper, and how many of them are unseen (the badge); a user with none has no row
SELECT per_type.user_id, sum(per_type.unread)::bigint AS count, jsonb_object_agg(per_type.type, per_type.unread)::text AS by_type,
       sum(per_type.unseen)::bigint AS unseen
FROM (
    SELECT n.user_id, n.type, count(*) AS unread, count(*) FILTER (WHERE n.seen_at IS NULL) AS unseen
    FROM notify.center AS n
    WHERE n.user_id = ANY($1::uuid[]) AND n.read_at IS NULL
    GROUP BY n.user_id, n.type
) AS per_type
GROUP BY per_type.user_id

-- ws_max_seq --
-- As the caller: the highest seq of the caller's notifications (0 if none)
SELECT coalesce(max(n.seq), 0) FROM notify.notifications AS n WHERE n.user_id = notify.current_user_id()

-- ws_seq_of --
-- As the caller: the current seq of one of the caller's notifications (no row if not visible)
SELECT n.seq FROM notify.notifications AS n WHERE n.id = $1 AND n.created_at >= notify_private.created_from($1) AND n.created_at < notify_private.created_before($1) AND n.user_id = notify.current_user_id()

-- ws_resume_page --
-- As the caller: the caller's notifications created or changed after seq $1 and up to seq $2 (NULL: no bound), not held, in seq order, at most $3
SELECT n.seq, pg_catalog.to_jsonb(n) - ARRAY['user_id', 'changed_xid', 'template_vars', 'idempotency_key', 'batch_id', 'held_until', 'rendered', 'render_error', 'sealed', 'decisions'] AS data
FROM notify.notifications AS n
WHERE n.user_id = notify.current_user_id() AND n.seq > $1
  AND n.seq <= coalesce($2::bigint, 9223372036854775807) AND n.held_until IS NULL
ORDER BY n.seq
LIMIT $3

-- ws_mark_read --
-- As the caller: marks one notification read; NULL if it is not the caller's
SELECT notify.mark_read($1)

-- ws_unread_count --
-- As the caller: {"count", "by_type"} of the caller's unread notifications
SELECT notify.unread_count()

-- ws_seen_state --
-- As the caller: {"seen_seq", "unseen_count"}, the caller's badge
SELECT notify.seen_state()

-- ws_resume_seen_state --
-- As the caller: the caller's badge, NULL if they never marked anything seen (then their unseen count is their unread count)
SELECT CASE WHEN EXISTS (SELECT 1 FROM notify.inbox_marks AS m WHERE m.user_id = notify.current_user_id())
            THEN notify.seen_state() END

-- ws_mark_seen --
-- As the caller: marks the given notifications seen (NULL: all the inbox shows); how many were unseen
SELECT notify.mark_seen($1::uuid[])

-- ws_archive --
-- As the caller: archives one notification; when, written as the notification frames write it (P0002: not the caller's)
SELECT to_jsonb(notify.archive($1)) #>> '{}'

-- ws_unarchive --
-- As the caller: unarchives one notification (P0002: not the caller's)
SELECT notify.unarchive($1)

-- ws_snooze --
-- As the caller: snoozes one notification until $2; until when, written as the notification frames write it
-- (22023: not in the future; P0002: not the caller's)
SELECT to_jsonb(notify.snooze($1, $2)) #>> '{}'

-- admin_stream_start --
-- As the admin: where an activity stream starts, as snapshot text: $1 (its resume point; 22P02 when PostgreSQL reads no snapshot in it), or now when $1 is NULL or ahead of now (a point from before a restore)
SELECT CASE WHEN s.after IS NULL OR pg_catalog.pg_snapshot_xmax(s.after) > pg_catalog.pg_snapshot_xmax(s.now) THEN s.now
            ELSE s.after END::text
FROM (SELECT $1::text::pg_snapshot AS after, pg_catalog.pg_current_snapshot() AS now) AS s

-- admin_activity --
-- As the admin: this read's snapshot; the notifications changed since snapshot $1 with user $2, type $3, priority $4 and a delivery on channel $5 (NULL: any), in the order they changed, at most $6; then the watched ones $7 that did not change (their deliveries may have); each as the console's activity row (JSON text) with its channels (JSON text); one row of NULLs but the snapshot when there are none
-- No org filter: RLS alone keeps an org admin to their org's notifications.
SELECT s.snapshot, a.changed, a.id, a.channels::text AS channels,
       pg_catalog.jsonb_build_object('id', a.id, 'user_id', a.user_id, 'type', a.type, 'priority', a.priority,
                                     'title', a.title, 'created_at', a.created_at, 'channels', a.channels)::text AS row
FROM (SELECT pg_catalog.pg_current_snapshot()::text AS snapshot) AS s
LEFT JOIN LATERAL (
    (SELECT true AS changed, n.id, n.user_id, n.type, n.priority, n.title, n.created_at,
            notify.delivery_status(n.id) AS channels
     FROM notify.notifications AS n
     WHERE n.changed_xid >= pg_catalog.pg_snapshot_xmin($1::text::pg_snapshot)
       AND NOT pg_catalog.pg_visible_in_snapshot(n.changed_xid, $1::text::pg_snapshot)
       AND ($2::uuid IS NULL OR n.user_id = $2)
       AND ($3::text IS NULL OR n.type = $3)
       AND ($4::text IS NULL OR n.priority = $4)
       AND ($5::text IS NULL OR EXISTS (SELECT 1 FROM notify.delivery_decisions_of(ARRAY[n.id]) AS d
                                        WHERE d.channel = $5))
     ORDER BY n.changed_xid, n.created_at, n.id
     LIMIT $6)
    UNION ALL
    SELECT false, n.id, n.user_id, n.type, n.priority, n.title, n.created_at, notify.delivery_status(n.id)
    FROM notify.notifications AS n
    WHERE n.id = ANY ($7::uuid[])
      AND (n.changed_xid < pg_catalog.pg_snapshot_xmin($1::text::pg_snapshot)
           OR pg_catalog.pg_visible_in_snapshot(n.changed_xid, $1::text::pg_snapshot))
) AS a ON true
