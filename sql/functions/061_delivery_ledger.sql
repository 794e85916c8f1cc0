-- The delivery ledger: the worker's side of it, the dead letters a DBA retries, what /metrics shows and
-- what a notification's deliveries say per channel.

-- The worker's side.

-- Its result gained the provider an earlier attempt is pinned to and the webhook endpoint or chat connection
-- (target): CREATE OR REPLACE cannot change that.
DROP FUNCTION IF EXISTS notify_private.claim_deliveries(uuid[]);
CREATE FUNCTION notify_private.claim_deliveries(delivery_ids uuid[])
    RETURNS TABLE (id uuid, channel text, attempts integer, notification jsonb, recipient jsonb,
                   subscription jsonb, vapid_key jsonb, unread_count bigint, provider text, target jsonb)
    LANGUAGE plpgsql
    SET search_path = ''
AS $$
BEGIN
    -- Deliveries whose reason to go has vanished since they were planned end here, unsent. An escalation step
    -- is cancelled by the read that saw it (notify_private.cancel_escalation); one claimed before that read by a
    -- worker that died is cancelled here, by its retry.
    UPDATE notify.notification_deliveries AS d
    SET status = CASE WHEN stale.cancelled THEN 'cancelled'
                      WHEN stale.suppression IS NOT NULL THEN 'suppressed' ELSE 'skipped' END,
        reason = coalesce(stale.reason, format('the address %s', stale.suppression)),
        sending_since = NULL, updated_at = notify.now()
    FROM (
        SELECT p.id,
               -- A retry's claim: the attempt its worker died in (sending_since set) may have reached the provider.
               CASE WHEN cancel.reason IS NOT NULL
                    THEN cancel.reason || CASE WHEN p.sending_since IS NOT NULL
                                               THEN '; an unfinished attempt before it may have reached the provider'
                                               ELSE '' END
                    WHEN n.expires_at <= notify.now() THEN 'expired before it could be delivered'
                    WHEN n.deleted_at IS NOT NULL THEN 'deleted before it could be delivered'
                    -- A push or chat message held back (quiet hours, send_at) is pointless once the user has read it.
                    WHEN p.channel IN ('push', 'chat') AND n.read_at IS NOT NULL THEN 'read before it could be delivered'
                    WHEN NOT s.is_active THEN 'the device was deactivated'
                    WHEN p.channel = 'sms' AND r.sms_opted_out_at IS NOT NULL THEN 'the number replied STOP'
                    WHEN p.channel = 'sms' AND r.phone IS NULL THEN 'no phone number'
                    WHEN p.channel = 'webhook' AND e.id IS NULL THEN 'the webhook endpoint was removed'
                    WHEN p.channel = 'webhook' AND NOT e.is_active THEN 'the webhook endpoint is disabled'
                    WHEN p.channel = 'chat' AND c.id IS NULL THEN 'the chat connection was removed'
                    WHEN p.channel = 'chat' AND NOT c.is_active THEN 'the chat connection was deactivated' END AS reason,
               CASE WHEN p.channel = 'email' THEN sup.reason END AS suppression,
               cancel.reason IS NOT NULL AS cancelled
        FROM notify.notification_deliveries AS p
        JOIN notify.notifications AS n ON n.id = p.notification_id AND n.created_at >= notify_private.created_from(p.notification_id) AND n.created_at < notify_private.created_before(p.notification_id)
        JOIN notify.recipients AS r ON r.user_id = p.user_id
        LEFT JOIN notify.push_subscriptions AS s ON s.id = p.subscription_id
        LEFT JOIN notify.webhook_endpoints AS e ON p.channel = 'webhook' AND e.id = p.target_id
        LEFT JOIN notify.chat_connections AS c ON p.channel = 'chat' AND c.id = p.target_id
        LEFT JOIN notify.email_suppressions AS sup ON sup.email = lower(r.email)
        CROSS JOIN LATERAL (SELECT notify_private.step_cancelled(p.unless, n.seen_at, n.read_at) AS reason) AS cancel
        WHERE p.id = ANY (claim_deliveries.delivery_ids) AND p.status = 'pending'
    ) AS stale
    -- Still pending once its lock is ours (a read may have cancelled it meanwhile).
    WHERE d.id = stale.id AND d.status = 'pending' AND (stale.reason IS NOT NULL OR stale.suppression IS NOT NULL);

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
               -- A template's push text, when it has one, is what push channels and SMS show.
               'id', n.id, 'type', n.type, 'priority', n.priority,
               'title', CASE WHEN c.channel IN ('push', 'sms') THEN coalesce(n.rendered #>> '{push,title}', n.title) ELSE n.title END,
               'body', CASE WHEN c.channel IN ('push', 'sms') THEN coalesce(n.rendered #>> '{push,body}', n.body) ELSE n.body END,
               'email', n.rendered -> 'email', 'data', n.data, 'group_key', n.group_key, 'group_count', n.group_count, 'seq', n.seq,
               'created_at', n.created_at,
               'expires_at', n.expires_at),
           pg_catalog.jsonb_build_object(
               'user_id', r.user_id, 'email', r.email, 'locale', r.locale, 'timezone', r.timezone, 'phone', r.phone),
           CASE WHEN s.id IS NOT NULL THEN pg_catalog.jsonb_build_object(
               'id', s.id, 'kind', s.kind, 'endpoint', s.endpoint, 'p256dh_key', s.p256dh_key,
               'auth_key', s.auth_key, 'fcm_token', s.fcm_token, 'device_info', s.device_info) END,
           CASE WHEN k.id IS NOT NULL THEN pg_catalog.jsonb_build_object(
               'id', k.id, 'public_key', k.public_key, 'private_key_encrypted', k.private_key_encrypted) END,
           -- The badge a push shows; an e-mail shows none, and counting costs an index scan per delivery.
           CASE WHEN c.channel = 'push' THEN
               (SELECT pg_catalog.count(*) FROM notify.inbox AS u
                WHERE u.user_id = c.user_id AND u.read_at IS NULL) ELSE 0 END,
           c.provider,
           -- The secrets and the chat URL encrypted: the worker decrypts them. The secret before a rotation
           -- signs too while the overlap lasts.
           CASE WHEN e.id IS NOT NULL THEN pg_catalog.jsonb_build_object(
                    'id', e.id, 'url', e.url, 'secret', e.secret_encrypted,
                    'previous_secret', CASE WHEN e.previous_secret_until > notify.now()
                                            THEN e.previous_secret_encrypted END)
                WHEN ch.id IS NOT NULL THEN pg_catalog.jsonb_build_object(
                    'id', ch.id, 'platform', ch.platform, 'url', ch.url_encrypted) END
    FROM claimed AS c
    JOIN notify.notifications AS n ON n.id = c.notification_id AND n.created_at >= notify_private.created_from(c.notification_id) AND n.created_at < notify_private.created_before(c.notification_id)
    JOIN notify.recipients AS r ON r.user_id = c.user_id
    LEFT JOIN notify.push_subscriptions AS s ON s.id = c.subscription_id
    LEFT JOIN notify.vapid_keys AS k ON k.id = s.vapid_key_id
    LEFT JOIN notify.webhook_endpoints AS e ON c.channel = 'webhook' AND e.id = c.target_id
    LEFT JOIN notify.chat_connections AS ch ON c.channel = 'chat' AND ch.id = c.target_id;
END
$$;
COMMENT ON FUNCTION notify_private.claim_deliveries(uuid[])
    IS 'starts an attempt on the still-pending deliveries of a job and returns what sending them needs';

-- The worker may not send notifications; this function, owned by notify_definer, sends just this one.
CREATE OR REPLACE FUNCTION notify_private.tell_endpoint_disabled(endpoint_ids uuid[]) RETURNS integer
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = ''
AS $$
DECLARE
    told integer;
BEGIN
    SELECT pg_catalog.count(notify.send(
               user_id => e.user_id, type => 'system', title => 'A webhook endpoint was disabled',
               body => format('%s: %s', e.url, e.deactivated_reason), priority => 'high', channels => ARRAY['in_app'],
               data => pg_catalog.jsonb_build_object('webhook_endpoint_id', e.id),
               idempotency_key => format('webhook-disabled:%s:%s', e.id, extract(epoch FROM e.failing_since))))
    INTO told
    FROM notify.webhook_endpoints AS e
    WHERE e.id = ANY (tell_endpoint_disabled.endpoint_ids) AND NOT e.is_active;
    RETURN told;
END
$$;
ALTER FUNCTION notify_private.tell_endpoint_disabled(uuid[]) OWNER TO notify_definer;
COMMENT ON FUNCTION notify_private.tell_endpoint_disabled(uuid[])
    IS 'tells the owners of these disabled webhook endpoints so, in-app (once per failing stretch); how many were told';

CREATE OR REPLACE FUNCTION notify_private.record_outcomes(outcomes jsonb)
    RETURNS TABLE (id uuid, status text, attempts integer)
    LANGUAGE plpgsql
    SET search_path = ''
AS $$
DECLARE
    max_attempts constant integer := notify.setting('delivery.max_attempts')::integer;
    strikes constant integer := notify.setting('push.failures_before_deactivation')::integer;
    disabled uuid[];
BEGIN
    -- outcomes: [{id, outcome: sent|gone|retry|failed|skipped, error, provider_message_id, provider}]; a retry's
    -- provider: the attempt's answer never came, so the provider may have the delivery (it is pinned there)
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

    -- Chat connections: the platform saying the webhook is gone (404/410) deactivates it, as for a device.
    UPDATE notify.chat_connections AS c
    SET is_active = false, deactivated_reason = 'the platform says the webhook is gone: ' || o.error
    FROM pg_catalog.jsonb_to_recordset(record_outcomes.outcomes) AS o(id uuid, outcome text, error text)
    JOIN notify.notification_deliveries AS d ON d.id = o.id
    WHERE d.channel = 'chat' AND c.id = d.target_id AND c.is_active AND o.outcome = 'gone';

    -- Webhook endpoints: a success ends a failing stretch; one failing longer than webhook.disable_after is
    -- disabled and its owner told in-app.
    WITH answers AS (
        SELECT d.target_id, pg_catalog.bool_or(o.outcome = 'sent') AS ok, pg_catalog.max(o.error) AS error
        FROM pg_catalog.jsonb_to_recordset(record_outcomes.outcomes) AS o(id uuid, outcome text, error text)
        JOIN notify.notification_deliveries AS d ON d.id = o.id
        WHERE d.channel = 'webhook' AND o.outcome IN ('sent', 'retry', 'failed', 'gone')
        GROUP BY d.target_id
    ), updated AS (
        UPDATE notify.webhook_endpoints AS e
        SET last_success_at = CASE WHEN a.ok THEN notify.now() ELSE e.last_success_at END,
            failing_since = CASE WHEN a.ok THEN NULL ELSE coalesce(e.failing_since, notify.now()) END,
            is_active = e.is_active AND (a.ok OR coalesce(e.failing_since, notify.now())
                                                 > notify.now() - (notify.setting('webhook.disable_after') #>> '{}')::interval),
            deactivated_reason = CASE WHEN e.is_active AND NOT a.ok AND coalesce(e.failing_since, notify.now())
                                           <= notify.now() - (notify.setting('webhook.disable_after') #>> '{}')::interval
                                      THEN format('every delivery failed since %s, the last: %s',
                                                  to_char(coalesce(e.failing_since, notify.now()) AT TIME ZONE 'UTC',
                                                          'YYYY-MM-DD HH24:MI "UTC"'), a.error)
                                      ELSE e.deactivated_reason END
        FROM answers AS a
        -- The row as it was: the notice goes once, when this update disables it.
        JOIN notify.webhook_endpoints AS before ON before.id = a.target_id
        WHERE e.id = a.target_id
        RETURNING e.id, before.is_active AND NOT e.is_active AS disabled_now
    )
    SELECT pg_catalog.array_agg(u.id) INTO disabled FROM updated AS u WHERE u.disabled_now;
    IF disabled IS NOT NULL THEN
        PERFORM notify_private.tell_endpoint_disabled(disabled);
    END IF;

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
                WHEN o.outcome = 'gone' AND d.channel = 'chat' THEN 'the chat webhook is gone'
                WHEN o.outcome = 'gone' THEN 'the device is gone'
                WHEN o.outcome = 'retry' AND NOT coalesce(s.is_active, true) THEN 'the device was deactivated'
                WHEN o.outcome = 'retry' AND d.attempts >= max_attempts
                    THEN format('gave up after %s attempts', d.attempts)
                WHEN o.outcome = 'failed' THEN 'the provider refused it'
            END,
            error_message = CASE WHEN o.outcome = 'sent' THEN NULL ELSE o.error END,
            provider_message_id = coalesce(o.provider_message_id, d.provider_message_id),
            -- A sent one names who took it; a retry names the provider only when that provider may have
            -- taken it (no answer came): the next attempt must go there again, with the same idempotency key.
            provider = coalesce(o.provider, d.provider),
            sending_since = NULL,
            sent_at = CASE WHEN o.outcome = 'sent' THEN notify.now() ELSE d.sent_at END,
            failed_at = CASE WHEN o.outcome IN ('sent', 'skipped') THEN d.failed_at ELSE notify.now() END,
            updated_at = notify.now()
        FROM pg_catalog.jsonb_to_recordset(record_outcomes.outcomes)
             AS o(id uuid, outcome text, error text, provider_message_id text, provider text)
        LEFT JOIN notify.notification_deliveries AS od ON od.id = o.id
        LEFT JOIN notify.push_subscriptions AS s ON s.id = od.subscription_id
        WHERE d.id = o.id AND d.status = 'pending'
        RETURNING d.id, d.status, d.attempts
    )
    -- No analytics row: the report reads a sent or failed delivery from this ledger (notify.delivery_events).
    SELECT f.id, f.status, f.attempts FROM finished AS f;
END
$$;
COMMENT ON FUNCTION notify_private.record_outcomes(jsonb)
    IS 'records what providers answered: sent, gone, retry, failed or skipped; device strikes, gone chat connections, failing webhook endpoints (the ledger is what analytics read)';

-- Dead letters: what a DBA reads and retries.

CREATE OR REPLACE VIEW notify.dead_letters WITH (security_invoker = true) AS
    SELECT d.id AS delivery_id, d.notification_id, d.user_id, d.channel, s.kind AS device_kind,
           d.subscription_id, n.type, n.priority, n.title, d.attempts, d.reason, d.error_message,
           d.failed_at, d.created_at, d.target_id
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
BEGIN
    IF NOT EXISTS (SELECT 1 FROM notify.notification_deliveries AS d
                   WHERE d.id = retry_delivery.delivery_id AND notify.in_admin_scope(d.user_id)) THEN
        RAISE EXCEPTION 'no delivery %', retry_delivery.delivery_id USING ERRCODE = 'no_data_found';
    END IF;
    RETURN notify_private.retry_delivery(retry_delivery.delivery_id);
END
$$;
ALTER FUNCTION notify.retry_delivery(uuid) OWNER TO notify_definer;
COMMENT ON FUNCTION notify.retry_delivery(uuid)
    IS 'sends a dead letter again with fresh attempts; returns the id of the dispatcher job that will hand it to its channel';

-- The one way a failed delivery goes again: a DBA's retry of a dead letter, an endpoint owner's replay.
CREATE OR REPLACE FUNCTION notify_private.retry_delivery(delivery_id uuid) RETURNS bigint
    LANGUAGE plpgsql
    SET search_path = ''
AS $$
DECLARE
    target record;
BEGIN
    SELECT d.id, d.status, coalesce(s.is_active, e.is_active, c.is_active) AS is_active,
           coalesce(s.deactivated_reason, e.deactivated_reason, c.deactivated_reason) AS deactivated_reason,
           d.channel, d.target_id IS NOT NULL AND e.id IS NULL AND c.id IS NULL AS target_removed
    INTO target
    FROM notify.notification_deliveries AS d
    LEFT JOIN notify.push_subscriptions AS s ON s.id = d.subscription_id
    LEFT JOIN notify.webhook_endpoints AS e ON d.channel = 'webhook' AND e.id = d.target_id
    LEFT JOIN notify.chat_connections AS c ON d.channel = 'chat' AND c.id = d.target_id
    WHERE d.id = retry_delivery.delivery_id
    FOR UPDATE OF d;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no delivery %', retry_delivery.delivery_id USING ERRCODE = 'no_data_found';
    ELSIF target.status <> 'failed' THEN
        RAISE EXCEPTION 'delivery % is %, not failed: only dead letters are retried', target.id, target.status
            USING ERRCODE = 'invalid_parameter_value';
    ELSIF target.target_removed THEN
        RAISE EXCEPTION 'delivery %''s % was removed', target.id,
                        CASE target.channel WHEN 'webhook' THEN 'webhook endpoint' ELSE 'chat connection' END
            USING ERRCODE = 'invalid_parameter_value';
    ELSIF target.is_active IS FALSE THEN
        RAISE EXCEPTION 'delivery %''s % is deactivated (%)', target.id,
                        CASE target.channel WHEN 'webhook' THEN 'webhook endpoint' WHEN 'chat' THEN 'chat connection'
                                            ELSE 'device' END, target.deactivated_reason
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = CASE target.channel WHEN 'webhook' THEN 'enable the endpoint first (notify.enable_webhook_endpoint_v1)'
                                             WHEN 'chat' THEN 'connect the chat channel again'
                                             ELSE 'the user subscribes again from that device' END;
    END IF;
    PERFORM notify_private.keep_worker_events(ARRAY[target.id]);
    UPDATE notify.notification_deliveries AS d
    SET status = 'pending', attempts = 0, reason = NULL, error_message = NULL, failed_at = NULL,
        scheduled_for = NULL, queued_at = NULL, updated_at = notify.now()
    WHERE d.id = target.id;
    PERFORM notify_private.queue_dispatch(NULL);
    -- The dispatcher job that will hand it to its channel: this transaction's, or one queued before.
    RETURN (SELECT j.id FROM procrastinate.procrastinate_jobs AS j
            WHERE j.queueing_lock IS NOT NULL AND j.status = 'todo' AND j.queue_name = 'dispatch'
              AND j.scheduled_at IS NULL
            ORDER BY j.id DESC LIMIT 1);
END
$$;
COMMENT ON FUNCTION notify_private.retry_delivery(uuid)
    IS 'puts a failed delivery back to pending with fresh attempts (its device or target must be active); the dispatcher job''s id';

-- Every channel decision of every notification: the delivery rows, and the channels a notification is not
-- sent on, which are kept in its decision record (notifications.decisions) instead of a delivery row each.
-- notification_created_at (NULL on delivery rows) lets a reader of one notification bound the partitions the
-- other two parts read (notify.delivery_status).

CREATE OR REPLACE VIEW notify.delivery_decisions WITH (security_invoker = true) AS
    SELECT d.id, d.notification_id, d.user_id, d.channel, d.subscription_id, d.status, d.reason, d.scheduled_for,
           d.attempts, d.repeats, d.error_message, d.provider_message_id, d.sent_at, d.delivered_at, d.opened_at,
           d.clicked_at, d.failed_at, d.created_at, d.updated_at, NULL::timestamptz AS notification_created_at,
           d.provider
    FROM notify.notification_deliveries AS d
    UNION ALL
    SELECT NULL, n.id, n.user_id, s.key, NULL, s.value ->> 'status', s.value ->> 'reason', NULL, 0, 0, NULL, NULL,
           NULL, NULL, NULL, NULL, NULL, n.created_at, n.created_at, n.created_at, NULL
    FROM notify.notifications AS n
    CROSS JOIN LATERAL pg_catalog.jsonb_each(n.decisions) AS s
    -- The record's other entries (held for a digest or quiet hours) describe a delivery row.
    WHERE n.decisions IS NOT NULL AND s.value ->> 'status' IN ('skipped', 'suppressed')
    UNION ALL
    -- An in-app delivery that went at once has no row until something is tracked of it
    -- (notify_private.in_app_delivery): sent with its notification. Every priority's channels include in-app.
    SELECT NULL, n.id, n.user_id, 'in_app', NULL, 'sent', NULL, NULL, 0, 0, NULL, NULL,
           n.created_at, NULL, NULL, NULL, NULL, n.created_at, n.created_at, n.created_at, NULL
    FROM notify.notifications AS n
    WHERE (n.channels IS NULL OR 'in_app' = ANY (n.channels))
      AND NOT EXISTS (SELECT 1 FROM notify.notification_deliveries AS d
                      WHERE d.notification_id = n.id AND d.channel = 'in_app');
COMMENT ON VIEW notify.delivery_decisions
    IS 'every channel decision: the deliveries, the channels a notification is not sent on, and in-app deliveries sent at once (id NULL: no delivery row)';

-- What /metrics shows and a DBA watches.

CREATE OR REPLACE VIEW notify.delivery_counts WITH (security_invoker = true) AS
    SELECT d.channel, coalesce(s.kind, d.channel) AS provider, d.status, pg_catalog.count(*) AS deliveries,
           pg_catalog.sum(d.repeats) AS repeats
    FROM notify.delivery_decisions AS d
    LEFT JOIN notify.push_subscriptions AS s ON s.id = d.subscription_id
    GROUP BY 1, 2, 3;
COMMENT ON VIEW notify.delivery_counts
    IS 'deliveries and skipped channels by channel, provider (webpush, fcm, email, in_app, push) and status, and repeats (possible duplicates)';

CREATE OR REPLACE VIEW notify.queue_depth WITH (security_invoker = true) AS
    SELECT j.queue_name AS queue, j.status::text AS status, pg_catalog.count(*) AS jobs,
           pg_catalog.min(coalesce(j.scheduled_at, e.at)) AS oldest
    FROM procrastinate.procrastinate_jobs AS j
    LEFT JOIN LATERAL (SELECT pg_catalog.min(ev.at) AS at FROM procrastinate.procrastinate_events AS ev
                       WHERE ev.job_id = j.id AND ev.type = 'deferred') AS e ON true
    WHERE j.status IN ('todo', 'doing')
    GROUP BY 1, 2;
COMMENT ON VIEW notify.queue_depth IS 'Procrastinate jobs waiting (todo) and running (doing) per queue, and the oldest';

-- What a notification's deliveries say, per channel: the status the center and history show.

-- Immutable SQL: inlined wherever it is used. In notify, as the readers that use it run as their callers.
CREATE OR REPLACE FUNCTION notify.delivery_rank(status text) RETURNS integer
    LANGUAGE sql IMMUTABLE
AS $$
    SELECT pg_catalog.array_position(ARRAY['delivered', 'sent', 'pending', 'held', 'failed', 'bounced', 'skipped',
                                           'suppressed', 'cancelled'], delivery_rank.status)
$$;
COMMENT ON FUNCTION notify.delivery_rank(text)
    IS 'how far along a delivery status is (1: delivered): of a channel''s deliveries, the one a summary shows';

-- PL/pgSQL, whose plans are kept for the session: a SQL function is planned at every call of the query that
-- calls it, over every partition of notifications (its parameter unknown to that plan).
CREATE OR REPLACE FUNCTION notify.delivery_decisions_of(notification_ids uuid[])
    RETURNS SETOF notify.delivery_decisions
    LANGUAGE plpgsql STABLE
    SET search_path = ''
AS $$
DECLARE
    -- The creation times the ids carry bound the partitions read (an id from before UUIDv7: all of them).
    made_from timestamptz := (SELECT pg_catalog.min(notify_private.created_from(i))
                              FROM pg_catalog.unnest(delivery_decisions_of.notification_ids) AS i);
    made_before timestamptz := (SELECT pg_catalog.max(notify_private.created_before(i))
                                FROM pg_catalog.unnest(delivery_decisions_of.notification_ids) AS i);
BEGIN
    -- A ledger row (it has an id) is found by its notification_id; the decisions read off the notification
    -- itself are bounded by the creation times. Written as "id IS NOT NULL OR bounds", each branch of the view
    -- reduces to a constant true or to the bare bounds, so the executor keeps only the partitions of those
    -- times; "notification_created_at IS NULL OR bounds" kept every partition.
    RETURN QUERY
    SELECT d.* FROM notify.delivery_decisions AS d
    WHERE d.notification_id = ANY (delivery_decisions_of.notification_ids)
      AND (d.id IS NOT NULL OR (d.notification_created_at >= made_from AND d.notification_created_at < made_before));
END
$$;
COMMENT ON FUNCTION notify.delivery_decisions_of(uuid[])
    IS 'the rows of notify.delivery_decisions of the given notifications, reading only the partitions their ids'' times name';

CREATE OR REPLACE FUNCTION notify.delivery_statuses(notification_ids uuid[])
    RETURNS TABLE (notification_id uuid, delivery_status jsonb)
    LANGUAGE sql STABLE
    SET search_path = ''
AS $$
    -- Push has one row per device: a channel shows its furthest-along delivery.
    SELECT best.notification_id, pg_catalog.jsonb_object_agg(best.channel, best.status)
    FROM (SELECT DISTINCT ON (d.notification_id, d.channel) d.notification_id, d.channel, d.status
          FROM notify.delivery_decisions_of(delivery_statuses.notification_ids) AS d
          ORDER BY d.notification_id, d.channel, notify.delivery_rank(d.status)) AS best
    GROUP BY best.notification_id
$$;
COMMENT ON FUNCTION notify.delivery_statuses(uuid[])
    IS 'the delivery status per channel of each of the given notifications the caller may see (one statement for a page of them); a notification nothing was decided for yet has no row';

CREATE OR REPLACE FUNCTION notify.delivery_status(notification_id uuid) RETURNS jsonb
    LANGUAGE sql STABLE
    SET search_path = ''
AS $$
    SELECT coalesce((SELECT s.delivery_status FROM notify.delivery_statuses(ARRAY[delivery_status.notification_id]) AS s),
                    '{}'::jsonb)
$$;
COMMENT ON FUNCTION notify.delivery_status(uuid)
    IS 'a notification''s delivery status per channel, as far as the caller may see its deliveries: {"push": "sent", ...}';
