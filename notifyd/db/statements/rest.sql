-- The REST notification center's SQL (notifyd.rest.notifications); each runs as the caller, so RLS decides.

-- authenticate_service --
-- Whether $2 is the live key of the service named $1, counting a wrong one against client $3 (as notify_worker)
SELECT valid, retry_after FROM notify.authenticate_service($1, $2, $3, $4, $5)

-- send_notification --
-- Creates one notification through notify.send; a replayed idempotency key returns the first id
SELECT notify.send(user_id => $1, type => $2, title => $3, body => $4, priority => $5, data => $6,
                   channels => $7, template => $8, template_vars => $9, idempotency_key => $10,
                   expires_at => $11, send_at => $12, group_key => $13, escalation => $14::jsonb)

-- sent_notification --
-- A just-sent notification: when, the channels it goes out on (skipped ones left out), whether this transaction created it
SELECT n.id, n.created_at,
       n.changed_xid = pg_current_xact_id() AS created,
       ARRAY(SELECT d.channel FROM notify.delivery_decisions_of(ARRAY[n.id]) AS d
             WHERE d.status IN ('pending', 'held', 'sent', 'delivered')
             GROUP BY d.channel ORDER BY array_position(notify.channels(), d.channel)) AS channels
FROM notify.notifications AS n
WHERE n.id = $1 AND n.created_at >= notify_private.created_from($1) AND n.created_at < notify_private.created_before($1)

-- supply_rendering --
-- Hands the rendering ($1) and sealed sensitive fields ($2) of the next template notification of this
-- transaction to the insert trigger
SELECT set_config('notify.rendered', jsonb_build_object('rendered', $1::jsonb, 'sealed', $2::text)::text, true)

-- rendering_language --
-- User $1's locale (a user nobody told us about: the default language) and the default language of templates
SELECT coalesce((SELECT r.locale FROM notify.recipients AS r WHERE r.user_id = $1),
                notify.setting('templates.default_language') #>> '{}') AS locale,
       notify.setting('templates.default_language') #>> '{}' AS default_language

-- send_bulk --
-- Sends one notification to each user of $1 through notify.send_bulk; returns the batch id
SELECT notify.send_bulk(user_ids => $1, type => $2, title => $3, body => $4, priority => $5, data => $6,
                        channels => $7, template => $8, template_vars => $9, idempotency_key => $10,
                        expires_at => $11, send_at => $12, group_key => $13)

-- batch_created_here --
-- Whether this transaction created the batch (false: a replayed idempotency key)
SELECT b.xmin = xid(pg_current_xact_id()) FROM notify.notification_batches AS b WHERE b.id = $1

-- batch_status --
-- A batch with the counts of its notifications and of their deliveries per status
SELECT b.id, b.type, b.recipient_count, b.created_by, b.created_at,
       count(n.id)::integer AS created,
       count(n.read_at)::integer AS read,
       count(n.deleted_at)::integer AS deleted,
       count(n.action_taken)::integer AS actions_taken,
       (SELECT coalesce(jsonb_object_agg(per_status.status, per_status.deliveries), '{}'::jsonb)
        FROM (SELECT d.status, count(*) AS deliveries
              FROM notify.delivery_decisions_of(ARRAY(SELECT bn.id FROM notify.notifications AS bn
                                                      WHERE bn.batch_id = b.id)) AS d
              GROUP BY d.status) AS per_status) AS deliveries
FROM notify.notification_batches AS b
LEFT JOIN notify.notifications AS n ON n.batch_id = b.id
WHERE b.id = $1
GROUP BY b.id

-- list_notifications --
-- One page of the caller's notifications in the order $7 (newest, oldest or priority: most urgent first,
-- then newest); $4/$5 is the (created_at, id) keyset cursor and $8 its priority rank; $9 the inbox state.
-- Each ORDER BY key and the cursor's CASE reduce to one order once $7 is known, so the planned query
-- walks the (user_id, created_at, id) index like a query written for that order alone. The page's delivery
-- statuses come after it, in one statement (delivery_statuses).
SELECT n.id, n.seq, n.type, n.priority, n.title, n.body, n.data, n.read_at, n.seen_at, n.archived_at,
       n.snoozed_until, n.created_at, n.group_key, n.group_count, n.action_taken, n.action_taken_at, n.expires_at
