-- Delivery planning: which channels a notification goes out on, and the jobs that carry it.

-- The one wrapper over Procrastinate's internal, versioned defer function (pinned: 3.10's _v1).
-- Fail at migrate time, not at the first send, if an upgrade of Procrastinate changed it.
DO $check$
BEGIN
    IF pg_catalog.to_regprocedure(
           'procrastinate.procrastinate_defer_jobs_v1(procrastinate.procrastinate_job_to_defer_v1[])') IS NULL THEN
        RAISE EXCEPTION 'procrastinate.procrastinate_defer_jobs_v1(procrastinate_job_to_defer_v1[]) is missing'
            USING HINT = 'notifyd pins Procrastinate 3.10; update notify_private.defer_jobs for this version';
    END IF;
END
$check$;

-- plpgsql, not sql, here and in the other functions each send calls: PostgreSQL 15 parses and plans
-- the body of a SQL function that it cannot inline at every call; plpgsql keeps its plans for the session.
CREATE OR REPLACE FUNCTION notify_private.defer_jobs(jobs jsonb) RETURNS bigint[]
    LANGUAGE plpgsql
    SECURITY DEFINER
    -- Procrastinate's functions and triggers use unqualified names.
    SET search_path = procrastinate, pg_temp
AS $$
DECLARE
    locked bigint[];
BEGIN
    -- A job with a queueing lock is not added while one with that lock waits (status todo): Procrastinate's
    -- own function would raise a unique violation there, and abort the caller's transaction with it. Its
    -- triggers still add the 'deferred' event and the NOTIFY that wakes a worker.
    WITH inserted AS (
        INSERT INTO procrastinate.procrastinate_jobs (queue_name, task_name, priority, queueing_lock, args, scheduled_at)
        SELECT j.queue, j.task, coalesce(j.priority, 0), j.queueing_lock, j.args, j.scheduled_at
        FROM pg_catalog.jsonb_to_recordset(defer_jobs.jobs)
             AS j(queue text, task text, priority integer, queueing_lock text, args jsonb, scheduled_at timestamptz)
        WHERE j.queueing_lock IS NOT NULL
        ON CONFLICT (queueing_lock) WHERE status = 'todo' DO NOTHING
        RETURNING id
    )
    SELECT pg_catalog.array_agg(inserted.id) INTO locked FROM inserted;
    RETURN locked || (
        SELECT procrastinate.procrastinate_defer_jobs_v1(
            pg_catalog.array_agg(ROW(j.queue, j.task, coalesce(j.priority, 0), NULL, NULL, j.args, j.scheduled_at)
                                 ::procrastinate.procrastinate_job_to_defer_v1))
        FROM pg_catalog.jsonb_to_recordset(defer_jobs.jobs)
             AS j(queue text, task text, priority integer, queueing_lock text, args jsonb, scheduled_at timestamptz)
        WHERE j.queueing_lock IS NULL
        HAVING pg_catalog.count(*) > 0);
END
$$;
ALTER FUNCTION notify_private.defer_jobs(jsonb) OWNER TO notify_definer;
COMMENT ON FUNCTION notify_private.defer_jobs(jsonb)
    IS 'defers Procrastinate jobs [{queue, task, priority, queueing_lock, args, scheduled_at}] in the caller''s transaction; one whose queueing lock waits already is left out';

-- Sends no longer defer channel jobs themselves: the dispatcher does (notify_private.dispatch_deliveries).
DROP FUNCTION IF EXISTS notify_private.delivery_jobs(uuid[]);

-- The sender's side of the queue: its pending deliveries wait in the ledger, and one dispatcher job
-- (per connection, per due time) is enough to fetch them. No job per channel, no job per send.
CREATE OR REPLACE FUNCTION notify_private.queue_dispatch(due timestamptz) RETURNS void
    LANGUAGE plpgsql
    SET search_path = ''
AS $$
DECLARE
    -- Whole seconds: deliveries due within the same second share one dispatcher job.
    due_at constant timestamptz := CASE WHEN queue_dispatch.due > notify.now()
                                        THEN pg_catalog.date_trunc('second', queue_dispatch.due)
                                             + CASE WHEN pg_catalog.date_trunc('second', queue_dispatch.due) < queue_dispatch.due
                                                    THEN interval '1 second' ELSE interval '0' END END;
BEGIN
    -- A dispatcher job that has not started yet and runs by then will find these deliveries: a job
    -- that starts before this transaction commits waits for it (the worker's dispatcher task does).
    IF EXISTS (SELECT 1 FROM procrastinate.procrastinate_jobs AS j
               WHERE j.queueing_lock IS NOT NULL AND j.status = 'todo' AND j.queue_name = 'dispatch'
                 AND coalesce(j.scheduled_at, '-infinity') <= coalesce(due_at, pg_catalog.now())) THEN
        RETURN;
    END IF;
    -- The queueing lock names this connection: a second send of the same transaction adds nothing, and,
    -- unlike one lock for all, a sender never waits for another sender's transaction to end.
    PERFORM notify_private.defer_jobs(pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(
        'queue', 'dispatch', 'task', 'dispatch_deliveries', 'priority', 10, 'scheduled_at', due_at,
        'queueing_lock', 'dispatch:' || pg_catalog.pg_backend_pid()
                         || coalesce('@' || extract(epoch FROM due_at)::bigint, ''),
        -- The request that woke the dispatcher, for the worker's log lines (NULL outside one).
        'args', pg_catalog.jsonb_build_object(
            'request_id', NULLIF(pg_catalog.current_setting('notifyd.request_id', true), '')))));
END
$$;
COMMENT ON FUNCTION notify_private.queue_dispatch(timestamptz)
    IS 'makes sure a dispatcher job runs by `due` (at once if due is past), in the caller''s transaction; adds no job if one is queued';

-- Immutable SQL: inlined wherever it is used.
CREATE OR REPLACE FUNCTION notify_private.delivery_queue(channel text, device_kind text) RETURNS text
    LANGUAGE sql IMMUTABLE
AS $$
    SELECT CASE WHEN delivery_queue.channel IN ('email', 'in_app', 'webhook', 'chat', 'sms') THEN delivery_queue.channel
                WHEN delivery_queue.device_kind = 'fcm' THEN 'fcm'
                ELSE 'push' END
