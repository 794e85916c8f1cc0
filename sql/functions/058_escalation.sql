-- Escalation chains: a type's steps (or a sender's for one notification) instead of the priority's channel
-- choice. Planning (060_delivery_planning.sql) turns each step but in-app into deliveries due at its time (a
-- webhook or chat step: one per target of the user);
-- the trigger here cancels the steps still waiting the moment the notification is seen or read; the worker's
-- claim (061_delivery_ledger.sql) only takes a pending step, so the delivery row is where the two meet.

CREATE OR REPLACE FUNCTION notify_private.escalation_steps(steps jsonb) RETURNS jsonb
    LANGUAGE plpgsql STABLE
    SET search_path = ''
AS $$
DECLARE
    step jsonb;
    step_no integer := 0;
    channel text;
    step_after interval;
    previous interval := interval '0';
    step_unless text;
    seen_channels text[] := '{}';
    normalized jsonb := '[]';
BEGIN
    IF steps IS NULL OR pg_catalog.jsonb_typeof(steps) <> 'array' OR pg_catalog.jsonb_array_length(steps) = 0 THEN
        RAISE EXCEPTION 'an escalation chain is a non-empty JSON array of steps, got %', coalesce(steps::text, 'null')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'for example [{"channel": "in_app"}, {"channel": "email", "after": "15 minutes", "unless": "seen"}]';
    END IF;
    IF pg_catalog.jsonb_array_length(steps) > 6 THEN
        RAISE EXCEPTION 'an escalation chain has at most 6 steps (one per channel), got %',
            pg_catalog.jsonb_array_length(steps) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR step IN SELECT s.value FROM pg_catalog.jsonb_array_elements(steps) AS s LOOP
        step_no := step_no + 1;
        IF pg_catalog.jsonb_typeof(step) <> 'object' THEN
            RAISE EXCEPTION 'escalation step % must be a JSON object, got %', step_no, step
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF EXISTS (SELECT 1 FROM pg_catalog.jsonb_object_keys(step) AS k(key)
                   WHERE k.key NOT IN ('channel', 'after', 'unless')) THEN
            RAISE EXCEPTION 'escalation step % has an unknown key: only channel, after and unless are known', step_no
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        channel := step ->> 'channel';
        IF pg_catalog.jsonb_typeof(step -> 'channel') IS DISTINCT FROM 'string'
           OR NOT channel = ANY (notify.channels()) THEN
            RAISE EXCEPTION 'escalation step %: channel must be one of %, got %', step_no,
                pg_catalog.array_to_string(notify.channels(), ', '),
                coalesce((step -> 'channel')::text, 'nothing') USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF channel = ANY (seen_channels) THEN
            RAISE EXCEPTION 'escalation step %: channel % is in the chain already (each channel once)', step_no, channel
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        seen_channels := seen_channels || channel;
        IF step ? 'after' AND pg_catalog.jsonb_typeof(step -> 'after') <> 'string' THEN
            RAISE EXCEPTION 'escalation step %: after must be an interval such as "15 minutes", got %', step_no,
                step -> 'after' USING ERRCODE = 'invalid_datetime_format';
        END IF;
        BEGIN
            step_after := coalesce((step ->> 'after')::interval, interval '0');
        EXCEPTION WHEN data_exception THEN
            RAISE EXCEPTION 'escalation step %: after must be an interval such as "15 minutes", got %', step_no,
                step -> 'after' USING ERRCODE = 'invalid_datetime_format';
        END;
        IF step_after < interval '0' OR step_after > interval '30 days' THEN
            RAISE EXCEPTION 'escalation step %: after must be between 0 and 30 days, got %', step_no, step ->> 'after'
                USING ERRCODE = 'interval_field_overflow';
        END IF;
        -- Each step's time counts from the send: a later step cannot come before the one it follows.
        IF step_after < previous THEN
            RAISE EXCEPTION 'escalation step %: after (%) comes before the previous step''s (%): a chain''s times must not decrease',
                step_no, step_after, previous USING ERRCODE = 'invalid_parameter_value';
        END IF;
        previous := step_after;
        IF step ? 'unless' AND (pg_catalog.jsonb_typeof(step -> 'unless') IS DISTINCT FROM 'string'
                                OR step ->> 'unless' NOT IN ('seen', 'read')) THEN
            RAISE EXCEPTION 'escalation step %: unless must be seen or read, got %', step_no, step -> 'unless'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF channel = 'in_app' AND (step_after > interval '0' OR step ? 'unless') THEN
            RAISE EXCEPTION 'escalation step %: the in_app step goes at once, with no after or unless (the inbox lists every notification when it is sent)',
                step_no USING ERRCODE = 'invalid_parameter_value';
        END IF;
        -- Every step after the first waits for the user: by default until they have seen it.
        step_unless := CASE WHEN channel <> 'in_app'
                            THEN coalesce(step ->> 'unless', CASE WHEN step_no > 1 THEN 'seen' END) END;
        normalized := normalized || pg_catalog.jsonb_build_array(pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
            'channel', channel, 'after', step_after::text, 'unless', step_unless)));
    END LOOP;
    RETURN normalized;
