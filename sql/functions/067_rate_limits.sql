-- Rate limits: token buckets that schedule excess for later instead of dropping it.

-- SQL, STABLE, no SET clause, and a table of one row: PostgreSQL inlines it where it is read in FROM (a
-- scalar SQL function with a subquery is not inlined, and would be planned again at every call), into
-- take_token and into a bulk send's one statement for all its recipients (notify_private.take_bulk_seqs).
CREATE OR REPLACE FUNCTION notify_private.far_below_limit(user_id uuid, last_seq bigint, far_below bigint,
                                                          since timestamptz)
    RETURNS TABLE (far boolean)
    LANGUAGE sql STABLE
    ROWS 1
AS $$
    -- Every send (and every change of a notification) takes the next of the user's seqs, and a
    -- notification's updated_at is when it took its seq. So if the user's notification holding the
    -- first seq at or after last_seq - far_below took it before `since`, at most far_below sends
    -- happened since. Not far below (false) if that notification is gone.
    SELECT coalesce(far_below_limit.last_seq <= far_below_limit.far_below OR (
        SELECT n.updated_at < far_below_limit.since FROM notify.notifications AS n
        WHERE n.user_id = far_below_limit.user_id AND n.seq >= far_below_limit.last_seq - far_below_limit.far_below
        ORDER BY n.seq LIMIT 1), false)
$$;
COMMENT ON FUNCTION notify_private.far_below_limit(uuid, bigint, bigint, timestamptz)
    IS 'whether a user whose last seq is last_seq sent at most far_below notifications since `since` (read from their seqs, nothing written)';

-- It gained `refuse`, then `notification_id`: drop the versions a previous migrate made, or calls turn ambiguous.
DROP FUNCTION IF EXISTS notify_private.take_token(uuid, text);
DROP FUNCTION IF EXISTS notify_private.take_token(uuid, text, boolean);
CREATE OR REPLACE FUNCTION notify_private.take_token(user_id uuid, channel text, refuse boolean DEFAULT true,
                                                    notification_id uuid DEFAULT NULL)
    RETURNS timestamptz
    LANGUAGE plpgsql
    SET search_path = ''
AS $$
DECLARE
    capacity constant double precision := notify.setting(CASE take_token.channel
        WHEN 'push' THEN 'rate_limit.push_per_hour'
        WHEN 'webhook' THEN 'rate_limit.webhook_per_hour'
        WHEN 'chat' THEN 'rate_limit.chat_per_hour'
        WHEN 'in_app' THEN 'rate_limit.in_app_per_hour'
        WHEN 'test' THEN 'rate_limit.test_sends_per_hour'
        WHEN 'sms' THEN 'rate_limit.sms_per_day'
        ELSE 'rate_limit.email_per_day' END)::double precision;
    per_second constant double precision :=
        capacity / CASE WHEN take_token.channel IN ('email', 'sms') THEN 86400 ELSE 3600 END;
    -- A test send the user asked for either goes now or is refused: it never waits in a queue.
    max_queued constant integer :=
        CASE WHEN take_token.channel = 'test' THEN 0 ELSE notify.setting('rate_limit.max_queued')::integer END;
    at constant timestamptz := notify.now();
    -- The time the bucket takes to refill from empty: an hour, or a day for e-mail and SMS.
    refill constant interval := make_interval(secs => capacity / per_second);
    -- Up to this many sends per refill time a bucket needs no row: half its capacity.
    far_below constant bigint := pg_catalog.floor(capacity / 2)::bigint;
    far boolean;
    spent_before bigint := 0;
    left_over double precision;
