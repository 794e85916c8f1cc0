-- Topics and org broadcasts: a user follows a topic (notify.subscribe), a send to the topic reaches every
-- unmuted follower (notify.send_topic), and an admin sends to an org, or to everyone, narrowed by a topic,
-- a language or a time zone (notify.broadcast, after notify.broadcast_preview). All run as the caller: RLS
-- keeps a user to their own subscriptions and an org admin to their org's users, subscriptions and batches.
-- The sends themselves are send_bulk's (notify_private.send_batch): each recipient's preferences, quiet
-- hours and rate limits hold as for any bulk send, and push and e-mail spend the global rate.

CREATE OR REPLACE FUNCTION notify.require_topic(topic text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE
    SET search_path = ''
AS $$
BEGIN
    IF require_topic.topic IS NULL THEN
        RAISE EXCEPTION 'topic cannot be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    -- The table's check says the same; said here first so that a send to a bad name fails the same way.
    IF require_topic.topic !~ '^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$' THEN
        RAISE EXCEPTION 'topic must be 1 to 200 letters, digits or . _ : - (starting with a letter or digit), got "%"',
            left(require_topic.topic, 210)
            USING ERRCODE = 'invalid_parameter_value', COLUMN = 'topic', HINT = 'for example project:42 or releases';
    END IF;
    RETURN require_topic.topic;
END
$$;
COMMENT ON FUNCTION notify.require_topic(text)
    IS 'the topic if its name is valid (1 to 200 of A-Z a-z 0-9 . _ : -), else SQLSTATE 22023 (22004 for NULL)';

CREATE OR REPLACE FUNCTION notify.require_recipient(user_id uuid) RETURNS uuid
    LANGUAGE plpgsql STABLE
    SET search_path = ''
AS $$
BEGIN
    IF require_recipient.user_id IS NULL THEN
        RAISE EXCEPTION 'user_id cannot be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    -- Read as the caller: a user sees their own row, an org admin their org's, a service every one.
    IF NOT EXISTS (SELECT 1 FROM notify.recipients AS r WHERE r.user_id = require_recipient.user_id) THEN
        RAISE EXCEPTION 'no recipient % in your scope', require_recipient.user_id
            USING ERRCODE = 'no_data_found',
                  HINT = 'a user is a recipient once a service upserted them (notify.upsert_recipient) or sent them something';
    END IF;
    RETURN require_recipient.user_id;
END
$$;
COMMENT ON FUNCTION notify.require_recipient(uuid)
    IS 'the user if the caller may see their recipient row (a user themself, an org admin their org, a service all), else P0002';

-- What subscribe, unsubscribe and mute_topic check first, in this order: the topic's name, then the user.
CREATE OR REPLACE FUNCTION notify_private.require_subscriber(user_id uuid, topic text) RETURNS void
    LANGUAGE plpgsql STABLE
    SET search_path = ''
AS $$
BEGIN
    PERFORM notify.require_topic(require_subscriber.topic);
    PERFORM notify.require_recipient(require_subscriber.user_id);
END
$$;
COMMENT ON FUNCTION notify_private.require_subscriber(uuid, text)
    IS 'checks a subscription call: a valid topic name (22023, 22004 for NULL), a user the caller may see (P0002)';

CREATE OR REPLACE FUNCTION notify.subscribe(user_id uuid, topic text) RETURNS boolean
    LANGUAGE plpgsql
    SET search_path = ''
AS $$
BEGIN
    PERFORM notify_private.require_subscriber(subscribe.user_id, subscribe.topic);
    INSERT INTO notify.topic_subscriptions AS s (user_id, topic)
    VALUES (subscribe.user_id, subscribe.topic)
    ON CONFLICT ON CONSTRAINT topic_subscriptions_pkey DO NOTHING;
    RETURN FOUND;  -- false: the conflict left the subscription (and its mute) as it was
END
$$;
COMMENT ON FUNCTION notify.subscribe(uuid, text)
    IS 'subscribes a user to a topic; returns true if new, false if they were subscribed already (a mute stays)';

CREATE OR REPLACE FUNCTION notify.unsubscribe(user_id uuid, topic text) RETURNS boolean
    LANGUAGE plpgsql
    SET search_path = ''
AS $$
BEGIN
    PERFORM notify_private.require_subscriber(unsubscribe.user_id, unsubscribe.topic);
    DELETE FROM notify.topic_subscriptions AS s
    WHERE s.user_id = unsubscribe.user_id AND s.topic = unsubscribe.topic;
    RETURN FOUND;
END
$$;
COMMENT ON FUNCTION notify.unsubscribe(uuid, text)
    IS 'unsubscribes a user from a topic; returns true if they were subscribed, false if not';

CREATE OR REPLACE FUNCTION notify.mute_topic(user_id uuid, topic text, muted boolean DEFAULT true) RETURNS boolean
    LANGUAGE plpgsql
    SET search_path = ''
AS $$
DECLARE
    now_muted boolean;
BEGIN
    PERFORM notify_private.require_subscriber(mute_topic.user_id, mute_topic.topic);
    IF mute_topic.muted IS NULL THEN
        RAISE EXCEPTION 'muted cannot be null: true mutes the topic, false unmutes it' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    UPDATE notify.topic_subscriptions AS s SET muted = mute_topic.muted
    WHERE s.user_id = mute_topic.user_id AND s.topic = mute_topic.topic
    RETURNING s.muted INTO now_muted;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'user % is not subscribed to topic "%"', mute_topic.user_id, mute_topic.topic
            USING ERRCODE = 'no_data_found', HINT = 'subscribe first (notify.subscribe)';
    END IF;
    RETURN now_muted;
END
$$;
COMMENT ON FUNCTION notify.mute_topic(uuid, text, boolean)
    IS 'the user''s per-topic mute: a muted subscriber stays subscribed but topic sends skip them; returns the mute (P0002 if not subscribed)';

CREATE OR REPLACE FUNCTION notify_private.audience(org_id uuid, topic text, locale text, timezone text)
    RETURNS uuid[]
    LANGUAGE plpgsql STABLE
    SET search_path = ''
AS $$
BEGIN
    -- Read as the caller, so RLS narrows it: an org admin reaches their org's users only. PL/pgSQL, not
    -- SQL: its cached plan is made again when the role changes (RLS differs per role), whereas a SQL
    -- function called from a PL/pgSQL expression keeps its first plan for the rest of the transaction.
    -- A language matches its regional variants too (de: de, de-AT, de-CH).
    RETURN (
        SELECT coalesce(pg_catalog.array_agg(r.user_id ORDER BY r.user_id), '{}')
        FROM notify.recipients AS r
        WHERE (audience.org_id IS NULL OR r.org_id = audience.org_id)
          AND (audience.locale IS NULL OR r.locale = audience.locale
               OR pg_catalog.split_part(r.locale, '-', 1) = audience.locale)
          AND (audience.timezone IS NULL OR r.timezone = audience.timezone)
          AND (audience.topic IS NULL OR EXISTS (
              SELECT 1 FROM notify.topic_subscriptions AS s
              WHERE s.topic = audience.topic AND s.user_id = r.user_id AND NOT s.muted)));
END
$$;
COMMENT ON FUNCTION notify_private.audience(uuid, text, text, text)
    IS 'the users a topic send or broadcast reaches, in user order, as far as the caller may see: an org (NULL: any), a topic''s unmuted followers, a language, a time zone';

CREATE OR REPLACE FUNCTION notify.send_topic(
    topic           text,
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
BEGIN
    PERFORM notify.require_topic(send_topic.topic);
    PERFORM notify.require_type(send_topic.type);
    RETURN notify_private.send_batch(
        notify_private.audience(NULL, send_topic.topic, NULL, NULL),
        pg_catalog.jsonb_build_object('topic', send_topic.topic),
        send_topic.type, send_topic.title, send_topic.body, send_topic.priority, send_topic.data, send_topic.channels,
        send_topic.template, send_topic.template_vars, send_topic.idempotency_key, send_topic.expires_at,
        send_topic.send_at, send_topic.group_key);
END
$$;
COMMENT ON FUNCTION notify.send_topic(text, text, text, text, text, jsonb, text[], text, jsonb, text, timestamptz, timestamptz, text)
    IS 'sends one notification to every unmuted follower of a topic (an org admin: those of their org), in chunks of batch.max_recipients; returns the batch id, NULL if nobody follows it';

CREATE OR REPLACE FUNCTION notify_private.broadcast_audience(org_id uuid, topic text, locale text, timezone text)
    RETURNS uuid[]
    LANGUAGE plpgsql STABLE
    SET search_path = ''
AS $$
BEGIN
    IF broadcast_audience.org_id IS NULL AND notify.current_org_id() IS NOT NULL THEN
        RAISE EXCEPTION 'only a DBA broadcasts to every org: an org admin names their org_id'
            USING ERRCODE = 'insufficient_privilege';
    ELSIF broadcast_audience.org_id IS NOT NULL THEN
        PERFORM notify_private.require_org(broadcast_audience.org_id);
    END IF;
    IF broadcast_audience.topic IS NOT NULL THEN
        PERFORM notify.require_topic(broadcast_audience.topic);
    END IF;
    IF broadcast_audience.locale !~ '^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$' THEN
        RAISE EXCEPTION 'locale must be a language tag such as de or pt-BR, got "%"', left(broadcast_audience.locale, 40)
            USING ERRCODE = 'invalid_parameter_value', COLUMN = 'locale';
    END IF;
    IF broadcast_audience.timezone IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_timezone_names AS z WHERE z.name = broadcast_audience.timezone) THEN
        RAISE EXCEPTION 'unknown time zone "%"', left(broadcast_audience.timezone, 60)
            USING ERRCODE = 'invalid_parameter_value', COLUMN = 'timezone', HINT = 'an IANA name such as Europe/Berlin';
    END IF;
    RETURN notify_private.audience(broadcast_audience.org_id, broadcast_audience.topic, broadcast_audience.locale,
                                   broadcast_audience.timezone);
END
$$;
COMMENT ON FUNCTION notify_private.broadcast_audience(uuid, text, text, text)
    IS 'a broadcast''s recipients after checking who may send it (every org: a DBA only, 42501; another org: P0002) and its filters (22023)';

CREATE OR REPLACE FUNCTION notify_private.audience_channels(user_ids uuid[], type text, priority text, channels text[])
    RETURNS jsonb
    LANGUAGE sql STABLE
    SECURITY DEFINER
    SET search_path = ''
AS $$
    -- What take_bulk_seqs would decide for each of them now (channel_decisions), counted: in-app reaches
    -- everyone it is wanted for; push those with a device and push on (quiet hours only delay it); e-mail
    -- those it goes to at once or in a digest. Definer, to read every user's preferences and devices: only
    -- users in the calling admin's scope are counted.
    SELECT pg_catalog.jsonb_build_object(
        'in_app', pg_catalog.count(*) FILTER (WHERE 'in_app' = ANY (k.wanted)),
        'push', pg_catalog.count(*) FILTER (WHERE 'push' = ANY (k.wanted)
                                            AND coalesce(c.decisions -> 'push' ->> 'status', 'pending') = 'pending'),
        'email', pg_catalog.count(*) FILTER (WHERE 'email' = ANY (k.wanted)
                                             AND coalesce(c.decisions -> 'email' ->> 'status', 'pending') = 'pending'),
        'email_digest', pg_catalog.count(*) FILTER (WHERE 'email' = ANY (k.wanted)
                                                    AND c.decisions -> 'email' ->> 'status' = 'held'))
    FROM pg_catalog.unnest(audience_channels.user_ids) AS u(id)
    CROSS JOIN LATERAL (
        SELECT notify_private.wanted_channels(coalesce(audience_channels.priority, 'normal'), audience_channels.channels)
               AS wanted
    ) AS k
    CROSS JOIN LATERAL (
        SELECT pg_catalog.jsonb_populate_record(NULL::notify.notifications, pg_catalog.jsonb_build_object(
                   'user_id', u.id, 'type', audience_channels.type,
                   'priority', coalesce(audience_channels.priority, 'normal'), 'channels', audience_channels.channels))
               AS notification
        OFFSET 0
    ) AS newcomer
    CROSS JOIN LATERAL notify_private.channel_decisions(newcomer.notification) AS c
    WHERE notify.in_admin_scope(u.id)
$$;
ALTER FUNCTION notify_private.audience_channels(uuid[], text, text, text[]) OWNER TO notify_definer;
COMMENT ON FUNCTION notify_private.audience_channels(uuid[], text, text, text[])
    IS 'how many of the users (those in the calling admin''s scope) a notification of this type, priority and channels would reach now, per channel';

CREATE OR REPLACE FUNCTION notify.broadcast_preview(
    org_id   uuid,
    type     text,
    priority text DEFAULT 'normal',
    channels text[] DEFAULT NULL,
    topic    text DEFAULT NULL,
    locale   text DEFAULT NULL,
    timezone text DEFAULT NULL
) RETURNS jsonb
    LANGUAGE plpgsql STABLE
    SET search_path = ''
AS $$
DECLARE
    recipients uuid[];
BEGIN
    PERFORM notify.require_type(broadcast_preview.type);
    IF broadcast_preview.priority NOT IN ('critical', 'high', 'normal', 'low') THEN
        RAISE EXCEPTION 'priority must be critical, high, normal or low, got "%"', left(broadcast_preview.priority, 40)
            USING ERRCODE = 'invalid_parameter_value', COLUMN = 'priority';
    END IF;
    IF cardinality(broadcast_preview.channels) = 0 OR array_position(broadcast_preview.channels, NULL) IS NOT NULL
       OR NOT broadcast_preview.channels <@ ARRAY['in_app', 'push', 'email'] THEN
        RAISE EXCEPTION 'channels must be some of in_app, push, email (NULL: priority and preferences decide)'
            USING ERRCODE = 'invalid_parameter_value', COLUMN = 'channels';
    END IF;
    recipients := notify_private.broadcast_audience(broadcast_preview.org_id, broadcast_preview.topic,
                                                    broadcast_preview.locale, broadcast_preview.timezone);
    RETURN pg_catalog.jsonb_build_object(
        'recipients', cardinality(recipients),
        'channels', notify_private.audience_channels(recipients, broadcast_preview.type, broadcast_preview.priority,
                                                     broadcast_preview.channels),
        'global_rate_per_minute', notify.setting('rate_limit.global_per_minute'));
END
$$;
COMMENT ON FUNCTION notify.broadcast_preview(uuid, text, text, text[], text, text, text)
    IS 'before a broadcast: how many users it reaches and how they split by channel now ({"recipients", "channels": {"in_app", "push", "email", "email_digest"}, "global_rate_per_minute"})';

CREATE OR REPLACE FUNCTION notify.broadcast(
    org_id          uuid,
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
    topic           text DEFAULT NULL,
    locale          text DEFAULT NULL,
    timezone        text DEFAULT NULL
) RETURNS uuid
    LANGUAGE plpgsql
    SET search_path = ''
AS $$
BEGIN
    PERFORM notify.require_type(broadcast.type);
    RETURN notify_private.send_batch(
        notify_private.broadcast_audience(broadcast.org_id, broadcast.topic, broadcast.locale, broadcast.timezone),
        pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
            'org_id', broadcast.org_id, 'topic', broadcast.topic, 'locale', broadcast.locale,
            'timezone', broadcast.timezone)),
        broadcast.type, broadcast.title, broadcast.body, broadcast.priority, broadcast.data, broadcast.channels,
        broadcast.template, broadcast.template_vars, broadcast.idempotency_key, broadcast.expires_at,
        broadcast.send_at, broadcast.group_key);
END
$$;
COMMENT ON FUNCTION notify.broadcast(uuid, text, text, text, text, jsonb, text[], text, jsonb, text, timestamptz, timestamptz, text, text, text, text)
    IS 'an admin sends one notification to every user of an org (NULL: every org, DBAs only), narrowed by a topic, a language or a time zone; returns the batch id (NULL: nobody matched)';
