-- The inbox states beyond read: seen (the badge), archived (the Archive view) and snoozed (hidden until
-- its time, then back as new).
--
-- Unseen is neither seen nor read (reading is seeing; a notification read before seen_at existed has none).
-- Seen costs one event, not one per notification: marking rows seen keeps their seq (the update trigger
-- leaves a change of seen_at alone), and the user's watermark in notify.inbox_marks moves instead; the
-- real-time hub reads that row by its changed_xid and sends one seen_updated event to the user's sessions.
-- Archive and snooze are changes of the row like read: a new seq, and the notification's event to every
-- session. A snooze wakes through the dispatcher, as a send_at release does: a pending in-app delivery due
-- at the snooze's end, whose job (notify_private.release_in_app) brings the notification back.

CREATE OR REPLACE FUNCTION notify_private.seen_watermark(user_id uuid) RETURNS bigint
    LANGUAGE sql STABLE
    SET search_path = ''
AS $$
    -- Just below the oldest unseen notification of the center; with none, the user's newest seq.
    SELECT coalesce(
        (SELECT pg_catalog.min(c.seq) - 1 FROM notify.center AS c
         WHERE c.user_id = seen_watermark.user_id AND c.seen_at IS NULL AND c.read_at IS NULL),
        (SELECT pg_catalog.max(n.seq) FROM notify.notifications AS n WHERE n.user_id = seen_watermark.user_id),
        0)
$$;
COMMENT ON FUNCTION notify_private.seen_watermark(uuid)
    IS 'the highest seq up to which every notification of the user''s center is seen';

CREATE OR REPLACE FUNCTION notify.mark_seen(ids uuid[] DEFAULT NULL) RETURNS integer
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = ''
AS $$
DECLARE
    me constant uuid := notify.current_user_id();
    marked integer;