BEGIN
    -- A bucket is a row only where its limit can bite. Without one, the user's recent sends are read
    -- instead (far_below_limit): at most far_below sends in the last refill time leave the bucket at
    -- least half full, and nothing is written. A test send always has its row. Concurrent senders to one
    -- user hold the recipient's row lock (next_seq).
    IF take_token.channel <> 'test' AND NOT EXISTS (
        SELECT 1 FROM notify.rate_buckets AS b WHERE b.user_id = take_token.user_id AND b.channel = take_token.channel
    ) THEN
        SELECT f.far INTO far
        FROM notify.recipients AS r
        CROSS JOIN LATERAL notify_private.far_below_limit(r.user_id, r.last_seq, far_below, at - refill) AS f
        WHERE r.user_id = take_token.user_id;
        IF far THEN
            RETURN at;
        END IF;
        -- Near the limit: the bucket starts as if each of the user's notifications of the last refill time
        -- that spent from it (other than the one spending now) had taken its token just now. In-app: those
        -- not critical and shown (an unrendered template spends when rendered); push and e-mail: those with
        -- a delivery on the channel that went out or waits to, not in a digest.
        SELECT pg_catalog.count(*) INTO spent_before FROM notify.notifications AS n
        WHERE n.user_id = take_token.user_id AND n.created_at > at - refill
          AND n.id IS DISTINCT FROM take_token.notification_id AND n.priority <> 'critical'
          AND CASE take_token.channel
              WHEN 'in_app' THEN (n.channels IS NULL OR 'in_app' = ANY (n.channels))
                                 AND (n.template_id IS NULL OR n.rendered IS NOT NULL)
              ELSE EXISTS (SELECT 1 FROM notify.notification_deliveries AS d
                           WHERE d.notification_id = n.id AND d.channel = take_token.channel
                             AND d.status <> 'held' AND d.digest_id IS NULL)
          END;
    END IF;
    -- The bucket's row lock serializes concurrent senders to one user: no limit is ever exceeded.
    INSERT INTO notify.rate_buckets AS b (user_id, channel, tokens, refreshed_at)
    VALUES (take_token.user_id, take_token.channel, capacity - spent_before - 1, at)
    ON CONFLICT ON CONSTRAINT rate_buckets_pkey DO UPDATE SET
        tokens = least(capacity,
                       b.tokens + greatest(0, extract(epoch FROM at - b.refreshed_at)) * per_second) - 1,
        refreshed_at = greatest(b.refreshed_at, at)
    RETURNING b.tokens INTO left_over;
    IF left_over >= 0 THEN
        RETURN at;
    END IF;
    -- Refusing is for the sender's transaction; later (a template rendered after commit) it only waits.
    IF -left_over > max_queued AND take_token.refuse AND take_token.channel = 'test' THEN
        RAISE EXCEPTION 'rate limited: test notifications are limited to % per hour', capacity
            USING ERRCODE = 'NT429',
                  DETAIL = format('retry after %s seconds', ceil(-left_over / per_second)),
                  HINT = 'wait, or raise rate_limit.test_sends_per_hour in notify.settings';
    ELSIF -left_over > max_queued AND take_token.refuse THEN
        RAISE EXCEPTION 'rate limited: user % has % % deliveries waiting for the rate limit already',
            take_token.user_id, max_queued, take_token.channel
            USING ERRCODE = 'NT429',
                  DETAIL = format('retry after %s seconds', ceil((-left_over - max_queued) / per_second)),
                  HINT = 'wait, or raise rate_limit.max_queued or the rate_limit.* values in notify.settings';
    END IF;
    -- The token this delivery spent is the one that frees up -left_over/per_second from now.
    RETURN at + make_interval(secs => -left_over / per_second);
END
$$;
COMMENT ON FUNCTION notify_private.take_token(uuid, text, boolean, uuid)
    IS 'spends one of a user''s tokens on a channel (or test, for send_test) for a notification; returns when the delivery may go (now, or when its token frees up); writes the bucket only near its limit';

CREATE OR REPLACE FUNCTION notify_private.token_wait_reason(token text) RETURNS text
    LANGUAGE sql STABLE
    SET search_path = ''
AS $$
    SELECT CASE token_wait_reason.token
        WHEN 'push' THEN pg_catalog.format('push rate limit (%s per hour): waits for a token',
                                           notify.setting('rate_limit.push_per_hour'))
        WHEN 'sms' THEN pg_catalog.format('SMS rate limit (%s per day): waits for a token',
                                          notify.setting('rate_limit.sms_per_day'))
        WHEN 'webhook' THEN pg_catalog.format('webhook rate limit (%s per hour): waits for a token',
                                              notify.setting('rate_limit.webhook_per_hour'))
        WHEN 'chat' THEN pg_catalog.format('chat rate limit (%s per hour): waits for a token',
                                           notify.setting('rate_limit.chat_per_hour'))
        ELSE pg_catalog.format('e-mail rate limit (%s per day): waits for a token',
                               notify.setting('rate_limit.email_per_day')) END