END
$$;
COMMENT ON FUNCTION notify_private.escalation_steps(jsonb)
    IS 'checks an escalation chain and returns it normalized ([{channel, after, unless}]); a clear error (SQLSTATE 22) if it is malformed';

-- Immutable SQL and a plain expression (no subquery), so that PostgreSQL inlines it into the send's planning
-- statements, whose plans are kept for the session. It calls wanted_channels, which 060_delivery_planning.sql
-- creates.
SET check_function_bodies = off;
CREATE OR REPLACE FUNCTION notify_private.escalation_wanted(chain jsonb, priority text, channels text[]) RETURNS text[]
    LANGUAGE sql IMMUTABLE
AS $$
    SELECT CASE WHEN escalation_wanted.chain IS NULL
                THEN notify_private.wanted_channels(escalation_wanted.priority, escalation_wanted.channels)
                ELSE pg_catalog.array_remove(ARRAY[
                    CASE WHEN escalation_wanted.chain @> '[{"channel": "in_app"}]'
                              AND (escalation_wanted.channels IS NULL OR 'in_app' = ANY (escalation_wanted.channels))
                         THEN 'in_app' END,
                    CASE WHEN escalation_wanted.chain @> '[{"channel": "push"}]'
                              AND (escalation_wanted.channels IS NULL OR 'push' = ANY (escalation_wanted.channels))
                         THEN 'push' END,
                    CASE WHEN escalation_wanted.chain @> '[{"channel": "email"}]'
                              AND (escalation_wanted.channels IS NULL OR 'email' = ANY (escalation_wanted.channels))
                         THEN 'email' END,
                    CASE WHEN escalation_wanted.chain @> '[{"channel": "sms"}]'
                              AND (escalation_wanted.channels IS NULL OR 'sms' = ANY (escalation_wanted.channels))
                         THEN 'sms' END,
                    -- Webhook and chat go as their step says; a chain without their step leaves them as
                    -- without a chain (to their targets at once, as the priority has them).
                    CASE WHEN escalation_wanted.chain @> '[{"channel": "webhook"}]'
                         THEN CASE WHEN escalation_wanted.channels IS NULL OR 'webhook' = ANY (escalation_wanted.channels)
                                   THEN 'webhook' END
                         WHEN 'webhook' = ANY (notify_private.wanted_channels(escalation_wanted.priority,
                                                                              escalation_wanted.channels))
                         THEN 'webhook' END,
                    CASE WHEN escalation_wanted.chain @> '[{"channel": "chat"}]'
                         THEN CASE WHEN escalation_wanted.channels IS NULL OR 'chat' = ANY (escalation_wanted.channels)
                                   THEN 'chat' END
                         WHEN 'chat' = ANY (notify_private.wanted_channels(escalation_wanted.priority,
                                                                           escalation_wanted.channels))
                         THEN 'chat' END], NULL) END
$$;
COMMENT ON FUNCTION notify_private.escalation_wanted(jsonb, text, text[])
    IS 'the channels a notification goes out on before preferences: its chain''s steps (narrowed by the sender''s channels), else those of its priority';
RESET check_function_bodies;

-- Immutable SQL and a plain expression: inlined wherever it is used.
CREATE OR REPLACE FUNCTION notify_private.escalation_step(chain jsonb, channel text) RETURNS jsonb
    LANGUAGE sql IMMUTABLE
AS $$
    -- The channel is written into the path, not passed as a variable: jsonb_build_object is only stable, and
    -- an immutable function with a stable body is not inlined. Callers name a channel (in_app, push, email, sms,
    -- webhook, chat).
    SELECT pg_catalog.jsonb_path_query_first(
        escalation_step.chain, ('$[*] ? (@.channel == "' || escalation_step.channel || '")')::jsonpath)
$$;
COMMENT ON FUNCTION notify_private.escalation_step(jsonb, text) IS 'the step of a chain on a channel (NULL: none)';

-- Immutable SQL: inlined wherever it is used.
CREATE OR REPLACE FUNCTION notify_private.step_reason(after text, unless text) RETURNS text
    LANGUAGE sql IMMUTABLE
AS $$
    SELECT 'escalation step: due ' || step_reason.after || ' after it was sent'
           || coalesce(', unless ' || step_reason.unless || ' by then', '')
$$;
COMMENT ON FUNCTION notify_private.step_reason(text, text)
    IS 'why an escalation step''s delivery waits, from its after and unless (NULL: not a step)';

