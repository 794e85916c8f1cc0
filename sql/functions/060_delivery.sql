-- Delivery: which channels a notification goes out on, the jobs that carry it, and the ledger.

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
BEGIN
    RETURN (
        SELECT procrastinate.procrastinate_defer_jobs_v1(
            pg_catalog.array_agg(ROW(j.queue, j.task, coalesce(j.priority, 0), NULL, NULL, j.args, j.scheduled_at)
                                 ::procrastinate.procrastinate_job_to_defer_v1))
        FROM pg_catalog.jsonb_to_recordset(defer_jobs.jobs)
             AS j(queue text, task text, priority integer, args jsonb, scheduled_at timestamptz)
        HAVING pg_catalog.count(*) > 0);
END
$$;
ALTER FUNCTION notify_private.defer_jobs(jsonb) OWNER TO notify_definer;
COMMENT ON FUNCTION notify_private.defer_jobs(jsonb)
    IS 'defers Procrastinate jobs [{queue, task, priority, args, scheduled_at}] in the caller''s transaction';

CREATE OR REPLACE FUNCTION notify_private.delivery_jobs(delivery_ids uuid[]) RETURNS jsonb
    LANGUAGE plpgsql STABLE
    SET search_path = ''
    -- The plan for "any of these ids" fits every array; left to choose, PostgreSQL plans anew at each
    -- call (0.6 ms of a send's 2) because a plan for the array at hand looks a little cheaper.
    SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    -- One job per queue, priority and start time, each carrying at most delivery.job_size deliveries.
    RETURN (SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'queue', chunk.queue, 'task', 'deliver_' || chunk.queue, 'priority', chunk.priority,
               'scheduled_at', chunk.scheduled_at, 'args', pg_catalog.jsonb_build_object('delivery_ids', chunk.ids,
                   -- The request that made these deliveries, for the worker's log lines (NULL outside one).
                   'request_id', NULLIF(pg_catalog.current_setting('notifyd.request_id', true), '')))),
           '[]'::jsonb)
    FROM (
        SELECT q.queue, q.priority, q.scheduled_at, pg_catalog.array_agg(q.id ORDER BY q.id) AS ids
        FROM (
            SELECT d.id, d.scheduled_for AS scheduled_at,
                   CASE WHEN d.channel IN ('email', 'in_app') THEN d.channel
                        WHEN s.kind = 'fcm' THEN 'fcm'
                        ELSE 'push' END AS queue,
                   pg_catalog.array_position(ARRAY['low', 'normal', 'high', 'critical'], n.priority) AS priority,
                   pg_catalog.row_number() OVER (
                       PARTITION BY d.channel, s.kind, n.priority, d.scheduled_for ORDER BY d.id) - 1 AS position
            FROM notify.notification_deliveries AS d
            JOIN notify.notifications AS n ON n.id = d.notification_id
            LEFT JOIN notify.push_subscriptions AS s ON s.id = d.subscription_id
            WHERE d.id = ANY (delivery_jobs.delivery_ids) AND d.status = 'pending'
        ) AS q
        GROUP BY q.queue, q.priority, q.scheduled_at, q.position / notify.setting('delivery.job_size')::integer
    ) AS chunk);
END
$$;
COMMENT ON FUNCTION notify_private.delivery_jobs(uuid[])
    IS 'the Procrastinate jobs that carry these pending deliveries: queue push (Web Push), fcm, email or in_app (releases)';

-- Its result gained the locks: CREATE OR REPLACE cannot change a result type.
DROP FUNCTION IF EXISTS notify_private.effective_preferences(uuid, text);
-- No SET clause (names are qualified): PostgreSQL inlines it into the statement that plans a whole
-- INSERT's deliveries at once, instead of calling (and, being SQL, planning) it once per notification.
CREATE FUNCTION notify_private.effective_preferences(user_id uuid, type text)
    RETURNS TABLE (push_enabled boolean, email_enabled boolean, digest_frequency text,
                   push_locked boolean, email_locked boolean)
    LANGUAGE sql STABLE
    ROWS 1