$$;
COMMENT ON FUNCTION notify_private.delivery_queue(text, text)
    IS 'the queue (and worker channel) a delivery goes out on: push, fcm, email, webhook, chat, sms or in_app';

-- The worker's side: the due deliveries the dispatcher hands to the channels' jobs, or runs itself.
-- Its result gained the batches the dispatcher runs itself (kept): CREATE OR REPLACE cannot change that.
DROP FUNCTION IF EXISTS notify_private.dispatch_deliveries(text);
CREATE OR REPLACE FUNCTION notify_private.dispatch_deliveries(request_id text DEFAULT NULL, runner bigint DEFAULT NULL,
                                                              direct text[] DEFAULT '{}')
    RETURNS TABLE (dispatched integer, jobs integer, next_due timestamptz, more boolean, kept jsonb)
    LANGUAGE plpgsql
    SET search_path = ''
AS $$
DECLARE
    size constant integer := notify.setting('delivery.dispatch_size')::integer;
    job_size constant integer := notify.setting('delivery.job_size')::integer;
    defer jsonb;
BEGIN
    -- Stamped queued, so that no other dispatcher takes them again (those it holds are skipped). The first
    -- delivery.job_size of each queue the caller runs itself (direct) are kept: it sends them without a
    -- channel job in between (a job's defer, NOTIFY, fetch and finish), stamped with its own job id
    -- (dispatched_by), which a retry of that job, after a crash, finds them by.
    WITH due AS (
        SELECT d.id FROM notify.notification_deliveries AS d
        WHERE d.status = 'pending' AND d.queued_at IS NULL
          AND coalesce(d.scheduled_for, '-infinity'::timestamptz) <= notify.now()
        ORDER BY coalesce(d.scheduled_for, '-infinity'::timestamptz)
        LIMIT size
        FOR UPDATE SKIP LOCKED
    ), routed AS (
        SELECT r.*, pg_catalog.row_number() OVER (PARTITION BY r.queue ORDER BY r.priority DESC, r.id) - 1 AS position
        FROM (SELECT d.id, notify_private.delivery_queue(d.channel, p.kind) AS queue,
                     pg_catalog.array_position(ARRAY['low', 'normal', 'high', 'critical'], n.priority) AS priority
              FROM due
              JOIN notify.notification_deliveries AS d ON d.id = due.id
              JOIN notify.notifications AS n ON n.id = d.notification_id
              LEFT JOIN notify.push_subscriptions AS p ON p.id = d.subscription_id) AS r
    ), marked AS (
        SELECT r.*, dispatch_deliveries.runner IS NOT NULL AND r.queue = ANY (dispatch_deliveries.direct)
                    AND r.position < job_size AS keep
        FROM routed AS r
    ), stamped AS (
        UPDATE notify.notification_deliveries AS d
        SET queued_at = notify.now(), dispatched_by = CASE WHEN m.keep THEN dispatch_deliveries.runner END
        FROM marked AS m WHERE d.id = m.id
    ), chunks AS (
        -- One job per queue and priority, each carrying at most delivery.job_size deliveries.
        SELECT m.queue, m.priority, pg_catalog.array_agg(m.id ORDER BY m.id) AS ids
        FROM marked AS m WHERE NOT m.keep
        GROUP BY m.queue, m.priority, m.position / job_size
    )
    SELECT (SELECT pg_catalog.count(*) FROM marked)::integer, pg_catalog.count(*)::integer,
           pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'queue', c.queue, 'task', 'deliver_' || c.queue, 'priority', c.priority,
               'args', pg_catalog.jsonb_build_object('delivery_ids', c.ids,
                                                     'request_id', dispatch_deliveries.request_id))),
           (SELECT pg_catalog.jsonb_object_agg(k.queue, k.ids)
            FROM (SELECT m.queue, pg_catalog.array_agg(m.id ORDER BY m.id) AS ids
                  FROM marked AS m WHERE m.keep GROUP BY m.queue) AS k)
    INTO dispatched, jobs, defer, kept
    FROM chunks AS c;
    IF jobs > 0 THEN
        PERFORM notify_private.defer_jobs(defer);
    END IF;
    -- The next one to come due (a time past: more than one batch is due, or one is held by another
    -- transaction); later ones get a dispatcher job at their time.
    SELECT coalesce(d.scheduled_for, '-infinity'::timestamptz) INTO next_due
    FROM notify.notification_deliveries AS d
    WHERE d.status = 'pending' AND d.queued_at IS NULL
    ORDER BY coalesce(d.scheduled_for, '-infinity'::timestamptz)
    LIMIT 1;
    IF next_due > notify.now() THEN
        PERFORM notify_private.queue_dispatch(next_due);
    END IF;
    -- A full batch: more may be due, the caller calls again.
    more := dispatched = size;
    RETURN NEXT;
END
$$;
COMMENT ON FUNCTION notify_private.dispatch_deliveries(text, bigint, text[])
    IS 'hands up to delivery.dispatch_size due deliveries to channel jobs (push, fcm, email, webhook, chat, sms, in_app), keeps the first job''s worth of each direct queue for the calling dispatcher job to send itself, and says when the next is due';

-- What a dispatcher job kept for itself and has not finished: a retry of that job (its worker died) sends it.
CREATE OR REPLACE FUNCTION notify_private.kept_deliveries(runner bigint)
    RETURNS TABLE (queue text, ids uuid[])
    LANGUAGE sql STABLE
    SET search_path = ''
AS $$
    SELECT notify_private.delivery_queue(d.channel, p.kind), pg_catalog.array_agg(d.id ORDER BY d.id)
    FROM notify.notification_deliveries AS d
    LEFT JOIN notify.push_subscriptions AS p ON p.id = d.subscription_id
    -- Pending deliveries are few: the open-deliveries index (channel, status) finds them.
    WHERE d.status = 'pending' AND d.channel <> 'in_app' AND d.dispatched_by = kept_deliveries.runner
    GROUP BY 1
$$;
COMMENT ON FUNCTION notify_private.kept_deliveries(bigint)
    IS 'the pending deliveries a dispatcher job kept to send itself, per queue (what its retry sends)';