CREATE OR REPLACE FUNCTION notify.set_escalation(type text, steps jsonb) RETURNS jsonb
    LANGUAGE plpgsql
    -- Runs as the caller: RLS lets DBAs write the chains.
    SET search_path = ''
AS $$
DECLARE
    normalized jsonb;
BEGIN
    IF notify.current_org_id() IS NOT NULL THEN
        RAISE EXCEPTION 'escalation chains are global: only a DBA (an admin without an org) sets them'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    PERFORM notify.require_type(set_escalation.type);
    IF set_escalation.steps IS NULL OR set_escalation.steps = '[]'::jsonb THEN
        DELETE FROM notify.escalation_chains AS c WHERE c.type = set_escalation.type;
        RETURN '[]'::jsonb;
    END IF;
    normalized := notify_private.escalation_steps(set_escalation.steps);
    INSERT INTO notify.escalation_chains AS c (type, steps, updated_at, updated_by)
    VALUES (set_escalation.type, normalized, notify.now(), notify.current_claims() ->> 'sub')
    ON CONFLICT ON CONSTRAINT escalation_chains_pkey DO UPDATE SET steps = EXCLUDED.steps, updated_at = EXCLUDED.updated_at,
                                     updated_by = EXCLUDED.updated_by;
    RETURN normalized;
END
$$;
COMMENT ON FUNCTION notify.set_escalation(text, jsonb)
    IS 'sets the escalation chain of a type (NULL or [] removes it) and returns it normalized; new notifications of the type follow it';

CREATE OR REPLACE FUNCTION notify.escalations() RETURNS jsonb
    LANGUAGE sql STABLE
    SET search_path = ''
AS $$
    SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'type', c.type, 'steps', c.steps, 'updated_at', c.updated_at, 'updated_by', c.updated_by)
               ORDER BY c.type), '[]'::jsonb)
    FROM notify.escalation_chains AS c
$$;
COMMENT ON FUNCTION notify.escalations() IS 'every type''s escalation chain: [{type, steps, updated_at, updated_by}]';

-- SQL without SET options: inlined wherever it is used.
CREATE OR REPLACE FUNCTION notify_private.step_cancelled(unless text, seen_at timestamptz, read_at timestamptz)
    RETURNS text
    LANGUAGE sql STABLE
AS $$
    -- Reading implies seeing: a step waiting "unless seen" ends with a read too.
    SELECT CASE WHEN step_cancelled.unless = 'seen' AND step_cancelled.seen_at IS NOT NULL
                THEN 'cancelled: the user saw it at '
                     || to_char(step_cancelled.seen_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"')
                WHEN step_cancelled.unless IN ('seen', 'read') AND step_cancelled.read_at IS NOT NULL
                THEN 'cancelled: the user read it at '
                     || to_char(step_cancelled.read_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"') END
$$;
COMMENT ON FUNCTION notify_private.step_cancelled(text, timestamptz, timestamptz)
    IS 'why an escalation step waiting unless seen or read is cancelled, given when the notification was seen and read; NULL: it still goes';

-- Seen or read, from any session or SQL: the steps still waiting end cancelled, in the reader's transaction.
-- A step the worker has claimed (sending_since set) is on its way and stays; if its worker dies, the claim of
-- the retry finds the notification seen and cancels it there.
CREATE OR REPLACE FUNCTION notify_private.cancel_escalation() RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = ''
AS $$
BEGIN
    UPDATE notify.notification_deliveries AS d
    SET status = 'cancelled', reason = c.reason, updated_at = notify.now()
    FROM notify.notification_deliveries AS w
    CROSS JOIN LATERAL (SELECT notify_private.step_cancelled(w.unless, NEW.seen_at, NEW.read_at) AS reason) AS c
    WHERE w.notification_id = NEW.id AND w.status = 'pending' AND c.reason IS NOT NULL
      AND d.id = w.id AND d.status = 'pending' AND d.sending_since IS NULL;
    RETURN NULL;
END
$$;
ALTER FUNCTION notify_private.cancel_escalation() OWNER TO notify_definer;
COMMENT ON FUNCTION notify_private.cancel_escalation()
    IS 'cancels the escalation steps of a notification still waiting once it is seen or read (in that transaction)';

CREATE OR REPLACE TRIGGER notifications_cancel_escalation AFTER UPDATE OF seen_at, read_at ON notify.notifications
    FOR EACH ROW
    WHEN (((OLD.seen_at IS NULL AND NEW.seen_at IS NOT NULL) OR (OLD.read_at IS NULL AND NEW.read_at IS NOT NULL))
          AND NEW.decisions ? 'escalation')
    EXECUTE FUNCTION notify_private.cancel_escalation();
COMMENT ON TRIGGER notifications_cancel_escalation ON notify.notifications
    IS 'cancels the waiting escalation steps of a notification the moment it is seen or read';