BEGIN
    IF me IS NULL THEN
        RAISE EXCEPTION 'mark_seen marks the caller''s own notifications: no user in the claims'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF pg_catalog.array_position(mark_seen.ids, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'ids must not contain NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    -- By id: any visible notification of the caller's (archived ones too); without ids: the inbox proper.
    -- Ids of other users' notifications find nothing, as under their policies.
    WITH newly_seen AS (
        UPDATE notify.notifications AS n SET seen_at = notify.now()
        WHERE n.user_id = me AND n.seen_at IS NULL
          AND CASE WHEN mark_seen.ids IS NULL
                   THEN n.id IN (SELECT c.id FROM notify.center AS c
                                 WHERE c.user_id = me AND c.seen_at IS NULL AND c.read_at IS NULL)
                   ELSE n.id = ANY (mark_seen.ids)
                        AND n.id IN (SELECT i.id FROM notify.inbox AS i WHERE i.user_id = me AND i.id = ANY (mark_seen.ids))
              END
        RETURNING 1
    )
    SELECT pg_catalog.count(*)::integer INTO marked FROM newly_seen;
    IF marked > 0 THEN
        INSERT INTO notify.inbox_marks AS m (user_id, seen_seq, seen_at, changed_xid)
        VALUES (me, notify_private.seen_watermark(me), notify.now(), pg_catalog.pg_current_xact_id())
        -- Never backwards: whatever makes a notification unseen again (a snooze's end, an unarchive) gives it
        -- a new seq above the watermark, and a concurrent mark_seen may have read an older snapshot than ours.
        ON CONFLICT ON CONSTRAINT inbox_marks_pkey DO UPDATE
        SET seen_seq = greatest(m.seen_seq, excluded.seen_seq), seen_at = excluded.seen_at,
            changed_xid = excluded.changed_xid;
    END IF;
    RETURN marked;
END
$$;
ALTER FUNCTION notify.mark_seen(uuid[]) OWNER TO notify_definer;
COMMENT ON FUNCTION notify.mark_seen(uuid[])
    IS 'marks the caller''s notifications seen (the given ids, or with NULL everything the inbox shows) without a new seq each; moves the seen watermark (one seen_updated event); returns how many were unseen';

CREATE OR REPLACE FUNCTION notify.seen_state() RETURNS jsonb
    LANGUAGE sql STABLE
    SET search_path = ''
    -- A count over every partition of the user's rows passes jit_above_cost; compiling it cost ten times the count.
    SET jit = off
AS $$
    SELECT pg_catalog.jsonb_build_object(
        'seen_seq', coalesce((SELECT m.seen_seq FROM notify.inbox_marks AS m WHERE m.user_id = notify.current_user_id()), 0),
        'unseen_count', (SELECT pg_catalog.count(*) FROM notify.center AS c
                         WHERE c.user_id = notify.current_user_id() AND c.seen_at IS NULL AND c.read_at IS NULL))
$$;
COMMENT ON FUNCTION notify.seen_state() IS 'the caller''s badge: {"seen_seq": watermark, "unseen_count": n}';

-- One function for archive and unarchive: the same lookup, the same not-found error. The public functions run
-- as notify_definer (the caller has no use of notify_private) and name the caller's own rows explicitly.
CREATE OR REPLACE FUNCTION notify_private.set_archived(notification_id uuid, archived boolean) RETURNS timestamptz
    LANGUAGE plpgsql
    SET search_path = ''
AS $$
DECLARE
    found_id uuid;
    archived_at timestamptz;
BEGIN
    -- The update trigger stamps the clock's time on a new archive; archiving twice keeps the first time.
    UPDATE notify.notifications AS n
    SET archived_at = CASE WHEN set_archived.archived THEN coalesce(n.archived_at, notify.now()) END
    WHERE n.id = set_archived.notification_id AND n.user_id = notify.current_user_id() AND n.deleted_at IS NULL
    RETURNING n.id, n.archived_at INTO found_id, archived_at;
    IF found_id IS NULL THEN
        RAISE EXCEPTION 'no notification %', set_archived.notification_id USING ERRCODE = 'no_data_found';
    END IF;
    RETURN archived_at;
END
$$;
COMMENT ON FUNCTION notify_private.set_archived(uuid, boolean)
    IS 'archives (true) or unarchives one of the caller''s notifications; SQLSTATE P0002 if it is not theirs or deleted';

CREATE OR REPLACE FUNCTION notify.archive(notification_id uuid) RETURNS timestamptz
    LANGUAGE sql
    SECURITY DEFINER
    SET search_path = ''
AS $$
    SELECT notify_private.set_archived(archive.notification_id, true)
$$;
ALTER FUNCTION notify.archive(uuid) OWNER TO notify_definer;
COMMENT ON FUNCTION notify.archive(uuid)
    IS 'moves one of the caller''s notifications to the Archive view (kept in history and export); returns when; P0002 if not theirs';

CREATE OR REPLACE FUNCTION notify.unarchive(notification_id uuid) RETURNS void
    LANGUAGE sql
    SECURITY DEFINER
    SET search_path = ''
AS $$
    SELECT notify_private.set_archived(unarchive.notification_id, false)
$$;
ALTER FUNCTION notify.unarchive(uuid) OWNER TO notify_definer;
COMMENT ON FUNCTION notify.unarchive(uuid) IS 'brings one of the caller''s archived notifications back to the inbox; P0002 if not theirs';

CREATE OR REPLACE FUNCTION notify.snooze(notification_id uuid, until timestamptz) RETURNS timestamptz
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = ''
AS $$
DECLARE
    found_id uuid;
BEGIN
    IF snooze.until IS NULL THEN
        RAISE EXCEPTION 'a snooze needs a time to end' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    -- The update trigger refuses a time not in the future and schedules the wake-up.
    UPDATE notify.notifications AS n SET snoozed_until = snooze.until
    WHERE n.id = snooze.notification_id AND n.user_id = notify.current_user_id() AND n.deleted_at IS NULL
    RETURNING n.id INTO found_id;
    IF found_id IS NULL THEN
        RAISE EXCEPTION 'no notification %', snooze.notification_id USING ERRCODE = 'no_data_found';
    END IF;
    RETURN snooze.until;
END
$$;
ALTER FUNCTION notify.snooze(uuid, timestamptz) OWNER TO notify_definer;
COMMENT ON FUNCTION notify.snooze(uuid, timestamptz)
    IS 'hides one of the caller''s notifications until `until` (in the future: else SQLSTATE 22023), when it comes back as new; P0002 if not theirs';

CREATE OR REPLACE FUNCTION notify_private.schedule_wake() RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = ''
AS $$
BEGIN
    IF NEW.snoozed_until <= notify.now() THEN
        RAISE EXCEPTION 'a snooze must end in the future, got %', NEW.snoozed_until
            USING ERRCODE = 'invalid_parameter_value', COLUMN = 'snoozed_until';
    END IF;
    -- The notification's one in-app delivery (one per channel) is its wake-up: pending until the snooze ends,
    -- whatever it recorded before; a later snooze moves it. The dispatcher hands it to deliver_in_app then.
    INSERT INTO notify.notification_deliveries AS d
        (notification_id, user_id, channel, status, reason, scheduled_for)
    VALUES (NEW.id, NEW.user_id, 'in_app', 'pending',
            format('snoozed until %s', NEW.snoozed_until), NEW.snoozed_until)
    ON CONFLICT (notification_id, channel, subscription_id, target_id) DO UPDATE
    SET status = 'pending', reason = excluded.reason, scheduled_for = excluded.scheduled_for,
        queued_at = NULL, dispatched_by = NULL, sent_at = NULL, updated_at = notify.now();
    PERFORM notify_private.queue_dispatch(NEW.snoozed_until);
    RETURN NULL;
END
$$;
ALTER FUNCTION notify_private.schedule_wake() OWNER TO notify_definer;
COMMENT ON FUNCTION notify_private.schedule_wake()
    IS 'refuses a snooze that does not end in the future; makes the notification''s in-app delivery its wake-up at the snooze''s end';

CREATE OR REPLACE TRIGGER notifications_schedule_wake AFTER UPDATE OF snoozed_until ON notify.notifications
    FOR EACH ROW WHEN (NEW.snoozed_until IS NOT NULL AND NEW.snoozed_until IS DISTINCT FROM OLD.snoozed_until)
    EXECUTE FUNCTION notify_private.schedule_wake();
COMMENT ON TRIGGER notifications_schedule_wake ON notify.notifications
    IS 'makes a plain UPDATE of snoozed_until behave like notify.snooze: checked, and woken at its time';

CREATE OR REPLACE FUNCTION notify_private.wake_snoozed(notification_ids uuid[]) RETURNS integer
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = ''
AS $$
DECLARE
    woken notify.notifications[];
BEGIN
    -- Back as new: unseen, unread, shown, with a new seq (the update trigger), so every session gets it again.
    WITH back AS (
        UPDATE notify.notifications AS n
        SET snoozed_until = NULL, seen_at = NULL, read_at = NULL
        WHERE n.id = ANY (wake_snoozed.notification_ids) AND n.snoozed_until <= notify.now()
        RETURNING n.*
    )
    SELECT pg_catalog.array_agg(b) INTO woken FROM back AS b;
    IF woken IS NULL THEN
        RETURN 0;
    END IF;
    -- A push again where the user's preferences and quiet hours want one now (decided anew, as for a new
    -- notification); each device's push delivery is sent again. What the earlier push did stays in the
    -- analytics, as when a dead letter is retried, before its row is planned anew.
    PERFORM notify_private.keep_worker_events(ARRAY(
        SELECT d.id FROM notify.notification_deliveries AS d
        WHERE d.notification_id = ANY (wake_snoozed.notification_ids) AND d.channel = 'push'));
    WITH planned AS MATERIALIZED (
        SELECT w.id, w.user_id, w.seq, p.channel, p.subscription_id, p.status, p.reason, p.scheduled_for, p.token
        FROM pg_catalog.unnest(woken) AS w
        CROSS JOIN LATERAL notify_private.channel_decisions(w) AS c
        CROSS JOIN LATERAL notify_private.plan_notification(
            pg_catalog.jsonb_populate_record(w, pg_catalog.jsonb_build_object('decisions', c.decisions, 'held_until', NULL))) AS p
        WHERE p.channel = 'push'
    ), spent AS MATERIALIZED (
        -- Like any push: one token of the user's push bucket per notification however many devices; past
        -- the rate it waits for its token (a woken notification is never refused: its send was accepted).
        -- Its earlier push spent a token of its own, so it is not left out of the bucket's count.
        SELECT t.id, notify_private.take_token(t.user_id, 'push', refuse => false) AS token_at
        FROM (SELECT DISTINCT p.user_id, p.seq, p.id FROM planned AS p
              WHERE p.token = 'push' AND p.status = 'pending' ORDER BY p.user_id, p.seq) AS t
    )
    INSERT INTO notify.notification_deliveries AS d
        (notification_id, user_id, channel, subscription_id, status, reason, scheduled_for)
    SELECT p.id, p.user_id, p.channel, p.subscription_id, p.status,
           CASE WHEN w.waits THEN notify_private.token_wait_reason('push') ELSE p.reason END,
           CASE WHEN w.waits THEN s.token_at ELSE p.scheduled_for END
    FROM planned AS p
    LEFT JOIN spent AS s ON s.id = p.id AND p.status = 'pending'
    -- Its token comes later than now, and later than the end of its quiet hours: it waits for the token.
    CROSS JOIN LATERAL (
        SELECT coalesce(s.token_at > notify.now() AND NOT coalesce(p.scheduled_for >= s.token_at, false), false)
               AS waits
    ) AS w
    ON CONFLICT (notification_id, channel, subscription_id, target_id) DO UPDATE
    SET status = excluded.status, reason = excluded.reason, scheduled_for = excluded.scheduled_for, attempts = 0,
        queued_at = NULL, dispatched_by = NULL, sent_at = NULL, delivered_at = NULL, failed_at = NULL,
        error_message = NULL, updated_at = notify.now();
    IF FOUND THEN
        PERFORM notify_private.queue_dispatch(NULL);
    END IF;
    RETURN pg_catalog.cardinality(woken);
END
$$;
ALTER FUNCTION notify_private.wake_snoozed(uuid[]) OWNER TO notify_definer;
COMMENT ON FUNCTION notify_private.wake_snoozed(uuid[])
    IS 'brings snoozed notifications whose time has come back as new (unseen, unread, new seq) and plans their push again, spending the push rate limit like any push';