-- Deliveries kept by a dispatcher job that will not run again (failed past its retries, cancelled): the sweep's
-- job takes them over, so that they are not left pending. A job still todo or doing (its worker may be dead:
-- the stalled-job recovery runs it again) keeps its own.
CREATE OR REPLACE FUNCTION notify_private.adopt_kept_deliveries(runner bigint) RETURNS integer
    LANGUAGE plpgsql
    SET search_path = ''
AS $$
DECLARE
    adopted integer;
BEGIN
    WITH orphaned AS (
        SELECT d.id FROM notify.notification_deliveries AS d
        WHERE d.status = 'pending' AND d.channel <> 'in_app' AND d.dispatched_by IS NOT NULL
          AND d.dispatched_by <> adopt_kept_deliveries.runner
          AND NOT EXISTS (SELECT 1 FROM procrastinate.procrastinate_jobs AS j
                          WHERE j.id = d.dispatched_by AND j.status IN ('todo', 'doing'))
        FOR UPDATE OF d SKIP LOCKED
    ), adopted_rows AS (
        UPDATE notify.notification_deliveries AS d SET dispatched_by = adopt_kept_deliveries.runner
        FROM orphaned WHERE d.id = orphaned.id
        RETURNING 1
    )
    SELECT pg_catalog.count(*) INTO adopted FROM adopted_rows;
    RETURN adopted;
END
$$;
COMMENT ON FUNCTION notify_private.adopt_kept_deliveries(bigint)
    IS 'hands the pending deliveries kept by dispatcher jobs that will not run again to dispatcher job `runner`; how many';

-- A batch the dispatcher sent itself that is to be tried again: a channel job carries it from here on.
CREATE OR REPLACE FUNCTION notify_private.hand_over_deliveries(queue text, delivery_ids uuid[], delay float8,
                                                               request_id text DEFAULT NULL)
    RETURNS bigint[]
    LANGUAGE plpgsql
    SET search_path = ''
AS $$
BEGIN
    UPDATE notify.notification_deliveries AS d SET dispatched_by = NULL
    WHERE d.id = ANY (hand_over_deliveries.delivery_ids) AND d.dispatched_by IS NOT NULL;
    RETURN notify_private.defer_jobs(pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(
        'queue', hand_over_deliveries.queue, 'task', 'deliver_' || hand_over_deliveries.queue,
        'scheduled_at', pg_catalog.now() + pg_catalog.make_interval(secs => hand_over_deliveries.delay),
        'args', pg_catalog.jsonb_build_object('delivery_ids', hand_over_deliveries.delivery_ids,
                                              'request_id', hand_over_deliveries.request_id))));
END
$$;
COMMENT ON FUNCTION notify_private.hand_over_deliveries(text, uuid[], float8, text)
    IS 'hands deliveries a dispatcher job sent itself and must retry to a channel job due after `delay` seconds';

-- Its result gained the locks, then SMS, webhook and chat: CREATE OR REPLACE cannot change a result type.
DROP FUNCTION IF EXISTS notify_private.effective_preferences(uuid, text);
-- No SET clause (names are qualified): PostgreSQL inlines it into the insert trigger's query that decides
-- a notification's channels (channel_decisions), instead of calling (and, being SQL, planning) it each time.
CREATE FUNCTION notify_private.effective_preferences(user_id uuid, type text)
    RETURNS TABLE (push_enabled boolean, email_enabled boolean, digest_frequency text,
                   push_locked boolean, email_locked boolean, sms_enabled boolean, sms_locked boolean,
                   webhook_enabled boolean, webhook_locked boolean, chat_enabled boolean, chat_locked boolean)
    LANGUAGE sql STABLE
    ROWS 1
