-- Triggers: what makes a plain INSERT behave exactly like notify.send.

CREATE OR REPLACE FUNCTION notify_private.check_setting() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = ''
AS $$
BEGIN
    BEGIN
        CASE NEW.kind
            WHEN 'integer' THEN PERFORM (NEW.value)::integer;
            WHEN 'boolean' THEN PERFORM (NEW.value)::boolean;
            WHEN 'interval' THEN PERFORM (NEW.value #>> '{}')::interval;
            WHEN 'time' THEN PERFORM (NEW.value #>> '{}')::time;
            WHEN 'text' THEN
                IF jsonb_typeof(NEW.value) <> 'string' THEN
                    RAISE EXCEPTION USING ERRCODE = 'invalid_text_representation';
                END IF;
        END CASE;
    EXCEPTION WHEN data_exception THEN
        RAISE EXCEPTION 'setting "%" must be a JSON % value, got %', NEW.key, NEW.kind, NEW.value
            USING ERRCODE = 'invalid_parameter_value';
    END;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION notify_private.check_setting() IS 'refuses a setting value that its kind cannot read';

CREATE OR REPLACE TRIGGER settings_check BEFORE INSERT OR UPDATE ON notify.settings
    FOR EACH ROW EXECUTE FUNCTION notify_private.check_setting();
COMMENT ON TRIGGER settings_check ON notify.settings IS 'refuses a setting value its kind cannot read, on the way in';

CREATE OR REPLACE FUNCTION notify_private.prepare_recipient() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = ''
AS $$
BEGIN
    NEW.locale := replace(NEW.locale, '_', '-');
    NEW.email := nullif(btrim(NEW.email), '');
    -- pg_timezone_names reads the zone files: look only when the zone changes.
    IF NEW.timezone <> 'UTC'
       AND (TG_OP = 'INSERT' OR NEW.timezone IS DISTINCT FROM OLD.timezone)
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_timezone_names AS z WHERE z.name = NEW.timezone) THEN
        RAISE EXCEPTION 'unknown time zone "%"', NEW.timezone
            USING ERRCODE = 'invalid_parameter_value', COLUMN = 'timezone', HINT = 'use an IANA name such as Europe/Berlin';
    END IF;
    IF TG_OP = 'UPDATE' THEN
        NEW.updated_at := notify.now();
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION notify_private.prepare_recipient() IS 'normalizes a recipient and refuses an unknown time zone';

-- Not on every UPDATE: each notification bumps its recipient's last_seq (next_seq), and running this
-- trigger on that would double the cost of taking a seq. updated_at is when the profile changed.
CREATE OR REPLACE TRIGGER recipients_prepare BEFORE INSERT OR UPDATE OF email, locale, timezone, org_id
    ON notify.recipients
    FOR EACH ROW EXECUTE FUNCTION notify_private.prepare_recipient();
COMMENT ON TRIGGER recipients_prepare ON notify.recipients IS 'normalizes a new or changed recipient and refuses an unknown time zone';

-- plpgsql, not sql, here and in the other functions each send calls: PostgreSQL 15 parses and plans
-- the body of a SQL function that it cannot inline at every call; plpgsql keeps its plans for the session.
CREATE OR REPLACE FUNCTION notify_private.next_seq(user_id uuid) RETURNS bigint
    LANGUAGE plpgsql
    SET search_path = ''
AS $$
DECLARE
    next_value bigint;
BEGIN
    -- Taking the recipient's row lock here is what makes seq follow commit order per user.
    -- An UPDATE first: the recipient almost always exists, and an upsert costs half as much again.
    UPDATE notify.recipients AS r SET last_seq = r.last_seq + 1
    WHERE r.user_id = next_seq.user_id
    RETURNING r.last_seq INTO next_value;
    IF NOT FOUND THEN
        -- The upsert, not a plain INSERT: a concurrent sender may create the recipient first.
        INSERT INTO notify.recipients AS r (user_id, last_seq) VALUES (next_seq.user_id, 1)
        ON CONFLICT ON CONSTRAINT recipients_pkey DO UPDATE SET last_seq = r.last_seq + 1
        RETURNING r.last_seq INTO next_value;
    END IF;
    RETURN next_value;
END
$$;
COMMENT ON FUNCTION notify_private.next_seq(uuid) IS 'the user''s next seq, under the recipient''s row lock; creates a bare recipient';

-- A bulk send's seqs for all its recipients in one statement (one UPDATE per notification made the insert
-- trigger a third of a send_bulk's time), and their in-app tokens with them. The row locks are held to
-- commit, as next_seq holds them: seq still follows commit order per user.
-- And how each channel goes, decided for all of them in that statement (channel_decisions inlined).
CREATE OR REPLACE FUNCTION notify_private.take_bulk_seqs(user_ids uuid[], spends_in_app boolean, type text,
                                                        priority text, channels text[], send_at timestamptz)
    RETURNS TABLE (user_id uuid, seq bigint, in_app_at timestamptz, decisions jsonb)
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = ''
AS $$
#variable_conflict use_column
DECLARE
    capacity constant double precision := notify.setting('rate_limit.in_app_per_hour')::double precision;
    -- As take_token reads an in-app bucket: refilled in an hour, no row while at most half of it is spent.
    far_below constant bigint := pg_catalog.floor(capacity / 2)::bigint;
    at constant timestamptz := notify.now();
BEGIN
    -- Bare recipients for users not seen before (as next_seq makes them), in user order as below.
    INSERT INTO notify.recipients AS r (user_id)
    SELECT u.id FROM pg_catalog.unnest(take_bulk_seqs.user_ids) AS u(id)
    WHERE NOT EXISTS (SELECT 1 FROM notify.recipients AS e WHERE e.user_id = u.id)
    ORDER BY u.id
    ON CONFLICT ON CONSTRAINT recipients_pkey DO NOTHING;
    -- Locked in user order (the sort runs below the lock), so that concurrent bulk sends do not deadlock.
    RETURN QUERY
    WITH locked AS (
        SELECT r.user_id FROM notify.recipients AS r WHERE r.user_id = ANY (take_bulk_seqs.user_ids)
        ORDER BY r.user_id
        FOR UPDATE
    ), bumped AS (
        UPDATE notify.recipients AS r SET last_seq = r.last_seq + 1
        FROM locked WHERE r.user_id = locked.user_id
        RETURNING r.user_id, r.last_seq
    )
    -- The in-app token as take_token spends it, read for all at once: only a user near the limit (or
    -- with a bucket) has take_token called, and may wait for it.
    SELECT b.user_id, b.last_seq,
           CASE WHEN NOT take_bulk_seqs.spends_in_app THEN NULL
                WHEN NOT EXISTS (SELECT 1 FROM notify.rate_buckets AS k WHERE k.user_id = b.user_id AND k.channel = 'in_app')
                     AND f.far
                THEN NULL
                ELSE nullif(notify_private.take_token(b.user_id, 'in_app'), at)
           END,
           c.decisions
    FROM bumped AS b
    CROSS JOIN LATERAL notify_private.far_below_limit(b.user_id, b.last_seq, far_below, at - interval '1 hour') AS f
    -- The notification as the insert trigger will see it, as far as its channels depend on it.
    CROSS JOIN LATERAL (
        SELECT pg_catalog.jsonb_populate_record(NULL::notify.notifications, pg_catalog.jsonb_build_object(
                   'user_id', b.user_id, 'type', take_bulk_seqs.type,
                   'priority', coalesce(take_bulk_seqs.priority, 'normal'), 'channels', take_bulk_seqs.channels,
                   'send_at', take_bulk_seqs.send_at)) AS notification
        OFFSET 0  -- built once per recipient
    ) AS newcomer
    CROSS JOIN LATERAL notify_private.channel_decisions(newcomer.notification) AS c;
END
$$;
ALTER FUNCTION notify_private.take_bulk_seqs(uuid[], boolean, text, text, text[], timestamptz) OWNER TO notify_definer;
COMMENT ON FUNCTION notify_private.take_bulk_seqs(uuid[], boolean, text, text, text[], timestamptz)
    IS 'the next seq of each of a bulk send''s recipients, under their row locks (creates bare recipients); if it spends them, when its in-app token lets each notification''s real-time event go (NULL: now); its decision record (channel_decisions)';

CREATE OR REPLACE FUNCTION notify_private.fold_into_group(newcomer notify.notifications) RETURNS uuid
    LANGUAGE plpgsql
    SET search_path = ''
AS $$
DECLARE
    n notify.notifications := fold_into_group.newcomer;
    now_at constant timestamptz := notify.now();
    fold_window constant interval := (notify.setting('aggregation.window') #>> '{}')::interval;
    group_id uuid;
    folded_count integer;
BEGIN
    -- A fold plans no deliveries of its own, so only a newcomer that would be planned like its group
    -- folds: same priority and channels. Critical always reaches the user on its own; a reminder
    -- scheduled for later is its own notification; an invalid newcomer goes on to fail its INSERT.
    IF n.group_key IS NULL OR n.priority = 'critical' OR n.send_at > now_at
       OR (n.title = '' AND n.template_id IS NULL) THEN
        RETURN NULL;
    END IF;
    -- The window runs from the group's first notification: a fold keeps created_at.
    -- SKIP LOCKED: whoever holds the group's row (a reader marking it read) waits next for the
    -- recipient's lock, which this transaction holds; waiting here would deadlock. A group being
    -- changed right now is passed over, and the newcomer starts a new one.
    SELECT g.id INTO group_id
    FROM notify.notifications AS g
    WHERE g.user_id = n.user_id AND g.type = n.type AND g.group_key = n.group_key
      AND g.created_at > now_at - fold_window
      AND g.read_at IS NULL AND g.deleted_at IS NULL
      AND g.priority = n.priority AND g.channels IS NOT DISTINCT FROM n.channels
      AND (g.send_at IS NULL OR g.send_at <= g.created_at)
      AND (g.expires_at IS NULL OR g.expires_at > now_at)
    ORDER BY g.created_at DESC
    LIMIT 1
    FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    -- The group shows its newest notification; data.group_title, if given, titles it with the count.
    -- The UPDATE gives the group a new seq, so sessions receive it again.
    UPDATE notify.notifications AS g
    SET group_count = g.group_count + 1,
        title = coalesce(left(replace(n.data ->> 'group_title', '{count}', (g.group_count + 1)::text), 255), n.title),
        body = n.body, data = n.data, template_id = n.template_id, template_vars = n.template_vars,
        expires_at = n.expires_at
    WHERE g.id = group_id
    RETURNING g.group_count INTO folded_count;
    INSERT INTO notify.notification_folds
        (notification_id, user_id, group_count, title, idempotency_key, request_digest, batch_id, folded_at)
    VALUES (group_id, n.user_id, folded_count, n.title, n.idempotency_key, n.request_digest, n.batch_id, now_at);
    RETURN group_id;
END
$$;
COMMENT ON FUNCTION notify_private.fold_into_group(notify.notifications)
    IS 'folds a new notification into its open group (same user, type, group_key, priority, channels; unread; within aggregation.window of the first); returns the group''s id, NULL if none';

CREATE OR REPLACE FUNCTION notify_private.prepare_new_notification() RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = ''
    -- Its statements (and those of the functions it calls) find rows by key: see notify.send.
    SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    -- NULL when absent, JSON null, or data is no object (which its own constraint refuses).
    group_title constant jsonb := nullif(NEW.data -> 'group_title', 'null'::jsonb);
    supplied jsonb;
    first_request bytea;
    -- A bulk send (notify.send_bulk) took the seqs of its rows, and their in-app tokens if it says so,
    -- for all of them at once (take_bulk_seqs) and names its batch in notify.bulk_batch meanwhile.
    bulk text;
    seq_taken boolean := false;
    token_taken boolean := false;
BEGIN
    IF NEW.batch_id IS NOT NULL AND NEW.seq IS NOT NULL THEN
        bulk := pg_catalog.current_setting('notify.bulk_batch', true);
        -- Anyone can set the setting: a seq is taken as given only if it is the recipient's newest and this
        -- transaction holds the recipient's lock (take_bulk_seqs took both; another transaction's lock skips
        -- the row), so a forged seq can neither claim a later one nor jump a concurrent send; anything else
        -- goes the single-send way below. The lock mode is the one take_bulk_seqs' UPDATE holds: no new lock.
        seq_taken := pg_catalog.split_part(bulk, ' ', 1) = NEW.batch_id::text
                     AND EXISTS (SELECT 1 FROM notify.recipients AS r
                                 WHERE r.user_id = NEW.user_id AND r.last_seq = NEW.seq
                                 FOR NO KEY UPDATE SKIP LOCKED);
        token_taken := seq_taken AND bulk = NEW.batch_id::text || ' in_app';
    END IF;
    IF NEW.user_id IS NULL THEN
        RAISE EXCEPTION 'a notification needs a user_id' USING ERRCODE = 'not_null_violation', COLUMN = 'user_id';
    END IF;
    IF NOT seq_taken THEN
        PERFORM notify.require_type(NEW.type);  -- send_bulk checked it once
    END IF;
    IF group_title IS NOT NULL AND (jsonb_typeof(group_title) <> 'string'
                                    OR length(group_title #>> '{}') NOT BETWEEN 1 AND 255) THEN
        RAISE EXCEPTION 'data.group_title must be a string of 1 to 255 characters, got %', group_title
            USING ERRCODE = 'invalid_parameter_value', COLUMN = 'data', HINT = 'for example "{count} tickets assigned"';
    END IF;
    IF NOT seq_taken THEN
        NEW.seq := notify_private.next_seq(NEW.user_id);
    END IF;
    -- After the lock: a concurrent first use of the key has committed by now and is visible,
    -- whether it made a notification or was folded into one.
    IF NEW.idempotency_key IS NOT NULL THEN
        SELECT k.request_digest INTO first_request
        FROM (SELECT n.request_digest FROM notify_private.notification_keys AS k
              JOIN notify.notifications AS n ON n.id = k.notification_id AND n.created_at = k.created_at
              WHERE k.user_id = NEW.user_id AND k.idempotency_key = NEW.idempotency_key
              UNION ALL
              SELECT f.request_digest FROM notify.notification_folds AS f
              WHERE f.user_id = NEW.user_id AND f.idempotency_key = NEW.idempotency_key) AS k
        LIMIT 1;
        IF FOUND THEN
            PERFORM notify.require_same_request(first_request, NEW.request_digest);
            RETURN NULL;
        END IF;
    END IF;
    NEW.title := btrim(coalesce(NEW.title, ''));
    NEW.body := coalesce(NEW.body, '');
    NEW.data := coalesce(NEW.data, '{}');
    NEW.template_vars := coalesce(NEW.template_vars, '{}');
    NEW.priority := coalesce(NEW.priority, 'normal');
    IF NEW.template_id IS NOT NULL THEN
        PERFORM notify_private.require_template(NEW.template_id);
        supplied := notify_private.supplied_rendering();
        NEW.rendered := coalesce(NEW.rendered, supplied -> 'rendered');
        NEW.sealed := coalesce(NEW.sealed, supplied ->> 'sealed');
    END IF;
    -- Also after the lock: the group a concurrent sender just started or grew is visible.
    -- A template notification never folds: a group shows one text, and a rendering is per notification.
    IF NEW.template_id IS NULL AND NEW.group_key IS NOT NULL AND notify_private.fold_into_group(NEW) IS NOT NULL THEN
        RETURN NULL;  -- no row of its own: a plain INSERT reports 0 rows, notify.send the group's id
    END IF;
    NEW.created_at := notify.now();
    NEW.updated_at := NEW.created_at;
    -- The id carries created_at's millisecond, so that a lookup by id reaches one partition: the default id
    -- (the clock of this moment) or a supplied UUIDv7 of another millisecond is made again. A supplied id of
    -- another version (an import's) is kept; its lookups probe every partition.
    IF notify_private.uuid_v7_time(NEW.id) IS DISTINCT FROM pg_catalog.date_trunc('milliseconds', NEW.created_at, 'UTC')
       AND (NEW.id IS NULL OR notify_private.uuid_v7_time(NEW.id) IS NOT NULL) THEN
        NEW.id := notify_private.uuid_v7_at(NEW.created_at);
    END IF;
    NEW.changed_xid := pg_catalog.pg_current_xact_id();
    -- Stored and listed at once either way; its real-time event waits for send_at, or, past the
    -- user's in-app rate limit, for its token. Critical bypasses the per-user limits.
    IF NEW.template_id IS NOT NULL AND NEW.rendered IS NULL THEN
        -- Sent from SQL: never shown with placeholders; notifyd renders it and releases it.
        NEW.held_until := 'infinity';
    ELSIF NEW.send_at > NEW.created_at THEN
        NEW.held_until := NEW.send_at;
    ELSIF NEW.priority <> 'critical' AND (NEW.channels IS NULL OR 'in_app' = ANY (NEW.channels)) THEN
        NEW.held_until := CASE WHEN token_taken THEN NEW.held_until
                               ELSE nullif(notify_private.take_token(NEW.user_id, 'in_app', notification_id => NEW.id),
                                           NEW.created_at) END;
    END IF;
    -- How each channel goes, decided once and kept on the row: a channel it is not sent on needs no
    -- delivery row, and the statement's delivery planning reads no preferences again. A query, not an
    -- assignment, so that its plan (channel_decisions inlined) is kept for the session. A bulk send's
    -- rows were decided together with their seqs (take_bulk_seqs): the row carries its record.
    -- A sender's own escalation chain is checked (a clear error) and kept normalized, as a type's is.
    IF NEW.escalation IS NOT NULL AND NEW.escalation <> '[]'::jsonb THEN
        NEW.escalation := notify_private.escalation_steps(NEW.escalation);
    END IF;
    IF NOT seq_taken THEN
        SELECT d.decisions INTO NEW.decisions FROM notify_private.channel_decisions(NEW) AS d;
    END IF;
    RETURN NEW;
END
$$;
-- SECURITY DEFINER functions run as notify_definer, which has policies of its own.
ALTER FUNCTION notify_private.prepare_new_notification() OWNER TO notify_definer;
COMMENT ON FUNCTION notify_private.prepare_new_notification()
    IS 'gives a new notification its seq and clock; skips a replayed idempotency key (refuses it with another request); refuses an unknown template; folds it into its open group (the INSERT then makes no row); holds its real-time event for send_at, the in-app rate limit or its rendering; records how each channel goes (decisions)';

CREATE OR REPLACE TRIGGER notifications_prepare_new BEFORE INSERT ON notify.notifications
    FOR EACH ROW EXECUTE FUNCTION notify_private.prepare_new_notification();
COMMENT ON TRIGGER notifications_prepare_new ON notify.notifications IS 'makes a plain INSERT behave like notify.send: seq, clock, idempotency, grouping, holds';

CREATE OR REPLACE FUNCTION notify_private.prepare_changed_notification() RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = ''
AS $$
DECLARE
    unchanged notify.notifications;
BEGIN
    IF NEW.id <> OLD.id OR NEW.user_id <> OLD.user_id THEN
        RAISE EXCEPTION 'a notification''s id and user_id never change' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Its id carries created_at (the partition a lookup by id goes to): moving it would lose the row.
    IF NEW.created_at <> OLD.created_at AND notify_private.uuid_v7_time(NEW.id) IS NOT NULL THEN
        RAISE EXCEPTION 'a notification''s created_at never changes: its id carries it'
            USING ERRCODE = 'invalid_parameter_value', COLUMN = 'created_at',
                  HINT = 'to make a notification of another time, insert it with notify.clock pinned to that time';
    END IF;
    -- Readers may say "read", "seen" or "archived", not when: the clock decides. Reading is seeing.
    IF NEW.read_at IS NOT NULL AND OLD.read_at IS NULL THEN
        NEW.read_at := notify.now();
        NEW.seen_at := coalesce(OLD.seen_at, NEW.read_at);
    END IF;
    IF NEW.seen_at IS NOT NULL AND OLD.seen_at IS NULL THEN
        NEW.seen_at := notify.now();
    END IF;
    IF NEW.archived_at IS NOT NULL AND OLD.archived_at IS NULL THEN
        NEW.archived_at := notify.now();
    END IF;
    NEW.seq := OLD.seq;
    NEW.changed_xid := OLD.changed_xid;
    NEW.updated_at := OLD.updated_at;
    -- Nothing changed, or only seen_at: a row marked seen is not sent again (notify.mark_seen moves the
    -- user's seen watermark instead, one event for all of them).
    unchanged := NEW;
    unchanged.seen_at := OLD.seen_at;
    IF unchanged IS NOT DISTINCT FROM OLD THEN
        RETURN NEW;
    END IF;
    NEW.seq := notify_private.next_seq(NEW.user_id);
    NEW.changed_xid := pg_catalog.pg_current_xact_id();
    NEW.updated_at := notify.now();
    RETURN NEW;
END
$$;
-- SECURITY DEFINER functions run as notify_definer, which has policies of its own.
ALTER FUNCTION notify_private.prepare_changed_notification() OWNER TO notify_definer;
COMMENT ON FUNCTION notify_private.prepare_changed_notification() IS 'gives a changed notification a new seq, so resume and fan-out see the change (not for a change of seen_at alone); stamps read, seen and archived with the clock';

CREATE OR REPLACE TRIGGER notifications_prepare_changed BEFORE UPDATE ON notify.notifications
    FOR EACH ROW EXECUTE FUNCTION notify_private.prepare_changed_notification();
COMMENT ON TRIGGER notifications_prepare_changed ON notify.notifications IS 'gives every changed notification a new seq, so resume and fan-out see the change';

CREATE OR REPLACE FUNCTION notify_private.signal_notifications_changed() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = ''
AS $$
BEGIN
    -- One NOTIFY per statement, carrying only the transaction id: listeners read the rows.
    IF EXISTS (SELECT 1 FROM changed_rows) THEN
        PERFORM pg_catalog.pg_notify('notify_notifications', pg_catalog.pg_current_xact_id()::text);
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION notify_private.signal_notifications_changed() IS 'wakes LISTENers on channel notify_notifications once per statement';

CREATE OR REPLACE TRIGGER notifications_signal_inserted AFTER INSERT ON notify.notifications
    REFERENCING NEW TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION notify_private.signal_notifications_changed();
COMMENT ON TRIGGER notifications_signal_inserted ON notify.notifications IS 'wakes the real-time hub once per inserting statement';

CREATE OR REPLACE TRIGGER notifications_signal_updated AFTER UPDATE ON notify.notifications
    REFERENCING NEW TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION notify_private.signal_notifications_changed();
COMMENT ON TRIGGER notifications_signal_updated ON notify.notifications IS 'wakes the real-time hub once per updating statement';