FROM notify.inbox AS n
WHERE n.user_id = notify.current_user_id()
  AND ($1::text IS NULL OR n.type = $1)
  AND ($2::text IS NULL OR n.priority = $2)
  AND ($3::boolean IS NULL OR (n.read_at IS NOT NULL) = $3)
  -- $9, the inbox state: the inbox proper (notify.center's rows) and the states within it, the Archive view,
  -- the snoozed ones, or all
  AND CASE $9::text
      WHEN 'all' THEN true
      WHEN 'archived' THEN n.archived_at IS NOT NULL
      WHEN 'snoozed' THEN n.snoozed_until IS NOT NULL
      ELSE n.archived_at IS NULL AND n.snoozed_until IS NULL AND CASE $9::text
          WHEN 'unseen' THEN n.seen_at IS NULL AND n.read_at IS NULL
          WHEN 'unread' THEN n.read_at IS NULL
          WHEN 'read' THEN n.read_at IS NOT NULL
          ELSE true END
      END
  AND ($5::uuid IS NULL OR CASE $7::text
      WHEN 'oldest' THEN (n.created_at, n.id) > ($4::timestamptz, $5::uuid)
      WHEN 'priority' THEN array_position(ARRAY['critical', 'high', 'normal', 'low'], n.priority) > $8::integer
          OR (array_position(ARRAY['critical', 'high', 'normal', 'low'], n.priority) = $8::integer
              AND (n.created_at, n.id) < ($4::timestamptz, $5::uuid))
      ELSE (n.created_at, n.id) < ($4::timestamptz, $5::uuid) END)
ORDER BY CASE WHEN $7::text = 'priority' THEN array_position(ARRAY['critical', 'high', 'normal', 'low'], n.priority) END,
         CASE WHEN $7::text = 'oldest' THEN n.created_at END,
         CASE WHEN $7::text = 'oldest' THEN n.id END,
         CASE WHEN $7::text <> 'oldest' THEN n.created_at END DESC,
         CASE WHEN $7::text <> 'oldest' THEN n.id END DESC
LIMIT $6

-- delivery_statuses --
-- The delivery status per channel of the listed notifications $1 the caller may see (none decided yet: no row)
SELECT s.notification_id, s.delivery_status FROM notify.delivery_statuses($1::uuid[]) AS s

-- get_notification --
-- One of the caller's visible notifications with its delivery status per channel (and its sealed sensitive fields)
SELECT n.id, n.seq, n.type, n.priority, n.title, n.body, n.data, n.read_at, n.seen_at, n.archived_at,
       n.snoozed_until, n.created_at, n.group_key, n.group_count, n.action_taken, n.action_taken_at, n.expires_at,
       notify.delivery_status(n.id) AS delivery_status, n.sealed
FROM notify.inbox AS n
WHERE n.id = $1 AND n.created_at >= notify_private.created_from($1) AND n.created_at < notify_private.created_before($1) AND n.user_id = notify.current_user_id()

-- unread_count --
-- The caller's unread notifications: {"count": n, "by_type": {...}}
SELECT notify.unread_count()

-- mark_read --
-- Marks one of the caller's notifications read; NULL when it is not visible to the caller
SELECT notify.mark_read($1)

-- mark_seen --
-- Marks the caller's given notifications seen (NULL: all the inbox shows); how many were unseen
SELECT notify.mark_seen($1::uuid[])

-- seen_state --
-- The caller's badge: {"seen_seq", "unseen_count"}
SELECT notify.seen_state()

-- archive --
-- Archives one of the caller's notifications; when (P0002 when it is not visible to the caller)
SELECT notify.archive($1)

-- unarchive --
-- Brings one of the caller's archived notifications back to the inbox (P0002 when it is not visible to the caller)
SELECT notify.unarchive($1)

-- snooze --
-- Snoozes one of the caller's notifications until $2 (22023: not in the future; P0002: not visible to the caller)
SELECT notify.snooze($1, $2)

-- mark_all_read --
-- Marks all of the caller's notifications read; returns how many changed
SELECT notify.mark_all_read()

-- soft_delete --
-- Hides one of the caller's live notifications (deleted_at); no row when it is not visible
UPDATE notify.notifications AS n SET deleted_at = notify.now()
WHERE n.id = $1 AND n.created_at >= notify_private.created_from($1) AND n.created_at < notify_private.created_before($1) AND n.user_id = notify.current_user_id() AND n.deleted_at IS NULL
RETURNING n.id

-- take_action --
-- Records an action button press (notify.take_action); NULL when the notification is not visible
SELECT notify.take_action($1, $2)

-- rate_limit_status --
-- The global bulk-send bucket, for the X-RateLimit-* headers of the create routes
SELECT notify.rate_limit_status()