AS $$
    -- Per switch, the most specific level that sets it: the user's row for the type, the user's
    -- global row, the org's row for the type, the org's global row, the defaults (every channel on).
    -- A channel an org admin locked is the org's call: the most specific lock's value.
    WITH levels AS (
        SELECT p.push_enabled, p.email_enabled, p.sms_enabled, p.webhook_enabled, p.chat_enabled, p.digest_frequency,
               false AS push_locked, false AS email_locked, false AS sms_locked, false AS webhook_locked,
               false AS chat_locked, CASE WHEN p.notification_type IS NULL THEN 2 ELSE 1 END AS level
        FROM notify.notification_preferences AS p
        WHERE p.user_id = effective_preferences.user_id
          AND (p.notification_type = effective_preferences.type OR p.notification_type IS NULL)
        UNION ALL
        SELECT o.push_enabled, o.email_enabled, o.sms_enabled, o.webhook_enabled, o.chat_enabled, o.digest_frequency,
               o.push_locked, o.email_locked, o.sms_locked, o.webhook_locked, o.chat_locked,
               CASE WHEN o.notification_type IS NULL THEN 4 ELSE 3 END
        FROM notify.org_notification_preferences AS o
        JOIN notify.recipients AS r ON r.org_id = o.org_id
        WHERE r.user_id = effective_preferences.user_id
          AND (o.notification_type = effective_preferences.type OR o.notification_type IS NULL)
    ), firsts AS (
        -- One pass over the levels: each array lists a switch's values, most specific first.
        SELECT (pg_catalog.array_agg(l.push_enabled ORDER BY l.level) FILTER (WHERE l.push_enabled IS NOT NULL))[1]
                   AS push,
               (pg_catalog.array_agg(l.email_enabled ORDER BY l.level) FILTER (WHERE l.email_enabled IS NOT NULL))[1]
                   AS email,
               (pg_catalog.array_agg(l.sms_enabled ORDER BY l.level) FILTER (WHERE l.sms_enabled IS NOT NULL))[1]
                   AS sms,
               (pg_catalog.array_agg(l.webhook_enabled ORDER BY l.level) FILTER (WHERE l.webhook_enabled IS NOT NULL))[1]
                   AS webhook,
               (pg_catalog.array_agg(l.chat_enabled ORDER BY l.level) FILTER (WHERE l.chat_enabled IS NOT NULL))[1]
                   AS chat,
               (pg_catalog.array_agg(l.digest_frequency ORDER BY l.level)
                    FILTER (WHERE l.digest_frequency IS NOT NULL))[1] AS digest,
               -- A lock without a value (notify.set_org_preference refuses one) would lock the channel on.
               (pg_catalog.array_agg(coalesce(l.push_enabled, true) ORDER BY l.level) FILTER (WHERE l.push_locked))[1]
                   AS push_lock,
               (pg_catalog.array_agg(coalesce(l.email_enabled, true) ORDER BY l.level) FILTER (WHERE l.email_locked))[1]
                   AS email_lock,
               (pg_catalog.array_agg(coalesce(l.sms_enabled, true) ORDER BY l.level) FILTER (WHERE l.sms_locked))[1]
                   AS sms_lock,
               (pg_catalog.array_agg(coalesce(l.webhook_enabled, true) ORDER BY l.level)
                    FILTER (WHERE l.webhook_locked))[1] AS webhook_lock,
               (pg_catalog.array_agg(coalesce(l.chat_enabled, true) ORDER BY l.level) FILTER (WHERE l.chat_locked))[1]
                   AS chat_lock
        FROM levels AS l
    )
    SELECT coalesce(f.push_lock, f.push, true), coalesce(f.email_lock, f.email, true),
           -- A subquery of its own: read once per statement, not once per user.
           coalesce(f.digest, (SELECT notify.setting('digest.default_frequency') #>> '{}')),
           f.push_lock IS NOT NULL, f.email_lock IS NOT NULL,
           coalesce(f.sms_lock, f.sms, true), f.sms_lock IS NOT NULL,
           coalesce(f.webhook_lock, f.webhook, true), f.webhook_lock IS NOT NULL,
           coalesce(f.chat_lock, f.chat, true), f.chat_lock IS NOT NULL
    FROM firsts AS f
$$;
COMMENT ON FUNCTION notify_private.effective_preferences(uuid, text)
    IS 'the switches in force for a user and type (push, e-mail, digest, SMS, webhook, chat), each from the most specific level that sets it; org locks win (and are said)';

-- Immutable SQL (|| on text, not format, which is only stable): inlined wherever it is used.
CREATE OR REPLACE FUNCTION notify_private.turned_off(channel text, type text, enabled boolean, locked boolean,
                                                     critical boolean) RETURNS text
    LANGUAGE sql IMMUTABLE
AS $$
    -- Critical is the user's safety: it overrides their own switch, never a channel their org locked off.
    SELECT CASE WHEN NOT turned_off.enabled AND (NOT turned_off.critical OR turned_off.locked)
                THEN turned_off.channel || ' is turned off for ' || turned_off.type || ' notifications'
                     || CASE WHEN turned_off.locked THEN ' by the organization' ELSE '' END END
$$;
COMMENT ON FUNCTION notify_private.turned_off(text, text, boolean, boolean, boolean)
    IS 'why a channel (named as a reader says it: push, SMS, webhook, chat) is skipped by the switch in force; NULL: it is not';

-- SQL, STABLE and no SET clause: inlined into channel_decisions, once for push and once for SMS.
CREATE OR REPLACE FUNCTION notify_private.held_for_quiet_hours(until timestamptz, zone text, now_at timestamptz)
    RETURNS jsonb
    LANGUAGE sql STABLE
AS $$
    SELECT pg_catalog.jsonb_build_object(
        'status', 'pending',
        'reason', format('held for quiet hours until %s %s',
                         to_char(held_for_quiet_hours.until AT TIME ZONE held_for_quiet_hours.zone, 'YYYY-MM-DD HH24:MI'),
                         held_for_quiet_hours.zone),
        'until', nullif(held_for_quiet_hours.until, held_for_quiet_hours.now_at))
$$;
COMMENT ON FUNCTION notify_private.held_for_quiet_hours(timestamptz, text, timestamptz)
    IS 'a channel''s decision entry while the user''s quiet hours hold it: pending until `until` (NULL if that is now), and why, in their zone';

-- Its result is the notification's decision record (it returned a delivery per channel before).
DROP FUNCTION IF EXISTS notify_private.channel_decisions(notify.notifications);
-- SQL, STABLE and no SET clause, so that PostgreSQL inlines it into the insert trigger's query, whose plan
-- is kept for the session. The insert trigger stores what it returns in notifications.decisions: then no
-- channel that is not sent needs a delivery row, and planning the deliveries (plan_notification) reads
-- no preferences again.
-- Its body calls notify_private.quiet_hours_end, which 065_quiet_hours.sql creates after this file.
SET check_function_bodies = off;
CREATE FUNCTION notify_private.channel_decisions(notification notify.notifications)
    RETURNS TABLE (decisions jsonb)
    LANGUAGE sql STABLE
    ROWS 1
AS $$
    -- Only what is not "sent at once": {} (stored as NULL) for a notification every channel of which goes now.
    SELECT nullif(pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
               'push', CASE
                   WHEN NOT ('push' = ANY (k.wanted)) THEN NULL
                   WHEN decided.push_skipped IS NOT NULL
                   THEN pg_catalog.jsonb_build_object('status', 'skipped', 'reason', decided.push_skipped)
                   WHEN quiet.quiet_until >= k.now_at
                   THEN notify_private.held_for_quiet_hours(quiet.quiet_until, recipient.timezone, k.now_at)
               END,
               'email', CASE WHEN 'email' = ANY (k.wanted) AND decided.email_status <> 'pending'
                             THEN pg_catalog.jsonb_build_object('status', decided.email_status,
                                                                'reason', decided.email_reason) END,
               -- SMS as push: skipped with its reason, or held for quiet hours.
               'sms', CASE
                   WHEN NOT ('sms' = ANY (k.wanted)) THEN NULL
                   WHEN decided.sms_skipped IS NOT NULL
                   THEN pg_catalog.jsonb_build_object('status', 'skipped', 'reason', decided.sms_skipped)
                   WHEN quiet.sms_quiet_until >= k.now_at
                   THEN notify_private.held_for_quiet_hours(quiet.sms_quiet_until, recipient.timezone, k.now_at)
               END,
               -- Webhook and chat: only a switch skips them (planning finds their targets, or none).
               'webhook', CASE WHEN 'webhook' = ANY (k.wanted) AND off.webhook IS NOT NULL
                               THEN pg_catalog.jsonb_build_object('status', 'skipped', 'reason', off.webhook) END,
               'chat', CASE WHEN 'chat' = ANY (k.wanted) AND off.chat IS NOT NULL
                            THEN pg_catalog.jsonb_build_object('status', 'skipped', 'reason', off.chat) END,
               -- The chain it follows, as it stood when it was sent: planning, cancelling and explain read it here.
               'escalation', chain.steps)),
           '{}'::jsonb)
    FROM (SELECT (channel_decisions.notification).*) AS n
    -- An escalation chain (the sender's, else its type's) replaces the priority's channel choice; not for
    -- critical, which goes everywhere at once. An empty chain from the sender: the priority's channels.
    CROSS JOIN LATERAL (
        SELECT CASE WHEN n.priority <> 'critical'
                    THEN nullif(coalesce(n.escalation, (SELECT c.steps FROM notify.escalation_chains AS c
                                                        WHERE c.type = n.type)), '[]'::jsonb) END AS steps
        OFFSET 0  -- evaluated once: a flattened subquery would copy the expression into each use
    ) AS chain
    -- By priority: critical everywhere; high and normal in-app, push and e-mail (instant or digest);
    -- low in-app, e-mail by digest only. A sender's channels narrow that set.
    -- Critical is the user's safety (security alerts): their own switches do not stop it; an org lock does.
    CROSS JOIN LATERAL (
        SELECT notify_private.escalation_wanted(chain.steps, n.priority, n.channels) AS wanted,
               n.priority = 'critical' AS critical,
               notify.now() AS now_at,
               -- When its push step is due (now without a chain): quiet hours are read for that time.
               (notify_private.escalation_step(chain.steps, 'push') ->> 'after')::interval AS push_after,
               (notify_private.escalation_step(chain.steps, 'sms') ->> 'after')::interval AS sms_after,
               notify_private.escalation_step(chain.steps, 'email') IS NOT NULL AS email_step
    ) AS k
    CROSS JOIN LATERAL notify_private.effective_preferences(n.user_id, n.type) AS prefs
    LEFT JOIN LATERAL (
        SELECT r.email, r.timezone, sup.reason AS suppression, r.phone, r.sms_opted_out_at
        FROM notify.recipients AS r
        LEFT JOIN notify.email_suppressions AS sup ON sup.email = lower(r.email)
        WHERE r.user_id = n.user_id
    ) AS recipient ON true
    CROSS JOIN LATERAL (
        SELECT EXISTS (SELECT 1 FROM notify.push_subscriptions AS s WHERE s.user_id = n.user_id AND s.is_active)
               AS has_device
        OFFSET 0  -- evaluated once: a flattened subquery would copy the expression into each use
    ) AS device
    CROSS JOIN LATERAL (
        -- Non-critical push waits for the end of the user's quiet hours (in-app never waits).
        -- Read only where it decides something: push on, not critical, a device to send to.
        SELECT CASE WHEN 'push' = ANY (k.wanted) AND NOT k.critical AND prefs.push_enabled AND device.has_device
                    THEN notify_private.quiet_hours_end(n.user_id, n.type, greatest(n.send_at, k.now_at)
                                                                           + coalesce(k.push_after, interval '0')) END
               AS quiet_until,
               CASE WHEN 'sms' = ANY (k.wanted) AND NOT k.critical AND prefs.sms_enabled AND recipient.phone IS NOT NULL
                    THEN notify_private.quiet_hours_end(n.user_id, n.type, greatest(n.send_at, k.now_at)
                                                                           + coalesce(k.sms_after, interval '0')) END
               AS sms_quiet_until
        OFFSET 0  -- evaluated once, as above
    ) AS quiet
    CROSS JOIN LATERAL (
        SELECT notify_private.turned_off('push', n.type, prefs.push_enabled, prefs.push_locked, k.critical) AS push,
               notify_private.turned_off('SMS', n.type, prefs.sms_enabled, prefs.sms_locked, k.critical) AS sms,
               notify_private.turned_off('webhook', n.type, prefs.webhook_enabled, prefs.webhook_locked, k.critical)
                   AS webhook,
               notify_private.turned_off('chat', n.type, prefs.chat_enabled, prefs.chat_locked, k.critical) AS chat
    ) AS off
    CROSS JOIN LATERAL (
        SELECT CASE
                   WHEN off.push IS NOT NULL THEN off.push
                   WHEN NOT device.has_device THEN 'no active push subscription'
                   WHEN quiet.quiet_until = 'infinity' THEN format('quiet hours never end for %s notifications', n.type)
               END AS push_skipped,
               CASE
                   -- Critical overrides the user's own switch, not a channel their org locked off.
                   WHEN (NOT k.critical AND (NOT prefs.email_enabled OR prefs.digest_frequency = 'never'))
                        OR (prefs.email_locked AND NOT prefs.email_enabled)
                   THEN 'skipped'
                   WHEN recipient.email IS NULL THEN 'skipped'
                   WHEN recipient.suppression IS NOT NULL THEN 'suppressed'
                   -- An e-mail step is sent as an e-mail, never folded into a digest.
                   WHEN k.critical OR k.email_step THEN 'pending'
                   WHEN prefs.digest_frequency = 'instant' AND n.priority <> 'low' THEN 'pending'
                   WHEN prefs.digest_frequency = 'instant' THEN 'skipped'
                   ELSE 'held'
               END AS email_status,
               CASE
                   WHEN (NOT k.critical AND (NOT prefs.email_enabled OR prefs.digest_frequency = 'never'))
                        OR (prefs.email_locked AND NOT prefs.email_enabled)
                   THEN format('e-mail is turned off for %s notifications', n.type)
                        || CASE WHEN prefs.email_locked THEN ' by the organization' ELSE '' END
                   WHEN recipient.email IS NULL THEN 'no e-mail address'
                   WHEN recipient.suppression IS NOT NULL THEN format('the address %s', recipient.suppression)
                   WHEN k.critical OR k.email_step THEN NULL
                   WHEN prefs.digest_frequency = 'instant' AND n.priority <> 'low' THEN NULL
                   WHEN prefs.digest_frequency = 'instant' THEN 'low-priority e-mail goes out in digests only'
                   ELSE format('for the %s digest', prefs.digest_frequency)
               END AS email_reason,
               CASE
                   WHEN off.sms IS NOT NULL THEN off.sms
                   WHEN recipient.phone IS NULL THEN 'no phone number'
                   -- A STOP reply is the law's opt-out (and the carrier's): not even critical overrides it.
                   WHEN recipient.sms_opted_out_at IS NOT NULL
                   THEN format('the number replied STOP on %s', to_char(recipient.sms_opted_out_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI UTC'))
                   WHEN quiet.sms_quiet_until = 'infinity' THEN format('quiet hours never end for %s notifications', n.type)
               END AS sms_skipped
    ) AS decided
$$;
COMMENT ON FUNCTION notify_private.channel_decisions(notify.notifications)
    IS 'a new notification''s decision record (notifications.decisions): each channel not sent at once, with status and reason';

-- Immutable SQL: inlined wherever it is used.
CREATE OR REPLACE FUNCTION notify_private.wanted_channels(priority text, channels text[]) RETURNS text[]
    LANGUAGE sql IMMUTABLE
AS $$
    -- Webhook and chat go where their targets are: a user with none gets no delivery on them.
    SELECT coalesce(wanted_channels.channels,
                    CASE wanted_channels.priority WHEN 'low' THEN ARRAY['in_app', 'email', 'webhook']
                                                  ELSE ARRAY['in_app', 'push', 'email', 'webhook', 'chat'] END)
$$;
COMMENT ON FUNCTION notify_private.wanted_channels(text, text[])
    IS 'the channels a notification goes out on before preferences: the sender''s, else those of its priority';

-- Its result gained a column (token): CREATE OR REPLACE cannot change a result type.
DROP FUNCTION IF EXISTS notify_private.plan_notification(notify.notifications);
-- SQL, STABLE and no SET clause, so that PostgreSQL inlines it: notify_private.plan_deliveries plans
-- every notification of an INSERT in one statement. Being STABLE it cannot spend rate-limit tokens:
-- it says which bucket a delivery spends from (token), and plans it as if the token were free now;
-- plan_deliveries spends the tokens and moves the deliveries that must wait for theirs.
-- A notification's channels are decided once (channel_decisions) and recorded on the row
-- (notifications.decisions): by the insert trigger for a single send, for all of a bulk send's rows in
-- one statement before they are inserted (take_bulk_seqs). A channel recorded skipped or suppressed gets
-- no delivery, one not recorded goes at once.
CREATE FUNCTION notify_private.plan_notification(notification notify.notifications)
    RETURNS TABLE (channel text, subscription_id uuid, status text, reason text, scheduled_for timestamptz,
                   token text, unless text, target_id uuid)
    LANGUAGE sql STABLE
    -- A row per channel (and per device): not the default estimate of 1000, which makes the planner
    -- think a bulk send's planning statement is huge.
    ROWS 3
AS $$
    SELECT c.channel, c.subscription_id, c.status, c.reason, c.scheduled_for, c.token, c.unless, c.target_id
    FROM (SELECT (plan_notification.notification).*) AS n
    CROSS JOIN LATERAL (
        SELECT notify_private.escalation_wanted(n.decisions -> 'escalation', n.priority, n.channels) AS wanted,
               n.priority = 'critical' AS critical,
               notify.now() AS now_at,
               coalesce(n.decisions -> 'push', '{"status": "pending"}') AS push,
               coalesce(n.decisions -> 'email', '{"status": "pending"}') AS email,
               coalesce(n.decisions -> 'sms', '{"status": "pending"}') AS sms,
               notify_private.escalation_step(n.decisions -> 'escalation', 'push') AS push_step,
               notify_private.escalation_step(n.decisions -> 'escalation', 'email') AS email_step,
               notify_private.escalation_step(n.decisions -> 'escalation', 'sms') AS sms_step,
               notify_private.escalation_step(n.decisions -> 'escalation', 'webhook') AS webhook_step,
               notify_private.escalation_step(n.decisions -> 'escalation', 'chat') AS chat_step
    ) AS k
    -- An escalation step is due its `after` past the send (send_at, else now); a later time (quiet hours,
    -- a rate-limit token) moves it further.
    CROSS JOIN LATERAL (
        SELECT nullif(greatest(n.send_at, k.now_at) + (k.push_step ->> 'after')::interval, k.now_at) AS push_due,
               nullif(greatest(n.send_at, k.now_at) + (k.email_step ->> 'after')::interval, k.now_at) AS email_due,
               nullif(greatest(n.send_at, k.now_at) + (k.sms_step ->> 'after')::interval, k.now_at) AS sms_due
    ) AS due
    CROSS JOIN LATERAL (
        -- In-app: listed at once. Only a held real-time event gets a delivery row (pending), which a job
        -- releases when it comes due: one that goes at once is sent with its notification, which is its
        -- record (notify.delivery_decisions shows it as a sent in-app delivery).
        SELECT 'in_app' AS channel, NULL::uuid AS subscription_id, 'pending' AS status,
               CASE WHEN n.template_id IS NOT NULL AND n.rendered IS NULL THEN 'waiting for its template to be rendered'
                    WHEN n.held_until = n.send_at THEN 'scheduled for send_at'
                    ELSE format('in-app rate limit (%s per hour): its real-time event waits for a token',
                                notify.setting('rate_limit.in_app_per_hour')) END AS reason,
               CASE WHEN n.template_id IS NOT NULL AND n.rendered IS NULL
                    THEN CASE WHEN n.send_at > k.now_at THEN n.send_at END
                    WHEN n.held_until = n.send_at THEN n.send_at
                    ELSE n.held_until END AS scheduled_for,
               NULL AS token, NULL AS unless, NULL::uuid AS target_id
        WHERE 'in_app' = ANY (k.wanted)
          AND (n.held_until IS NOT NULL OR (n.template_id IS NOT NULL AND n.rendered IS NULL))
        UNION ALL
        -- Every active device; one token per notification, however many devices (not for critical).
        SELECT 'push', s.id, 'pending',
               coalesce(k.push ->> 'reason', notify_private.step_reason(k.push_step ->> 'after', k.push_step ->> 'unless')),
               greatest((k.push ->> 'until')::timestamptz, due.push_due),
               CASE WHEN NOT k.critical THEN 'push' END, k.push_step ->> 'unless', NULL
        FROM notify.push_subscriptions AS s
        WHERE 'push' = ANY (k.wanted) AND k.push ->> 'status' = 'pending' AND s.user_id = n.user_id AND s.is_active
        UNION ALL
        SELECT 'email', NULL, k.email ->> 'status',
               coalesce(k.email ->> 'reason', notify_private.step_reason(k.email_step ->> 'after', k.email_step ->> 'unless')),
               due.email_due,
               CASE WHEN k.email ->> 'status' = 'pending' AND NOT k.critical THEN 'email' END, k.email_step ->> 'unless', NULL
        WHERE 'email' = ANY (k.wanted) AND k.email ->> 'status' IN ('pending', 'held')
        UNION ALL
        SELECT 'sms', NULL, 'pending',
               coalesce(k.sms ->> 'reason', notify_private.step_reason(k.sms_step ->> 'after', k.sms_step ->> 'unless')),
               greatest((k.sms ->> 'until')::timestamptz, due.sms_due),
               CASE WHEN NOT k.critical THEN 'sms' END, k.sms_step ->> 'unless', NULL
        WHERE 'sms' = ANY (k.wanted) AND k.sms ->> 'status' = 'pending'
        UNION ALL
        -- Every active webhook endpoint and chat connection of the user, and of their org, whose types
        -- include this one, unless the user's switch (or the org's lock) skipped the channel; one token per
        -- notification and channel, however many targets (not for critical). A chat message interrupts like
        -- a push: it waits for the end of the user's quiet hours, read for when its escalation step is due.
        SELECT t.channel, NULL, 'pending',
               CASE WHEN q.until >= k.now_at
                    THEN format('held for quiet hours until %s %s', to_char(q.until AT TIME ZONE who.timezone,
                                                                            'YYYY-MM-DD HH24:MI'), who.timezone)
                    ELSE notify_private.step_reason(step.at ->> 'after', step.at ->> 'unless') END,
               greatest(CASE WHEN q.until > k.now_at THEN q.until END, step.due),
               CASE WHEN NOT k.critical THEN t.channel END, step.at ->> 'unless', t.id
        -- The recipient's org and zone: read only where webhook or chat is wanted at all.
        FROM (SELECT r.org_id, r.timezone FROM notify.recipients AS r
              WHERE r.user_id = n.user_id AND k.wanted && ARRAY['webhook', 'chat']) AS who
        CROSS JOIN LATERAL (
            SELECT 'webhook' AS channel, e.id, e.types FROM notify.webhook_endpoints AS e
            WHERE e.user_id = n.user_id AND e.org_id IS NULL AND e.is_active
            UNION ALL
            SELECT 'webhook', e.id, e.types FROM notify.webhook_endpoints AS e
            WHERE e.org_id = who.org_id AND e.is_active
            UNION ALL
            SELECT 'chat', c.id, c.types FROM notify.chat_connections AS c
            WHERE c.user_id = n.user_id AND c.org_id IS NULL AND c.is_active
            UNION ALL
            SELECT 'chat', c.id, c.types FROM notify.chat_connections AS c
            WHERE c.org_id = who.org_id AND c.is_active
        ) AS t
        -- Its escalation step (NULL: none) and when that is due (NULL: at once).
        CROSS JOIN LATERAL (
            SELECT s.at, nullif(greatest(n.send_at, k.now_at) + (s.at ->> 'after')::interval, k.now_at) AS due
            FROM (SELECT CASE t.channel WHEN 'webhook' THEN k.webhook_step ELSE k.chat_step END AS at) AS s
        ) AS step
        CROSS JOIN LATERAL (
            SELECT CASE WHEN t.channel = 'chat' AND NOT k.critical
                        THEN notify_private.quiet_hours_end(n.user_id, n.type,
                                                            coalesce(step.due, greatest(n.send_at, k.now_at))) END
                   AS until
        ) AS q
        WHERE t.channel = ANY (k.wanted) AND (t.types IS NULL OR n.type = ANY (t.types))
          AND NOT coalesce(n.decisions ? t.channel, false)
          AND q.until IS DISTINCT FROM 'infinity'
    ) AS c
