-- The SQL API of the schema notify: what services, end users and DBAs call.

-- Only the request's own words count: defaults filled in, channels and recipients as sets, times as
-- instants (not in the session's time zone), and no title or body for a template send (notifyd puts the
-- rendering there, in the user's language). PL/pgSQL, whose plan is kept for the session: a SQL function
-- with subqueries is not inlined, and would be planned anew at every send. A send's own escalation chain
-- is added only when given, so that the digests kept before it existed still match their replays.
DROP FUNCTION IF EXISTS notify.request_digest(text, text, text, text, jsonb, text[], text, jsonb, timestamptz, timestamptz, text, uuid[]);
CREATE OR REPLACE FUNCTION notify.request_digest(
    type text, title text, body text, priority text, data jsonb, channels text[], template text,
    template_vars jsonb, expires_at timestamptz, send_at timestamptz, group_key text, recipients uuid[],
    escalation jsonb DEFAULT NULL
) RETURNS bytea
    LANGUAGE plpgsql IMMUTABLE
    SET search_path = ''
AS $$
DECLARE
    words jsonb;
BEGIN
    words := pg_catalog.jsonb_build_array(
        request_digest.type,
        CASE WHEN request_digest.template IS NULL THEN pg_catalog.btrim(coalesce(request_digest.title, '')) END,
        CASE WHEN request_digest.template IS NULL THEN coalesce(request_digest.body, '') END,
        coalesce(request_digest.priority, 'normal'), coalesce(request_digest.data, '{}'),
        (SELECT pg_catalog.array_agg(DISTINCT c ORDER BY c) FROM pg_catalog.unnest(request_digest.channels) AS c),
        request_digest.template, coalesce(request_digest.template_vars, '{}'),
        extract(epoch FROM request_digest.expires_at), extract(epoch FROM request_digest.send_at),
        request_digest.group_key,
        (SELECT pg_catalog.array_agg(DISTINCT u ORDER BY u) FROM pg_catalog.unnest(request_digest.recipients) AS u));
    IF request_digest.escalation IS NOT NULL THEN
        words := words || pg_catalog.jsonb_build_array(request_digest.escalation);
    END IF;
    RETURN pg_catalog.sha256(pg_catalog.convert_to(words::text, 'UTF8'));
END
$$;
COMMENT ON FUNCTION notify.request_digest(text, text, text, text, jsonb, text[], text, jsonb, timestamptz, timestamptz, text, uuid[], jsonb)
    IS 'sha256 of a send''s arguments as a canonical JSON array: what its idempotency key is bound to';

CREATE OR REPLACE FUNCTION notify.require_same_request(first_request bytea, this_request bytea) RETURNS void
    LANGUAGE plpgsql IMMUTABLE
    SET search_path = ''
AS $$
BEGIN
    -- NULL on either side (a key used before digests were kept, a plain INSERT): a replay, as it always was.
    IF first_request <> this_request THEN
        RAISE EXCEPTION 'idempotency key reused with a different request'
            USING ERRCODE = 'unique_violation', COLUMN = 'idempotency_key',
                  HINT = 'a replay must repeat the first request exactly; a new request needs a new key';
    END IF;
END
$$;
COMMENT ON FUNCTION notify.require_same_request(bytea, bytea)
    IS 'refuses a replayed idempotency key whose request digest differs from the first one''s (SQLSTATE 23505)';

-- A send's own escalation chain came as a last argument: the signature without it goes.
DROP FUNCTION IF EXISTS notify.send(uuid, text, text, text, text, jsonb, text[], text, jsonb, text, timestamptz, timestamptz, text);
CREATE OR REPLACE FUNCTION notify.send(
    user_id         uuid,
    type            text,
    title           text DEFAULT NULL,
    body            text DEFAULT NULL,
    priority        text DEFAULT 'normal',
    data            jsonb DEFAULT '{}',
    channels        text[] DEFAULT NULL,
    template        text DEFAULT NULL,
    template_vars   jsonb DEFAULT '{}',
    idempotency_key text DEFAULT NULL,
    expires_at      timestamptz DEFAULT NULL,
    send_at         timestamptz DEFAULT NULL,
    group_key       text DEFAULT NULL,
    escalation      jsonb DEFAULT NULL
) RETURNS uuid
    LANGUAGE plpgsql
    SET search_path = ''
    -- Here and in the triggers it fires: every statement a send runs finds rows by key, so the plan kept
    -- from the first call fits every call; left to choose, a new session plans its first 5 sends anew
    -- (its sends 2 to 5 cost twice a warm one) and plans some statements anew at every call.
    SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    new_id uuid;
BEGIN
    -- The key is bound to this request: the trigger refuses it with another one (its digest differs).
    INSERT INTO notify.notifications AS n
        (user_id, type, title, body, priority, data, channels, template_id, template_vars,
         idempotency_key, expires_at, send_at, group_key, escalation, request_digest)
    VALUES
        (send.user_id, send.type, send.title, send.body, send.priority, send.data, send.channels,
         send.template, send.template_vars, send.idempotency_key, send.expires_at, send.send_at,
         send.group_key, send.escalation,
         CASE WHEN send.idempotency_key IS NOT NULL THEN notify.request_digest(
             send.type, send.title, send.body, send.priority, send.data, send.channels, send.template,
             send.template_vars, send.expires_at, send.send_at, send.group_key, NULL, send.escalation) END)
    RETURNING n.id INTO new_id;
    IF new_id IS NULL AND send.idempotency_key IS NOT NULL THEN
        -- The trigger skipped a replayed key or folded a new one: answer with the notification holding it.
        SELECT coalesce(
            (SELECT n.id FROM notify.notifications AS n
             WHERE n.user_id = send.user_id AND n.idempotency_key = send.idempotency_key),
            (SELECT f.notification_id FROM notify.notification_folds AS f
             WHERE f.user_id = send.user_id AND f.idempotency_key = send.idempotency_key))
        INTO new_id;
    ELSIF new_id IS NULL THEN
        -- The trigger folded it into its group, which that fold changed last in this transaction.
        SELECT n.id INTO new_id FROM notify.notifications AS n
        WHERE n.user_id = send.user_id AND n.type = send.type AND n.group_key = send.group_key
          AND n.changed_xid = pg_catalog.pg_current_xact_id()
        ORDER BY n.seq DESC
        LIMIT 1;
    END IF;
    RETURN new_id;
END
$$;
COMMENT ON FUNCTION notify.send(uuid, text, text, text, text, jsonb, text[], text, jsonb, text, timestamptz, timestamptz, text, jsonb)
    IS 'creates one notification (same as an INSERT) and returns its id; escalation is its own chain, overriding its type''s ([] none); a replayed idempotency key returns the first id (SQLSTATE 23505 if the request differs); a fold returns its group''s id';

-- What send_bulk, send_topic and broadcast share: the batch row (and the replay of its idempotency key), then
-- the rows, whose seqs, in-app tokens and decision records take_bulk_seqs takes for a whole chunk in one
-- statement. A chunk is at most batch.max_recipients users, as many as one send_bulk names: a topic or a
-- broadcast to more goes in several statements of the one transaction (all or nothing), each planning its
-- deliveries and spending the global rate (rate_limit.global_per_minute) for its push and e-mail in turn.
CREATE OR REPLACE FUNCTION notify_private.send_batch(
    user_ids uuid[], audience jsonb, type text, title text, body text, priority text, data jsonb, channels text[],
    template text, template_vars jsonb, idempotency_key text, expires_at timestamptz, send_at timestamptz,
    group_key text
) RETURNS uuid
    LANGUAGE plpgsql
    SET search_path = ''
AS $$
DECLARE
    chunk_size constant integer := notify.setting('batch.max_recipients')::integer;
    -- Distinct and in user order: each chunk locks its recipients in user order, so the whole batch does too
    -- (concurrent batches do not deadlock), and no user is in two chunks.
    recipients constant uuid[] := ARRAY(SELECT DISTINCT u FROM pg_catalog.unnest(send_batch.user_ids) AS u ORDER BY u);
    new_batch_id uuid;
    request bytea;
    first_request bytea;
    spends_in_app boolean;
    chunk_start integer;
BEGIN
    IF cardinality(recipients) = 0 THEN
        RETURN NULL;
    END IF;
    IF send_batch.idempotency_key IS NOT NULL THEN
        request := notify.request_digest(
            send_batch.type, send_batch.title, send_batch.body, send_batch.priority, send_batch.data, send_batch.channels,
            send_batch.template, send_batch.template_vars, send_batch.expires_at, send_batch.send_at, send_batch.group_key,
            CASE WHEN send_batch.audience IS NULL THEN send_batch.user_ids END);
        -- A topic or a broadcast is bound to whom it was addressed, not to who followed it at the time.
        IF send_batch.audience IS NOT NULL THEN
            request := pg_catalog.sha256(request || pg_catalog.convert_to(send_batch.audience::text, 'UTF8'));
        END IF;
    END IF;
    -- A concurrent first use of the key waits here until it commits, then is found below.
    INSERT INTO notify.notification_batches AS b
        (type, recipient_count, idempotency_key, created_by, request_digest, org_id, audience)
    VALUES (send_batch.type, cardinality(recipients), send_batch.idempotency_key, notify.current_claims() ->> 'sub',
            request, notify.current_org_id(), send_batch.audience)
    ON CONFLICT ON CONSTRAINT notification_batches_idempotency_key_key DO NOTHING
    RETURNING b.id INTO new_batch_id;
    IF new_batch_id IS NULL THEN
        SELECT b.id, b.request_digest INTO new_batch_id, first_request FROM notify.notification_batches AS b
        WHERE b.idempotency_key = send_batch.idempotency_key;
        PERFORM notify.require_same_request(first_request, request);
        RETURN new_batch_id;
    END IF;
    -- The seqs, in-app tokens and decision records of all the rows in one statement, not one by one in the insert trigger,
    -- which takes them from here. Tokens only where the trigger would spend one at once: not for
    -- critical, a later send_at, a template rendered later, or a newcomer that may fold into its group.
    spends_in_app := coalesce(send_batch.priority, 'normal') <> 'critical'
                     AND (send_batch.channels IS NULL OR 'in_app' = ANY (send_batch.channels))
                     AND send_batch.template IS NULL AND send_batch.group_key IS NULL
                     AND NOT coalesce(send_batch.send_at > notify.now(), false);
    PERFORM set_config('notify.bulk_batch',
                       new_batch_id::text || CASE WHEN spends_in_app THEN ' in_app' ELSE '' END, true);
    FOR chunk_start IN 1 .. cardinality(recipients) BY chunk_size LOOP
        INSERT INTO notify.notifications
            (user_id, type, title, body, priority, data, channels, template_id, template_vars,
             idempotency_key, expires_at, send_at, group_key, batch_id, seq, held_until, decisions)
        SELECT s.user_id, send_batch.type, send_batch.title, send_batch.body, send_batch.priority, send_batch.data,
               send_batch.channels, send_batch.template, send_batch.template_vars, send_batch.idempotency_key,
               send_batch.expires_at, send_batch.send_at, send_batch.group_key, new_batch_id, s.seq, s.in_app_at,
               s.decisions
        FROM notify_private.take_bulk_seqs(recipients[chunk_start:chunk_start + chunk_size - 1], spends_in_app,
                                           send_batch.type, send_batch.priority, send_batch.channels,
                                           send_batch.send_at) AS s;
    END LOOP;
    PERFORM set_config('notify.bulk_batch', '', true);
    RETURN new_batch_id;
END
$$;
COMMENT ON FUNCTION notify_private.send_batch(uuid[], jsonb, text, text, text, text, jsonb, text[], text, jsonb, text, timestamptz, timestamptz, text)
    IS 'sends one notification to each of the users as one batch, in chunks of batch.max_recipients; returns the batch id (NULL: no users; a replayed idempotency key: the first batch, SQLSTATE 23505 if the request differs)';

CREATE OR REPLACE FUNCTION notify.send_bulk(
    user_ids        uuid[],
    type            text,
    title           text DEFAULT NULL,
    body            text DEFAULT NULL,
    priority        text DEFAULT 'normal',
    data            jsonb DEFAULT '{}',
    channels        text[] DEFAULT NULL,
    template        text DEFAULT NULL,
    template_vars   jsonb DEFAULT '{}',
    idempotency_key text DEFAULT NULL,
    expires_at      timestamptz DEFAULT NULL,
    send_at         timestamptz DEFAULT NULL,
    group_key       text DEFAULT NULL
) RETURNS uuid
    LANGUAGE plpgsql
    SET search_path = ''
AS $$
DECLARE
    max_recipients constant integer := notify.setting('batch.max_recipients')::integer;
    recipient_count integer;
BEGIN
    PERFORM notify.require_type(send_bulk.type);
    IF coalesce(cardinality(user_ids), 0) = 0 THEN
        RAISE EXCEPTION 'send_bulk needs at least one user_id' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF array_position(user_ids, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'user_ids must not contain NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT count(DISTINCT u) INTO recipient_count FROM unnest(user_ids) AS u;
    IF recipient_count > max_recipients THEN
        -- Its own SQLSTATE (value out of range), so that callers can tell it from a bad type.
        RAISE EXCEPTION 'send_bulk takes at most % recipients, got %', max_recipients, recipient_count
            USING ERRCODE = 'numeric_value_out_of_range', HINT = 'split the list, or raise batch.max_recipients in notify.settings';
    END IF;
    RETURN notify_private.send_batch(
        send_bulk.user_ids, NULL, send_bulk.type, send_bulk.title, send_bulk.body, send_bulk.priority, send_bulk.data,
        send_bulk.channels, send_bulk.template, send_bulk.template_vars, send_bulk.idempotency_key,
        send_bulk.expires_at, send_bulk.send_at, send_bulk.group_key);
END
$$;
COMMENT ON FUNCTION notify.send_bulk(uuid[], text, text, text, text, jsonb, text[], text, jsonb, text, timestamptz, timestamptz, text)
    IS 'sends one notification to each of up to batch.max_recipients users in one statement; returns the batch id (a replayed idempotency key: the first batch, SQLSTATE 23505 if the request differs)';

CREATE OR REPLACE FUNCTION notify.mark_read(notification_id uuid) RETURNS timestamptz
    LANGUAGE sql
    SET search_path = ''
AS $$
    WITH newly_read AS (
        UPDATE notify.notifications AS n SET read_at = notify.now()
        WHERE n.id = mark_read.notification_id AND n.created_at >= notify_private.created_from(mark_read.notification_id) AND n.created_at < notify_private.created_before(mark_read.notification_id) AND n.read_at IS NULL AND n.deleted_at IS NULL
        RETURNING n.read_at
    )
    SELECT read_at FROM newly_read
    UNION ALL
    SELECT n.read_at FROM notify.notifications AS n
    WHERE n.id = mark_read.notification_id AND n.created_at >= notify_private.created_from(mark_read.notification_id) AND n.created_at < notify_private.created_before(mark_read.notification_id) AND n.read_at IS NOT NULL AND n.deleted_at IS NULL
    LIMIT 1
$$;
COMMENT ON FUNCTION notify.mark_read(uuid) IS 'marks one of the caller''s notifications read; returns when it was read, NULL if not visible';

CREATE OR REPLACE FUNCTION notify.mark_all_read() RETURNS integer
    LANGUAGE sql
    SET search_path = ''
AS $$
    WITH newly_read AS (
        UPDATE notify.inbox AS n SET read_at = notify.now()
        WHERE n.user_id = notify.current_user_id() AND n.read_at IS NULL
        RETURNING 1
    )
    SELECT count(*)::integer FROM newly_read
$$;
COMMENT ON FUNCTION notify.mark_all_read() IS 'marks read every unread notification the caller''s center shows; returns how many';

CREATE OR REPLACE FUNCTION notify.unread_count() RETURNS jsonb
    LANGUAGE sql STABLE
    SET search_path = ''
    -- A count over every partition of the user's rows passes jit_above_cost; compiling it cost ten times the count.
    SET jit = off
AS $$
    -- The inbox proper (notify.center): archived and snoozed notifications are not counted.
    SELECT jsonb_build_object(
        'count', coalesce(sum(per_type.unread), 0),
        'by_type', coalesce(jsonb_object_agg(per_type.type, per_type.unread), '{}'::jsonb))
    FROM (
        SELECT n.type, count(*) AS unread
        FROM notify.center AS n
        WHERE n.user_id = notify.current_user_id() AND n.read_at IS NULL
        GROUP BY n.type
    ) AS per_type
$$;
COMMENT ON FUNCTION notify.unread_count() IS 'the caller''s unread notifications in the inbox proper (not archived, not snoozed): {"count": n, "by_type": {...}}';

-- upsert_recipient_v2 adds the phone number (SMS) under a new name rather than as an overload, which would
-- make a call with fewer arguments ambiguous. The first version stays as it was for the services that call it.
CREATE OR REPLACE FUNCTION notify.upsert_recipient_v2(
    user_id  uuid,
    email    text DEFAULT NULL,
    locale   text DEFAULT NULL,
    timezone text DEFAULT NULL,
    org_id   uuid DEFAULT NULL,
    phone    text DEFAULT NULL
) RETURNS void
    LANGUAGE sql
    SET search_path = ''
AS $$
    INSERT INTO notify.recipients AS r (user_id, email, locale, timezone, org_id, phone)
    VALUES (upsert_recipient_v2.user_id, upsert_recipient_v2.email, coalesce(upsert_recipient_v2.locale, 'en'),
            coalesce(upsert_recipient_v2.timezone, 'UTC'), upsert_recipient_v2.org_id, upsert_recipient_v2.phone)
    ON CONFLICT ON CONSTRAINT recipients_pkey DO UPDATE SET
        email = coalesce(upsert_recipient_v2.email, r.email),
        locale = coalesce(upsert_recipient_v2.locale, r.locale),
        timezone = coalesce(upsert_recipient_v2.timezone, r.timezone),
        org_id = coalesce(upsert_recipient_v2.org_id, r.org_id),
        phone = coalesce(upsert_recipient_v2.phone, r.phone)
$$;
COMMENT ON FUNCTION notify.upsert_recipient_v2(uuid, text, text, text, uuid, text)
    IS 'creates or updates a recipient, phone (E.164) included; a NULL argument keeps the stored value';

CREATE OR REPLACE FUNCTION notify.upsert_recipient(
    user_id  uuid,
    email    text DEFAULT NULL,
    locale   text DEFAULT NULL,
    timezone text DEFAULT NULL,
    org_id   uuid DEFAULT NULL
) RETURNS void
    LANGUAGE sql
    SET search_path = ''
AS $$
    SELECT notify.upsert_recipient_v2(upsert_recipient.user_id, upsert_recipient.email, upsert_recipient.locale,
                                      upsert_recipient.timezone, upsert_recipient.org_id)
$$;
COMMENT ON FUNCTION notify.upsert_recipient(uuid, text, text, text, uuid)
    IS 'creates or updates a recipient without touching their phone number (upsert_recipient_v2 sets it)';