AS $$
    -- Per switch, the most specific level that sets it: the user's row for the type, the user's
    -- global row, the org's row for the type, the org's global row, the defaults. A channel an org
    -- admin locked is the org's call.
    WITH levels AS (
        SELECT p.push_enabled, p.email_enabled, p.digest_frequency, false AS push_locked, false AS email_locked,
               CASE WHEN p.notification_type IS NULL THEN 2 ELSE 1 END AS level
        FROM notify.notification_preferences AS p
        WHERE p.user_id = effective_preferences.user_id
          AND (p.notification_type = effective_preferences.type OR p.notification_type IS NULL)
        UNION ALL
        SELECT o.push_enabled, o.email_enabled, o.digest_frequency, o.push_locked, o.email_locked,
               CASE WHEN o.notification_type IS NULL THEN 4 ELSE 3 END
        FROM notify.org_notification_preferences AS o
        JOIN notify.recipients AS r ON r.org_id = o.org_id
        WHERE r.user_id = effective_preferences.user_id
          AND (o.notification_type = effective_preferences.type OR o.notification_type IS NULL)
    ), locks AS (
        SELECT (SELECT coalesce(l.push_enabled, true) FROM levels AS l WHERE l.push_locked ORDER BY l.level LIMIT 1)
                   AS push,
               (SELECT coalesce(l.email_enabled, true) FROM levels AS l WHERE l.email_locked ORDER BY l.level LIMIT 1)
                   AS email
    )
    SELECT coalesce(locks.push, (SELECT l.push_enabled FROM levels AS l
                                 WHERE l.push_enabled IS NOT NULL ORDER BY l.level LIMIT 1), true),
           coalesce(locks.email, (SELECT l.email_enabled FROM levels AS l
                                  WHERE l.email_enabled IS NOT NULL ORDER BY l.level LIMIT 1), true),
           coalesce((SELECT l.digest_frequency FROM levels AS l
                     WHERE l.digest_frequency IS NOT NULL ORDER BY l.level LIMIT 1),
                    -- A subquery of its own: read once per statement, not once per user.
                    (SELECT notify.setting('digest.default_frequency') #>> '{}')),
           locks.push IS NOT NULL, locks.email IS NOT NULL
    FROM locks
$$;
COMMENT ON FUNCTION notify_private.effective_preferences(uuid, text)
    IS 'the switches in force for a user and type, each from the most specific level that sets it; org locks win (and are said)';

-- Its result gained a column (token): CREATE OR REPLACE cannot change a result type.
DROP FUNCTION IF EXISTS notify_private.plan_notification(notify.notifications);
-- SQL, STABLE and no SET clause, so that PostgreSQL inlines it: notify_private.plan_deliveries plans
-- every notification of an INSERT in one statement. Being STABLE it cannot spend rate-limit tokens:
-- it says which bucket a delivery spends from (token), and plans it as if the token were free now;
-- plan_deliveries spends the tokens and moves the deliveries that must wait for theirs.
-- Its body calls notify_private.quiet_hours_end, which 065_quiet_hours.sql creates after this file.
SET check_function_bodies = off;
CREATE FUNCTION notify_private.plan_notification(notification notify.notifications)
    RETURNS TABLE (channel text, subscription_id uuid, status text, reason text, scheduled_for timestamptz,
                   token text)
    LANGUAGE sql STABLE
    -- A row per channel (and per device): not the default estimate of 1000, which makes the planner
    -- think a bulk send's planning statement is huge.
    ROWS 3
AS $$
    SELECT c.channel, c.subscription_id, c.status, c.reason, c.scheduled_for, c.token
    FROM (SELECT (plan_notification.notification).*) AS n
    -- By priority: critical everywhere; high and normal in-app, push and e-mail (instant or digest);
    -- low in-app, e-mail by digest only. A sender's channels narrow that set.
    -- Critical is the user's safety (security alerts): their own switches do not stop it; an org lock does.
    CROSS JOIN LATERAL (
        SELECT coalesce(n.channels, CASE n.priority WHEN 'low' THEN ARRAY['in_app', 'email']
                                                    ELSE ARRAY['in_app', 'push', 'email'] END) AS wanted,
               n.priority = 'critical' AS critical,
               notify.now() AS now_at
    ) AS k
    CROSS JOIN LATERAL notify_private.effective_preferences(n.user_id, n.type) AS prefs
    LEFT JOIN LATERAL (
        SELECT r.email, r.timezone, sup.reason AS suppression
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
                    THEN notify_private.quiet_hours_end(n.user_id, n.type, greatest(n.send_at, k.now_at)) END
               AS quiet_until
        OFFSET 0  -- evaluated once, as above
    ) AS quiet
    CROSS JOIN LATERAL (
        SELECT CASE
                   WHEN NOT prefs.push_enabled AND (NOT k.critical OR prefs.push_locked)
                   THEN format('push is turned off for %s notifications', n.type)
                        || CASE WHEN prefs.push_locked THEN ' by the organization' ELSE '' END
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
                   WHEN k.critical THEN 'pending'
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
                   WHEN k.critical THEN NULL
                   WHEN prefs.digest_frequency = 'instant' AND n.priority <> 'low' THEN NULL
                   WHEN prefs.digest_frequency = 'instant' THEN 'low-priority e-mail goes out in digests only'
                   ELSE format('for the %s digest', prefs.digest_frequency)
               END AS email_reason
    ) AS decided
    CROSS JOIN LATERAL (
        -- In-app: listed at once; a held real-time event is released by a job when it comes due.
        SELECT 'in_app' AS channel, NULL::uuid AS subscription_id,
               CASE WHEN NOT (n.template_id IS NOT NULL AND n.rendered IS NULL) AND n.held_until IS NULL THEN 'sent'
                    ELSE 'pending' END AS status,
               CASE WHEN n.template_id IS NOT NULL AND n.rendered IS NULL THEN 'waiting for its template to be rendered'
                    WHEN n.held_until IS NULL THEN NULL
                    WHEN n.held_until = n.send_at THEN 'scheduled for send_at'
                    ELSE format('in-app rate limit (%s per hour): its real-time event waits for a token',
                                notify.setting('rate_limit.in_app_per_hour')) END AS reason,
               CASE WHEN n.template_id IS NOT NULL AND n.rendered IS NULL
                    THEN CASE WHEN n.send_at > k.now_at THEN n.send_at END
                    WHEN n.held_until IS NULL THEN NULL
                    WHEN n.held_until = n.send_at THEN n.send_at
                    ELSE n.held_until END AS scheduled_for,
               NULL AS token
        WHERE 'in_app' = ANY (k.wanted)
        UNION ALL
        SELECT 'push', NULL, 'skipped', decided.push_skipped, NULL, NULL
        WHERE 'push' = ANY (k.wanted) AND decided.push_skipped IS NOT NULL
        UNION ALL
        -- Every active device; one token per notification, however many devices (not for critical).
        SELECT 'push', s.id, 'pending',
               CASE WHEN quiet.quiet_until >= k.now_at
                    THEN format('held for quiet hours until %s %s',
                                to_char(quiet.quiet_until AT TIME ZONE recipient.timezone, 'YYYY-MM-DD HH24:MI'),
                                recipient.timezone) END,
               nullif(greatest(quiet.quiet_until, k.now_at), k.now_at),
               CASE WHEN NOT k.critical THEN 'push' END
        FROM notify.push_subscriptions AS s
        WHERE 'push' = ANY (k.wanted) AND decided.push_skipped IS NULL AND s.user_id = n.user_id AND s.is_active
        UNION ALL
        SELECT 'email', NULL, decided.email_status, decided.email_reason, NULL,
               CASE WHEN decided.email_status = 'pending' AND NOT k.critical THEN 'email' END
        WHERE 'email' = ANY (k.wanted)
    ) AS c
$$;
RESET check_function_bodies;
COMMENT ON FUNCTION notify_private.plan_notification(notify.notifications)
    IS 'the deliveries a new notification gets: channel, device, status, why, when (quiet hours), and the rate-limit bucket it spends from';

CREATE OR REPLACE FUNCTION notify_private.plan_deliveries() RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = ''
    -- Its statements keep the plan of their first call for the session: a bulk send's row count would
    -- leave every later single send on that connection JIT-compiling (~200 ms) a plan that runs in 1 ms.
    SET jit = off
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
               p.scheduled_for, p.token
        FROM new_notifications AS n
        CROSS JOIN LATERAL notify_private.plan_notification(n) AS p
    ), spent AS MATERIALIZED (
        -- A notification spends one token per bucket however many devices, push before e-mail, and a
        -- user's notifications in the order they were sent: past the rate, each waits its turn.
        SELECT t.id, t.token, notify_private.take_token(t.user_id, t.token) AS token_at
        FROM (SELECT DISTINCT d.user_id, d.seq, d.token, d.id FROM decided AS d WHERE d.token IS NOT NULL
              ORDER BY d.user_id, d.seq, d.token DESC) AS t
    ), planned AS (
        INSERT INTO notify.notification_deliveries AS d
            (notification_id, user_id, channel, subscription_id, status, reason, scheduled_for, sent_at)
        SELECT p.id, p.user_id, p.channel, p.subscription_id, p.status,
               CASE WHEN w.waits
                    THEN CASE p.token
                        WHEN 'push' THEN format('push rate limit (%s per hour): waits for a token',
                                                notify.setting('rate_limit.push_per_hour'))
                        ELSE format('e-mail rate limit (%s per day): waits for a token',
                                    notify.setting('rate_limit.email_per_day')) END
                    ELSE p.reason END,
               CASE WHEN p.status = 'pending'
                    THEN greatest(CASE WHEN w.waits THEN s.token_at ELSE p.scheduled_for END,
                                  CASE WHEN p.send_at > notify.now() THEN p.send_at END) END,
               CASE WHEN p.status = 'sent' THEN notify.now() END
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
        SELECT pg_catalog.array_agg(d.id) INTO pending
        FROM notify.notification_deliveries AS d
        WHERE d.id = ANY (pending) AND d.notification_id <> ALL (unrendered);
    END IF;
    IF pending IS NOT NULL THEN
        PERFORM notify_private.defer_jobs(notify_private.delivery_jobs(pending));
    END IF;
    RETURN NULL;
END
$$;
ALTER FUNCTION notify_private.plan_deliveries() OWNER TO notify_definer;
COMMENT ON FUNCTION notify_private.plan_deliveries()
    IS 'writes the planned deliveries of new notifications and defers their jobs, in the sender''s transaction';

CREATE OR REPLACE TRIGGER notifications_plan_deliveries AFTER INSERT ON notify.notifications
    REFERENCING NEW TABLE AS new_notifications
    FOR EACH STATEMENT EXECUTE FUNCTION notify_private.plan_deliveries();

-- The worker's side of the ledger.

CREATE OR REPLACE FUNCTION notify_private.claim_deliveries(delivery_ids uuid[])
    RETURNS TABLE (id uuid, channel text, attempts integer, notification jsonb, recipient jsonb,
                   subscription jsonb, vapid_key jsonb, unread_count bigint)
    LANGUAGE plpgsql
    SET search_path = ''
AS $$
BEGIN
    -- Deliveries whose reason to go has vanished since they were planned end here, unsent.
    UPDATE notify.notification_deliveries AS d
    SET status = CASE WHEN stale.suppression IS NOT NULL THEN 'suppressed' ELSE 'skipped' END,
        reason = coalesce(stale.reason, format('the address %s', stale.suppression)),
        sending_since = NULL, updated_at = notify.now()
    FROM (
        SELECT p.id,
               CASE WHEN n.expires_at <= notify.now() THEN 'expired before it could be delivered'
                    WHEN n.deleted_at IS NOT NULL THEN 'deleted before it could be delivered'
                    -- A push held back (quiet hours, send_at) is pointless once the user has read it.
                    WHEN p.channel = 'push' AND n.read_at IS NOT NULL THEN 'read before it could be delivered'
                    WHEN NOT s.is_active THEN 'the device was deactivated' END AS reason,
               CASE WHEN p.channel = 'email' THEN sup.reason END AS suppression
        FROM notify.notification_deliveries AS p
        JOIN notify.notifications AS n ON n.id = p.notification_id
        JOIN notify.recipients AS r ON r.user_id = p.user_id
        LEFT JOIN notify.push_subscriptions AS s ON s.id = p.subscription_id
        LEFT JOIN notify.email_suppressions AS sup ON sup.email = lower(r.email)
        WHERE p.id = ANY (claim_deliveries.delivery_ids) AND p.status = 'pending'
    ) AS stale
    WHERE d.id = stale.id AND (stale.reason IS NOT NULL OR stale.suppression IS NOT NULL);

    RETURN QUERY
    WITH claimed AS (
        UPDATE notify.notification_deliveries AS d
        SET attempts = d.attempts + 1,
            repeats = d.repeats + (d.sending_since IS NOT NULL)::integer,
            sending_since = notify.now(),
            updated_at = notify.now()
        WHERE d.id = ANY (claim_deliveries.delivery_ids) AND d.status = 'pending'
        RETURNING d.*
    )
    SELECT c.id, c.channel, c.attempts,
           pg_catalog.jsonb_build_object(
               -- A template's push text, when it has one, is what push channels show.
               'id', n.id, 'type', n.type, 'priority', n.priority,
               'title', CASE WHEN c.channel = 'push' THEN coalesce(n.rendered #>> '{push,title}', n.title) ELSE n.title END,
               'body', CASE WHEN c.channel = 'push' THEN coalesce(n.rendered #>> '{push,body}', n.body) ELSE n.body END,
               'email', n.rendered -> 'email', 'data', n.data, 'group_key', n.group_key, 'group_count', n.group_count, 'seq', n.seq,
               'created_at', n.created_at,
               'expires_at', n.expires_at),
           pg_catalog.jsonb_build_object(
               'user_id', r.user_id, 'email', r.email, 'locale', r.locale, 'timezone', r.timezone),
           CASE WHEN s.id IS NOT NULL THEN pg_catalog.jsonb_build_object(
               'id', s.id, 'kind', s.kind, 'endpoint', s.endpoint, 'p256dh_key', s.p256dh_key,
               'auth_key', s.auth_key, 'fcm_token', s.fcm_token, 'device_info', s.device_info) END,
           CASE WHEN k.id IS NOT NULL THEN pg_catalog.jsonb_build_object(
               'id', k.id, 'public_key', k.public_key, 'private_key_encrypted', k.private_key_encrypted) END,
           (SELECT pg_catalog.count(*) FROM notify.inbox AS u
            WHERE u.user_id = c.user_id AND u.read_at IS NULL)
    FROM claimed AS c
    JOIN notify.notifications AS n ON n.id = c.notification_id
    JOIN notify.recipients AS r ON r.user_id = c.user_id
    LEFT JOIN notify.push_subscriptions AS s ON s.id = c.subscription_id
    LEFT JOIN notify.vapid_keys AS k ON k.id = s.vapid_key_id;
END
$$;
COMMENT ON FUNCTION notify_private.claim_deliveries(uuid[])
    IS 'starts an attempt on the still-pending deliveries of a job and returns what sending them needs';

CREATE OR REPLACE FUNCTION notify_private.record_outcomes(outcomes jsonb)
    RETURNS TABLE (id uuid, status text, attempts integer)
    LANGUAGE plpgsql
    SET search_path = ''
AS $$
DECLARE
    max_attempts constant integer := notify.setting('delivery.max_attempts')::integer;
    strikes constant integer := notify.setting('push.failures_before_deactivation')::integer;
BEGIN
    -- outcomes: [{id, outcome: sent|gone|retry|failed|skipped, error, provider_message_id}]
    IF EXISTS (SELECT 1 FROM pg_catalog.jsonb_array_elements(record_outcomes.outcomes) AS o(item)
               WHERE NOT coalesce(o.item ->> 'outcome' = ANY (ARRAY['sent', 'gone', 'retry', 'failed', 'skipped']), false)) THEN
        RAISE EXCEPTION 'an outcome is one of sent, gone, retry, failed, skipped' USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- Devices: success resets the strikes; the provider saying "gone" or too many strikes deactivate.
    UPDATE notify.push_subscriptions AS s
    SET failure_count = CASE WHEN o.outcome = 'sent' THEN 0 ELSE s.failure_count + 1 END,
        last_used_at = CASE WHEN o.outcome = 'sent' THEN notify.now() ELSE s.last_used_at END,
        last_failure_at = CASE WHEN o.outcome = 'sent' THEN s.last_failure_at ELSE notify.now() END,
        is_active = s.is_active AND o.outcome <> 'gone'
                    AND (o.outcome = 'sent' OR s.failure_count + 1 < strikes),
        deactivated_reason = CASE
            WHEN NOT s.is_active THEN s.deactivated_reason
            WHEN o.outcome = 'gone' THEN 'the push service says the subscription is gone: ' || o.error
            WHEN o.outcome <> 'sent' AND s.failure_count + 1 >= strikes
                THEN format('%s consecutive failures, the last: %s', s.failure_count + 1, o.error)
        END
    FROM pg_catalog.jsonb_to_recordset(record_outcomes.outcomes) AS o(id uuid, outcome text, error text)
    JOIN notify.notification_deliveries AS d ON d.id = o.id
    WHERE s.id = d.subscription_id AND o.outcome IN ('sent', 'gone', 'retry', 'failed');

    RETURN QUERY
    WITH finished AS (
        UPDATE notify.notification_deliveries AS d
        SET status = CASE
                WHEN o.outcome = 'sent' THEN 'sent'
                WHEN o.outcome = 'skipped' THEN 'skipped'
                WHEN o.outcome = 'retry' AND d.attempts < max_attempts AND coalesce(s.is_active, true) THEN 'pending'
                ELSE 'failed' END,
            reason = CASE
                WHEN o.outcome = 'skipped' THEN o.error
                WHEN o.outcome = 'gone' THEN 'the device is gone'
                WHEN o.outcome = 'retry' AND NOT coalesce(s.is_active, true) THEN 'the device was deactivated'
                WHEN o.outcome = 'retry' AND d.attempts >= max_attempts
                    THEN format('gave up after %s attempts', d.attempts)
                WHEN o.outcome = 'failed' THEN 'the provider refused it'
            END,
            error_message = CASE WHEN o.outcome = 'sent' THEN NULL ELSE o.error END,
            provider_message_id = coalesce(o.provider_message_id, d.provider_message_id),
            sending_since = NULL,
            sent_at = CASE WHEN o.outcome = 'sent' THEN notify.now() ELSE d.sent_at END,
            failed_at = CASE WHEN o.outcome IN ('sent', 'skipped') THEN d.failed_at ELSE notify.now() END,
            updated_at = notify.now()
        FROM pg_catalog.jsonb_to_recordset(record_outcomes.outcomes)
             AS o(id uuid, outcome text, error text, provider_message_id text)
        LEFT JOIN notify.notification_deliveries AS od ON od.id = o.id
        LEFT JOIN notify.push_subscriptions AS s ON s.id = od.subscription_id
        WHERE d.id = o.id AND d.status = 'pending'
        RETURNING d.id, d.status, d.attempts, d.notification_id, d.user_id, d.channel, d.subscription_id
    ), recorded AS (
        INSERT INTO notify.notification_analytics
            (notification_id, notification_type, channel, event, user_id, org_id, device_id)
        SELECT f.notification_id, n.type, f.channel, f.status, f.user_id, r.org_id, f.subscription_id
        FROM finished AS f
        JOIN notify.notifications AS n ON n.id = f.notification_id
        JOIN notify.recipients AS r ON r.user_id = f.user_id
        WHERE f.status IN ('sent', 'failed')
    )
    SELECT f.id, f.status, f.attempts FROM finished AS f;
END
$$;
COMMENT ON FUNCTION notify_private.record_outcomes(jsonb)
    IS 'records what providers answered: sent, gone, retry, failed or skipped; device strikes; analytics';

-- Dead letters: what a DBA reads and retries.

CREATE OR REPLACE VIEW notify.dead_letters WITH (security_invoker = true) AS
    SELECT d.id AS delivery_id, d.notification_id, d.user_id, d.channel, s.kind AS device_kind,
           d.subscription_id, n.type, n.priority, n.title, d.attempts, d.reason, d.error_message,
           d.failed_at, d.created_at
    FROM notify.notification_deliveries AS d
    JOIN notify.notifications AS n ON n.id = d.notification_id
    LEFT JOIN notify.push_subscriptions AS s ON s.id = d.subscription_id
    WHERE d.status = 'failed';
COMMENT ON VIEW notify.dead_letters IS 'deliveries that failed for good; notify.retry_delivery sends one again';

CREATE OR REPLACE FUNCTION notify.retry_delivery(delivery_id uuid) RETURNS bigint
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = ''
AS $$
DECLARE
    target record;
BEGIN
    SELECT d.id, d.status, s.is_active, s.deactivated_reason INTO target
    FROM notify.notification_deliveries AS d
    LEFT JOIN notify.push_subscriptions AS s ON s.id = d.subscription_id
    WHERE d.id = retry_delivery.delivery_id AND notify.in_admin_scope(d.user_id)
    FOR UPDATE OF d;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no delivery %', retry_delivery.delivery_id USING ERRCODE = 'no_data_found';
    ELSIF target.status <> 'failed' THEN
        RAISE EXCEPTION 'delivery % is %, not failed: only dead letters are retried', target.id, target.status
            USING ERRCODE = 'invalid_parameter_value';
    ELSIF target.is_active IS FALSE THEN
        RAISE EXCEPTION 'delivery %''s device is deactivated (%)', target.id, target.deactivated_reason
            USING ERRCODE = 'invalid_parameter_value', HINT = 'the user subscribes again from that device';
    END IF;
    UPDATE notify.notification_deliveries AS d
    SET status = 'pending', attempts = 0, reason = NULL, error_message = NULL, failed_at = NULL,
        scheduled_for = NULL, updated_at = notify.now()
    WHERE d.id = target.id;
    RETURN (notify_private.defer_jobs(notify_private.delivery_jobs(ARRAY[target.id])))[1];
END
$$;
ALTER FUNCTION notify.retry_delivery(uuid) OWNER TO notify_definer;
COMMENT ON FUNCTION notify.retry_delivery(uuid)
    IS 'sends a dead letter again with fresh attempts; returns the Procrastinate job id';

-- What /metrics shows and a DBA watches.

CREATE OR REPLACE VIEW notify.delivery_counts WITH (security_invoker = true) AS
    SELECT d.channel, coalesce(s.kind, d.channel) AS provider, d.status, pg_catalog.count(*) AS deliveries,
           pg_catalog.sum(d.repeats) AS repeats
    FROM notify.notification_deliveries AS d
    LEFT JOIN notify.push_subscriptions AS s ON s.id = d.subscription_id
    GROUP BY 1, 2, 3;
COMMENT ON VIEW notify.delivery_counts
    IS 'deliveries by channel, provider (webpush, fcm, email, in_app) and status, and repeats (possible duplicates)';

CREATE OR REPLACE VIEW notify.queue_depth WITH (security_invoker = true) AS
    SELECT j.queue_name AS queue, j.status::text AS status, pg_catalog.count(*) AS jobs,
           pg_catalog.min(coalesce(j.scheduled_at, e.at)) AS oldest
    FROM procrastinate.procrastinate_jobs AS j
    LEFT JOIN LATERAL (SELECT pg_catalog.min(ev.at) AS at FROM procrastinate.procrastinate_events AS ev
                       WHERE ev.job_id = j.id AND ev.type = 'deferred') AS e ON true
    WHERE j.status IN ('todo', 'doing')
    GROUP BY 1, 2;
COMMENT ON VIEW notify.queue_depth IS 'Procrastinate jobs waiting (todo) and running (doing) per queue, and the oldest';

-- Asked for by users and providers, through notifyd.

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
    IF send_test.channel NOT IN ('all', 'in_app', 'push', 'email') THEN
        RAISE EXCEPTION 'channel must be all, in_app, push or email, got "%"', send_test.channel
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Critical: the user asked for it, so their own switches and digest do not hold it back.
    RETURN notify.send(
        user_id => notify.current_user_id(), type => 'system', title => 'Test notification',
        body => 'notifyd can reach you here.', priority => 'critical',
        data => '{"test": true}'::jsonb,
        channels => CASE WHEN send_test.channel = 'all' THEN NULL ELSE ARRAY[send_test.channel] END);
END
$$;
ALTER FUNCTION notify.send_test(text) OWNER TO notify_definer;
COMMENT ON FUNCTION notify.send_test(text)
    IS 'sends the caller a test notification on one channel or all of them; returns its id';

CREATE OR REPLACE FUNCTION notify.unsubscribe_email(user_id uuid, type text) RETURNS void
    LANGUAGE sql
    SECURITY DEFINER
    SET search_path = ''
AS $$
    -- A new row for the type sets only e-mail (the other switches stay inherited) and keeps the
    -- user's global quiet hours and digest times, which a type row replaces as a whole.
    INSERT INTO notify.notification_preferences AS p
        (user_id, notification_type, email_enabled, digest_time, digest_day,
         quiet_hours_start, quiet_hours_end, quiet_hours_days, quiet_hours_windows)
    SELECT unsubscribe_email.user_id, notify.require_type(unsubscribe_email.type), false,
           g.digest_time, g.digest_day, g.quiet_hours_start, g.quiet_hours_end,
           coalesce(g.quiet_hours_days, '[1,2,3,4,5]'), coalesce(g.quiet_hours_windows, '[]')
    FROM (SELECT 1) AS one
    LEFT JOIN notify.notification_preferences AS g
        ON g.user_id = unsubscribe_email.user_id AND g.notification_type IS NULL
    ON CONFLICT (user_id, notification_type) DO UPDATE SET email_enabled = false, updated_at = notify.now()
$$;
ALTER FUNCTION notify.unsubscribe_email(uuid, text) OWNER TO notify_definer;
COMMENT ON FUNCTION notify.unsubscribe_email(uuid, text)
    IS 'turns one type of e-mail off for a user (the unsubscribe link; notifyd checked its signed token)';

CREATE OR REPLACE FUNCTION notify.record_email_event(
    provider_message_id text, event text, event_id text DEFAULT NULL, detail jsonb DEFAULT '{}'
) RETURNS boolean
    LANGUAGE plpgsql
    SET search_path = ''
AS $$
DECLARE
    target record;
    hard constant boolean := record_email_event.event = 'complained'
        OR (record_email_event.event = 'bounced' AND coalesce(detail #>> '{bounce,type}', 'Permanent') = 'Permanent');
BEGIN
    IF record_email_event.event NOT IN ('delivered', 'bounced', 'complained', 'opened', 'clicked', 'failed') THEN
        RAISE EXCEPTION 'event must be delivered, bounced, complained, opened, clicked or failed, got "%"',
            record_email_event.event USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT d.id, d.notification_id, d.user_id, n.type, r.email, r.org_id INTO target
    FROM notify.notification_deliveries AS d
    JOIN notify.notifications AS n ON n.id = d.notification_id
    JOIN notify.recipients AS r ON r.user_id = d.user_id
    WHERE d.channel = 'email' AND d.provider_message_id = record_email_event.provider_message_id
    LIMIT 1;
    IF NOT FOUND THEN
        RETURN false;  -- not ours, or not recorded yet: the event id stays unused so a redelivery applies
    END IF;
    IF record_email_event.event_id IS NOT NULL THEN
        INSERT INTO notify.webhook_events (provider, event_id) VALUES ('resend', record_email_event.event_id)
        ON CONFLICT DO NOTHING;
        IF NOT FOUND THEN
            RETURN false;  -- a redelivery of an event already applied
        END IF;
    END IF;
    UPDATE notify.notification_deliveries AS d SET
        status = CASE record_email_event.event
            WHEN 'delivered' THEN CASE WHEN d.status = 'sent' THEN 'delivered' ELSE d.status END
            WHEN 'bounced' THEN 'bounced' WHEN 'failed' THEN 'failed' ELSE d.status END,
        delivered_at = CASE WHEN record_email_event.event = 'delivered' THEN notify.now() ELSE d.delivered_at END,
        opened_at = CASE WHEN record_email_event.event = 'opened' THEN coalesce(d.opened_at, notify.now()) ELSE d.opened_at END,
        clicked_at = CASE WHEN record_email_event.event = 'clicked' THEN coalesce(d.clicked_at, notify.now()) ELSE d.clicked_at END,
        failed_at = CASE WHEN record_email_event.event IN ('bounced', 'failed') THEN notify.now() ELSE d.failed_at END,
        error_message = CASE WHEN record_email_event.event IN ('bounced', 'failed', 'complained')
                             THEN left(record_email_event.detail::text, 1000) ELSE d.error_message END,
        updated_at = notify.now()
    -- A digest is one e-mail carrying many deliveries: the event applies to all of them.
    WHERE d.channel = 'email' AND d.provider_message_id = record_email_event.provider_message_id;
    INSERT INTO notify.notification_analytics
        (notification_id, notification_type, channel, event, user_id, org_id, metadata)
    SELECT d.notification_id, n.type, 'email', record_email_event.event, d.user_id, target.org_id,
           record_email_event.detail
    FROM notify.notification_deliveries AS d
    JOIN notify.notifications AS n ON n.id = d.notification_id
    WHERE d.channel = 'email' AND d.provider_message_id = record_email_event.provider_message_id;
    IF hard AND record_email_event.event IN ('bounced', 'complained') AND target.email IS NOT NULL THEN
        INSERT INTO notify.email_suppressions (email, reason, detail)
        VALUES (lower(target.email), record_email_event.event, record_email_event.detail)
        ON CONFLICT (email) DO NOTHING;
    END IF;
    RETURN true;
END
$$;
COMMENT ON FUNCTION notify.record_email_event(text, text, text, jsonb)
    IS 'applies a provider''s e-mail event to its deliveries (several for a digest) and analytics; hard bounces and complaints suppress the address';

-- Devices.

CREATE OR REPLACE FUNCTION notify.save_push_subscription(
    kind text, endpoint text, p256dh_key text, auth_key text, fcm_token text, token_hash bytea,
    vapid_key_id uuid, device_info jsonb
) RETURNS notify.push_subscriptions
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = ''
AS $$
#variable_conflict use_column
DECLARE
    saved notify.push_subscriptions;
BEGIN
    IF notify.current_user_id() IS NULL THEN
        RAISE EXCEPTION 'a push subscription belongs to the calling user: request.jwt.claims has no user sub'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    INSERT INTO notify.recipients (user_id) VALUES (notify.current_user_id()) ON CONFLICT DO NOTHING;
    -- The same device subscribing again is one row, owned by whoever subscribed last.
    INSERT INTO notify.push_subscriptions AS s
        (user_id, kind, endpoint, p256dh_key, auth_key, fcm_token, token_hash, vapid_key_id, device_info)
    VALUES (notify.current_user_id(), save_push_subscription.kind, save_push_subscription.endpoint,
            save_push_subscription.p256dh_key, save_push_subscription.auth_key, save_push_subscription.fcm_token,
            save_push_subscription.token_hash, save_push_subscription.vapid_key_id,
            coalesce(save_push_subscription.device_info, '{}'))
    ON CONFLICT (token_hash) WHERE token_hash IS NOT NULL DO UPDATE SET
        user_id = EXCLUDED.user_id, kind = EXCLUDED.kind, endpoint = EXCLUDED.endpoint,
        p256dh_key = EXCLUDED.p256dh_key, auth_key = EXCLUDED.auth_key, fcm_token = EXCLUDED.fcm_token,
        vapid_key_id = EXCLUDED.vapid_key_id, device_info = EXCLUDED.device_info,
        is_active = true, failure_count = 0, deactivated_reason = NULL, created_at = notify.now()
    RETURNING s.* INTO saved;
    RETURN saved;
END
$$;
ALTER FUNCTION notify.save_push_subscription(text, text, text, text, text, bytea, uuid, jsonb) OWNER TO notify_definer;
COMMENT ON FUNCTION notify.save_push_subscription(text, text, text, text, text, bytea, uuid, jsonb)
    IS 'saves the caller''s device (keys and token already encrypted by notifyd); the same device again moves to the caller';

CREATE OR REPLACE FUNCTION notify_private.move_push_subscription(
    id uuid, user_id uuid, old_token_hash bytea, endpoint text, p256dh_key text, auth_key text, token_hash bytea,
    vapid_key_id uuid
) RETURNS uuid
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = ''
AS $$
BEGIN
    -- Only the live Web Push device the subscription token names, still at the endpoint it names: a
    -- device the user removed, or that the push service gave up, stays removed.
    PERFORM 1 FROM notify.push_subscriptions AS s
    WHERE s.id = move_push_subscription.id AND s.user_id = move_push_subscription.user_id
      AND s.token_hash = move_push_subscription.old_token_hash AND s.kind = 'webpush' AND s.is_active
    FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    -- One row per endpoint, as when a device subscribes again: a row that has the new endpoint gives way.
    DELETE FROM notify.push_subscriptions AS s
    WHERE s.token_hash = move_push_subscription.token_hash AND s.id <> move_push_subscription.id;
    UPDATE notify.push_subscriptions AS s
    SET endpoint = move_push_subscription.endpoint, p256dh_key = move_push_subscription.p256dh_key,
        auth_key = move_push_subscription.auth_key, token_hash = move_push_subscription.token_hash,
        vapid_key_id = move_push_subscription.vapid_key_id, failure_count = 0
    WHERE s.id = move_push_subscription.id;
    RETURN move_push_subscription.id;
END
$$;
ALTER FUNCTION notify_private.move_push_subscription(uuid, uuid, bytea, text, text, text, bytea, uuid)
    OWNER TO notify_definer;
COMMENT ON FUNCTION notify_private.move_push_subscription(uuid, uuid, bytea, text, text, text, bytea, uuid)
    IS 'moves one live Web Push device (same id) to the new endpoint, keys and VAPID key its browser re-subscribed with; NULL when it is gone';

CREATE OR REPLACE FUNCTION notify.current_vapid_key() RETURNS notify.vapid_keys
    LANGUAGE sql STABLE
    SET search_path = ''
AS $$
    SELECT k.* FROM notify.vapid_keys AS k WHERE k.retired_at IS NULL ORDER BY k.created_at DESC, k.id LIMIT 1
$$;
COMMENT ON FUNCTION notify.current_vapid_key() IS 'the VAPID key new subscribers get: the newest unretired one';

CREATE OR REPLACE FUNCTION notify.add_vapid_key(public_key text, private_key_encrypted text) RETURNS uuid
    LANGUAGE sql
    SET search_path = ''
AS $$
    WITH added AS (
        INSERT INTO notify.vapid_keys AS k (public_key, private_key_encrypted)
        VALUES (add_vapid_key.public_key, add_vapid_key.private_key_encrypted)
        ON CONFLICT (public_key) DO NOTHING
        RETURNING k.id
    )
    SELECT id FROM added
    UNION ALL
    SELECT k.id FROM notify.vapid_keys AS k WHERE k.public_key = add_vapid_key.public_key
    LIMIT 1
$$;
COMMENT ON FUNCTION notify.add_vapid_key(text, text)
    IS 'adds a VAPID key pair (private key encrypted by notifyd); it becomes the current key; the same key again is a no-op';

CREATE OR REPLACE FUNCTION notify.vapid_rotation_due() RETURNS boolean
    LANGUAGE sql STABLE
    SET search_path = ''
AS $$
    SELECT coalesce((SELECT k.created_at FROM notify.current_vapid_key() AS k)
                    <= notify.now() - (notify.setting('vapid.rotate_after') #>> '{}')::interval, true)
$$;
COMMENT ON FUNCTION notify.vapid_rotation_due() IS 'whether the current VAPID key is older than vapid.rotate_after (or there is none)';

CREATE OR REPLACE FUNCTION notify.retire_vapid_keys() RETURNS integer
    LANGUAGE sql
    SET search_path = ''
AS $$
    WITH retired AS (
        UPDATE notify.vapid_keys AS k SET retired_at = notify.now()
        WHERE k.retired_at IS NULL
          AND k.id IS DISTINCT FROM (SELECT c.id FROM notify.current_vapid_key() AS c)
          AND NOT EXISTS (SELECT 1 FROM notify.push_subscriptions AS s WHERE s.vapid_key_id = k.id AND s.is_active)
        RETURNING 1
    )
    SELECT pg_catalog.count(*)::integer FROM retired
$$;
COMMENT ON FUNCTION notify.retire_vapid_keys() IS 'retires every VAPID key but the current one that no active subscription uses';