$$;
RESET check_function_bodies;
COMMENT ON FUNCTION notify_private.plan_notification(notify.notifications)
    IS 'the deliveries a new notification gets, from its decision record (none for a skipped channel, in-app only if held): channel, device, status, why, when (quiet hours), and the rate-limit bucket it spends from';

CREATE OR REPLACE FUNCTION notify_private.plan_deliveries() RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = ''
    -- Its statements keep the plan of their first call for the session: a bulk send's row count would
    -- leave every later single send on that connection JIT-compiling (~200 ms) a plan that runs in 1 ms.
    SET jit = off
    -- The statements of the functions it calls (quiet hours, tokens, Procrastinate's defer) find rows
    -- by key: see notify.send.
    SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    pending uuid[];
    unrendered uuid[];
    throttled integer;
    token_times timestamptz[];
BEGIN
    -- One statement for all the new notifications (plan_notification is inlined into it).
    WITH decided AS MATERIALIZED (
        SELECT n.id, n.user_id, n.seq, n.send_at, p.channel, p.subscription_id, p.status, p.reason,
               p.scheduled_for, p.token, p.unless, p.target_id
        FROM new_notifications AS n
        CROSS JOIN LATERAL notify_private.plan_notification(n) AS p
    ), spent AS MATERIALIZED (
        -- A notification spends one token per bucket however many devices, push before e-mail, and a
        -- user's notifications in the order they were sent: past the rate, each waits its turn.
        SELECT t.id, t.token, notify_private.take_token(t.user_id, t.token, notification_id => t.id) AS token_at
        FROM (SELECT DISTINCT d.user_id, d.seq, d.token, d.id FROM decided AS d WHERE d.token IS NOT NULL
              ORDER BY d.user_id, d.seq, d.token DESC) AS t
    ), planned AS (
        INSERT INTO notify.notification_deliveries AS d
            (notification_id, user_id, channel, subscription_id, target_id, status, reason, scheduled_for, sent_at,
             unless)
        SELECT p.id, p.user_id, p.channel, p.subscription_id, p.target_id, p.status,
               CASE WHEN w.waits THEN notify_private.token_wait_reason(p.token) ELSE p.reason END,
               CASE WHEN p.status = 'pending'
                    THEN greatest(CASE WHEN w.waits THEN s.token_at ELSE p.scheduled_for END,
                                  CASE WHEN p.send_at > notify.now() THEN p.send_at END) END,
               CASE WHEN p.status = 'sent' THEN notify.now() END, p.unless
        FROM decided AS p
        LEFT JOIN spent AS s ON s.id = p.id AND s.token = p.token
        -- Its token comes later than now, and later than the end of its quiet hours: it waits for the token.
        CROSS JOIN LATERAL (
            SELECT coalesce(s.token_at > notify.now() AND NOT coalesce(p.scheduled_for >= s.token_at, false), false)
                   AS waits
        ) AS w
        RETURNING d.id, d.status
    )
    SELECT pg_catalog.array_agg(planned.id) INTO pending FROM planned WHERE planned.status = 'pending';
    -- Sent from SQL with a template: one job renders them (in notifyd), then starts their deliveries' jobs.
    SELECT pg_catalog.array_agg(n.id ORDER BY n.id) INTO unrendered
    FROM new_notifications AS n WHERE n.template_id IS NOT NULL AND n.rendered IS NULL;
    -- Bulk sends share one global rate (bulk.*); past it their push and e-mail wait their turn
    -- (throttled, never refused). Critical announcements go at once.
    SELECT pg_catalog.count(*) INTO throttled FROM new_notifications AS n
    WHERE n.batch_id IS NOT NULL AND n.priority <> 'critical';
    IF throttled > 0 THEN
        token_times := notify_private.global_token_times(throttled);
    END IF;
    -- Only push and e-mail wait: a bulk send to in-app users has nothing pending to move.
    IF throttled > 0 AND pending IS NOT NULL THEN
        UPDATE notify.notification_deliveries AS d
        SET scheduled_for = token_times[o.position],
            reason = concat_ws('; ', d.reason, format('global rate limit (%s per minute for bulk sends)',
                                                       notify.setting('rate_limit.global_per_minute')))
        FROM (SELECT n.id, pg_catalog.row_number() OVER (ORDER BY n.id) AS position
              FROM new_notifications AS n WHERE n.batch_id IS NOT NULL AND n.priority <> 'critical') AS o
        WHERE d.notification_id = o.id AND d.id = ANY (pending) AND d.channel <> 'in_app'
          AND token_times[o.position] > coalesce(d.scheduled_for, notify.now());
    END IF;
    IF unrendered IS NOT NULL THEN
        PERFORM notify_private.defer_jobs(pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(
            'queue', 'render', 'task', 'render_notifications',
            'args', pg_catalog.jsonb_build_object('notification_ids', unrendered))));
        -- Theirs until rendered: notify_private.store_rendering gives them back to the dispatcher.
        UPDATE notify.notification_deliveries AS d SET queued_at = notify.now()
        WHERE d.id = ANY (pending) AND d.notification_id = ANY (unrendered);
    END IF;
    -- One dispatcher job, by the time the first of them is due, unless one is queued already.
    IF pending IS NOT NULL THEN
        PERFORM notify_private.queue_dispatch(due.at)
        FROM (SELECT pg_catalog.min(coalesce(d.scheduled_for, '-infinity')) AS at
              FROM pg_catalog.unnest(pending) AS wanted(id)
              -- Each delivery by its key: offered "queued_at IS NULL" beside the ids, the planner may
              -- read every waiting delivery through the dispatcher's index instead.
              CROSS JOIN LATERAL (SELECT * FROM notify.notification_deliveries AS d WHERE d.id = wanted.id OFFSET 0) AS d
              WHERE d.queued_at IS NULL) AS due
        WHERE due.at IS NOT NULL;
    END IF;
    RETURN NULL;