$$;
COMMENT ON FUNCTION notify_private.token_wait_reason(text)
    IS 'the reason a delivery that waits for its rate-limit token records (push, SMS, webhook, chat, e-mail)';

CREATE OR REPLACE FUNCTION notify_private.global_token_times(wanted integer) RETURNS timestamptz[]
    LANGUAGE plpgsql
    SET search_path = ''
AS $$
DECLARE
    capacity constant double precision := notify.setting('rate_limit.global_per_minute')::double precision;
    per_second constant double precision := capacity / 60;
    at constant timestamptz := notify.now();
    before double precision;
BEGIN
    UPDATE notify.global_rate_bucket AS b
    SET tokens = least(capacity, b.tokens + greatest(0, extract(epoch FROM at - b.refreshed_at)) * per_second)
                 - global_token_times.wanted,
        refreshed_at = greatest(b.refreshed_at, at)
    RETURNING b.tokens + global_token_times.wanted INTO before;
    -- The k-th delivery (from 1) goes now while tokens last, then one every 1/per_second.
    RETURN ARRAY(SELECT at + make_interval(secs => greatest(0, k - before) / per_second)
                 FROM generate_series(1, global_token_times.wanted) AS k);
END
$$;
COMMENT ON FUNCTION notify_private.global_token_times(integer)
    IS 'spends tokens of the global bucket (bulk sends); returns when each of the wanted deliveries may go';

CREATE OR REPLACE FUNCTION notify.rate_limit_status() RETURNS jsonb
    LANGUAGE sql STABLE
    SECURITY DEFINER
    SET search_path = ''
AS $$
    -- What X-RateLimit-* headers say: the global bucket of bulk sends, refilled to now.
    SELECT pg_catalog.jsonb_build_object(
        'limit', s.capacity,
        'remaining', greatest(0, pg_catalog.floor(s.tokens)),
        'reset', pg_catalog.ceil(greatest(0, s.capacity - s.tokens) / (s.capacity / 60)))
    FROM (SELECT notify.setting('rate_limit.global_per_minute')::double precision AS capacity,
                 least(notify.setting('rate_limit.global_per_minute')::double precision,
                       b.tokens + greatest(0, extract(epoch FROM notify.now() - b.refreshed_at))
                                  * notify.setting('rate_limit.global_per_minute')::double precision / 60) AS tokens
          FROM notify.global_rate_bucket AS b) AS s
$$;
ALTER FUNCTION notify.rate_limit_status() OWNER TO notify_definer;
COMMENT ON FUNCTION notify.rate_limit_status()
    IS 'the global bulk-send bucket: {"limit", "remaining", "reset" (seconds until full)}';

CREATE OR REPLACE FUNCTION notify_private.release_in_app(delivery_ids uuid[]) RETURNS integer
    LANGUAGE plpgsql
    SET search_path = ''
AS $$
DECLARE
    due_ids uuid[];
    released integer;
BEGIN
    -- Only what is due: a snooze moved later since its job was queued waits for its new time.
    WITH due AS (
        UPDATE notify.notification_deliveries AS d
        SET status = 'sent', sent_at = notify.now(), updated_at = notify.now()
        WHERE d.id = ANY (release_in_app.delivery_ids) AND d.status = 'pending' AND d.channel = 'in_app'
          AND coalesce(d.scheduled_for, '-infinity') <= notify.now()
        RETURNING d.notification_id
    )
    SELECT pg_catalog.array_agg(due.notification_id) INTO due_ids FROM due;
    -- The held real-time event goes now: a new seq (the update trigger) wakes the WebSocket path.
    UPDATE notify.notifications AS n SET held_until = NULL
    WHERE n.id = ANY (due_ids) AND n.held_until IS NOT NULL;
    GET DIAGNOSTICS released = ROW_COUNT;
    -- A snooze that ended: the notification comes back as new.
    RETURN released + notify_private.wake_snoozed(due_ids);
END
$$;
COMMENT ON FUNCTION notify_private.release_in_app(uuid[])
    IS 'releases held in-app notifications (rate limit or send_at come due: their real-time event goes out) and wakes snoozed ones whose time came';