END
$$;
ALTER FUNCTION notify_private.plan_deliveries() OWNER TO notify_definer;
COMMENT ON FUNCTION notify_private.plan_deliveries()
    IS 'writes the planned deliveries of new notifications and queues a dispatcher job for them, in the sender''s transaction';

CREATE OR REPLACE TRIGGER notifications_plan_deliveries AFTER INSERT ON notify.notifications
    REFERENCING NEW TABLE AS new_notifications
    FOR EACH STATEMENT EXECUTE FUNCTION notify_private.plan_deliveries();
COMMENT ON TRIGGER notifications_plan_deliveries ON notify.notifications IS 'plans the deliveries of the statement''s new notifications and queues a dispatcher job for them';

-- A test notification the user asks for, to see that each channel reaches them.

CREATE OR REPLACE FUNCTION notify.send_test(channel text DEFAULT 'all') RETURNS uuid
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = ''
AS $$
BEGIN
    IF notify.current_user_id() IS NULL THEN
        RAISE EXCEPTION 'send_test sends to the calling user: request.jwt.claims has no user sub'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF send_test.channel <> 'all' AND NOT send_test.channel = ANY (notify.channels()) THEN
        RAISE EXCEPTION 'channel must be all or one of %, got "%"', pg_catalog.array_to_string(notify.channels(), ', '),
            send_test.channel
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Critical: the user asked for it, so their own switches and digest do not hold it back; critical
    -- skips every other limit, so test sends have their own (a user cannot spend the provider's quota).
    PERFORM notify_private.take_token(notify.current_user_id(), 'test');
    RETURN notify.send(
        user_id => notify.current_user_id(), type => 'system', title => 'Test notification',
        body => 'notifyd can reach you here.', priority => 'critical',
        data => '{"test": true}'::jsonb,
        channels => CASE WHEN send_test.channel = 'all' THEN NULL ELSE ARRAY[send_test.channel] END);
END
$$;
ALTER FUNCTION notify.send_test(text) OWNER TO notify_definer;
COMMENT ON FUNCTION notify.send_test(text)
    IS 'sends the caller a test notification on one channel or all of them (rate_limit.test_sends_per_hour); returns its id';
