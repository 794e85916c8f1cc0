-- 0001_core: schemas, roles, the tables of the SQL API, their indexes and seeded policy values.
-- Landed migrations never change: add a new numbered file instead.

CREATE SCHEMA notify;
COMMENT ON SCHEMA notify IS 'notifyd''s API: notifications decided and delivered by PostgreSQL';

-- notify_private (trigger functions, the migration ledger) is made by the migration runner.

-- Roles are cluster-wide: another database of this cluster may have created them already.
DO $roles$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['notify_service', 'notify_authenticated', 'notify_admin',
                                     'notify_worker', 'notify_definer']
    LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = role_name) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', role_name);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;  -- created meanwhile by a migration of another database
            END;
        END IF;
    END LOOP;
END
$roles$;
COMMENT ON ROLE notify_service IS 'backend services: create notifications, upsert recipients';
COMMENT ON ROLE notify_authenticated IS 'end users: their own rows only, through RLS';
COMMENT ON ROLE notify_admin IS 'org admins (org_id claim) and DBAs (no org_id claim)';
COMMENT ON ROLE notify_worker IS 'notifyd''s own processes: fan-out reads, delivery jobs, digests';
COMMENT ON ROLE notify_definer IS 'owner of SECURITY DEFINER functions; bound by policies of its own';

-- Policy values the database enforces; a DBA changes them with UPDATE.
CREATE TABLE notify.settings (
    key         text PRIMARY KEY,
    value       jsonb NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('integer', 'interval', 'time', 'text', 'boolean')),
    description text NOT NULL
);
COMMENT ON TABLE notify.settings IS 'policy values the database enforces (rate limits, batch size, windows, digests)';

INSERT INTO notify.settings (key, value, kind, description) VALUES
    ('rate_limit.push_per_hour', '10', 'integer', 'push notifications per user per hour'),
    ('rate_limit.in_app_per_hour', '100', 'integer', 'in-app notifications per user per hour'),
    ('rate_limit.email_per_day', '20', 'integer', 'e-mails per user per day'),
    ('rate_limit.global_per_minute', '10000', 'integer', 'notifications per minute for all bulk sends together'),
    ('batch.max_recipients', '10000', 'integer', 'most recipients one send_bulk call may name'),
    ('aggregation.window', '"5 minutes"', 'interval', 'same user, type and group_key within this window fold into one'),
    ('digest.default_frequency', '"daily"', 'text', 'digest frequency of new users for non-urgent e-mail'),
    ('digest.default_time', '"09:00"', 'time', 'local time of the daily and weekly digest'),
    ('digest.default_weekday', '1', 'integer', 'ISO weekday of the weekly digest (1 = Monday)'),
    ('clock.pinnable', 'false', 'boolean', 'honour the notify.clock setting (tests only: lets a session move time)');

-- The one clock of all time-dependent SQL, so tests can pin it.
CREATE FUNCTION notify.now() RETURNS timestamptz
    LANGUAGE sql STABLE
    SET search_path = ''
AS $$
    SELECT CASE
        WHEN (SELECT s.value = 'true'::jsonb FROM notify.settings s WHERE s.key = 'clock.pinnable')
        THEN coalesce(nullif(pg_catalog.current_setting('notify.clock', true), '')::timestamptz,
                      pg_catalog.now())
        ELSE pg_catalog.now()
    END
$$;
COMMENT ON FUNCTION notify.now() IS 'the current time of notifyd: now(), or notify.clock when clock.pinnable is on';

CREATE TABLE notify.notification_types (
    name        text PRIMARY KEY
                CONSTRAINT "type names are lowercase words" CHECK (name ~ '^[a-z][a-z0-9_]{0,49}$'),
    description text NOT NULL
);
COMMENT ON TABLE notify.notification_types IS 'the kinds of notification; a DBA adds rows to add kinds';

INSERT INTO notify.notification_types (name, description) VALUES
    ('system', 'platform updates, maintenance alerts'),
    ('user', 'mentions, replies, likes, follows'),
    ('task', 'task assignments, updates, completions, deadlines'),
    ('security', 'login alerts, password changes, suspicious activity'),
    ('billing', 'invoices, payment confirmations, subscription updates'),
    ('workflow', 'spec approvals, phase transitions, ticket assignments'),
    ('agent', 'agent completion, failures, status changes');

CREATE TABLE notify.recipients (
    user_id    uuid PRIMARY KEY,
    email      text CONSTRAINT "email must be an address of at most 254 characters"
               CHECK (length(email) <= 254 AND email ~ '^[^@\s]+@[^@\s]+\.[^@\s]+$'),
    locale     text NOT NULL DEFAULT 'en'
               CONSTRAINT "locale must be a language tag such as en or pt-BR"
               CHECK (locale ~ '^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$'),
    timezone   text NOT NULL DEFAULT 'UTC',
    org_id     uuid,
    last_seq   bigint NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT notify.now(),
    updated_at timestamptz NOT NULL DEFAULT notify.now()
);
COMMENT ON TABLE notify.recipients IS 'who notifications go to; the row lock orders each user''s seq';
COMMENT ON COLUMN notify.recipients.last_seq IS 'last seq handed out to this user, under this row''s lock';
CREATE INDEX recipients_org_id_idx ON notify.recipients (org_id) WHERE org_id IS NOT NULL;

CREATE TABLE notify.notification_batches (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    type            text NOT NULL
                    CONSTRAINT "type must be a row of notify.notification_types"
                    REFERENCES notify.notification_types (name),
    recipient_count integer NOT NULL CHECK (recipient_count > 0),
    idempotency_key text UNIQUE,
    created_by      text,
    created_at      timestamptz NOT NULL DEFAULT notify.now()
);
COMMENT ON TABLE notify.notification_batches IS 'one row per send_bulk call, for batch status';

CREATE TABLE notify.notifications (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id         uuid NOT NULL REFERENCES notify.recipients (user_id) ON DELETE CASCADE,
    type            text NOT NULL
                    CONSTRAINT "type must be a row of notify.notification_types"
                    REFERENCES notify.notification_types (name),
    priority        text NOT NULL DEFAULT 'normal'
                    CONSTRAINT "priority must be critical, high, normal or low"
                    CHECK (priority IN ('critical', 'high', 'normal', 'low')),
    title           text NOT NULL DEFAULT ''
                    CONSTRAINT "title must be at most 255 characters" CHECK (length(title) <= 255),
    body            text NOT NULL DEFAULT ''
                    CONSTRAINT "body must be at most 10000 characters" CHECK (length(body) <= 10000),
    data            jsonb NOT NULL DEFAULT '{}'
                    CONSTRAINT "data must be a JSON object of at most 16 KB"
                    CHECK (jsonb_typeof(data) = 'object' AND pg_column_size(data) <= 16384),
    template_id     text,
    template_vars   jsonb NOT NULL DEFAULT '{}'
                    CONSTRAINT "template_vars must be a JSON object" CHECK (jsonb_typeof(template_vars) = 'object'),
    channels        text[]
                    CONSTRAINT "channels must be some of in_app, push, email"
                    CHECK (cardinality(channels) > 0 AND channels <@ ARRAY['in_app', 'push', 'email']
                           AND array_position(channels, NULL) IS NULL),
    idempotency_key text CONSTRAINT "idempotency_key must be 1 to 255 characters"
                    CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    group_key       text CONSTRAINT "group_key must be 1 to 255 characters"
                    CHECK (length(group_key) BETWEEN 1 AND 255),
    group_count     integer NOT NULL DEFAULT 1 CHECK (group_count >= 1),
    action_taken    text CONSTRAINT "action_taken must be 1 to 100 characters"
                    CHECK (length(action_taken) BETWEEN 1 AND 100),
    action_taken_at timestamptz,
    batch_id        uuid REFERENCES notify.notification_batches (id) ON DELETE SET NULL,
    seq             bigint NOT NULL,
    changed_xid     xid8 NOT NULL DEFAULT pg_current_xact_id(),
    read_at         timestamptz,
    created_at      timestamptz NOT NULL DEFAULT notify.now(),
    updated_at      timestamptz NOT NULL DEFAULT notify.now(),
    send_at         timestamptz,
    expires_at      timestamptz,
    deleted_at      timestamptz,
    CONSTRAINT "a notification needs a title or a template"
        CHECK (btrim(title) <> '' OR template_id IS NOT NULL)
);
COMMENT ON TABLE notify.notifications IS 'one row per notification per user; inserting one sends it';
COMMENT ON COLUMN notify.notifications.seq IS 'per-user order of creations and changes, in commit order; resume goes by it';
COMMENT ON COLUMN notify.notifications.changed_xid IS 'transaction that last created or changed the row; fan-out reads by it';
COMMENT ON COLUMN notify.notifications.channels IS 'channels the sender asked for; NULL lets priority and preferences decide';

-- The notification center: newest first per user with a stable tiebreak, unread per user.
CREATE INDEX notifications_user_newest_idx ON notify.notifications (user_id, created_at DESC, id DESC)
    WHERE deleted_at IS NULL;
CREATE INDEX notifications_user_unread_idx ON notify.notifications (user_id, type)
    WHERE read_at IS NULL AND deleted_at IS NULL;
CREATE UNIQUE INDEX notifications_user_seq_idx ON notify.notifications (user_id, seq);
CREATE UNIQUE INDEX notifications_user_idempotency_key_idx ON notify.notifications (user_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX notifications_changed_xid_idx ON notify.notifications (changed_xid);
CREATE INDEX notifications_batch_id_idx ON notify.notifications (batch_id) WHERE batch_id IS NOT NULL;
CREATE INDEX notifications_group_idx ON notify.notifications (user_id, type, group_key, created_at DESC)
    WHERE group_key IS NOT NULL;

CREATE TABLE notify.push_subscriptions (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id       uuid NOT NULL REFERENCES notify.recipients (user_id) ON DELETE CASCADE,
    kind          text NOT NULL CHECK (kind IN ('webpush', 'fcm')),
    endpoint      text,
    p256dh_key    text,
    auth_key      text,
    fcm_token     text,
    vapid_key_id  uuid,
    device_info   jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(device_info) = 'object'),
    is_active     boolean NOT NULL DEFAULT true,
    failure_count integer NOT NULL DEFAULT 0,
    last_used_at  timestamptz,
    created_at    timestamptz NOT NULL DEFAULT notify.now(),
    CHECK (kind <> 'webpush' OR (endpoint IS NOT NULL AND p256dh_key IS NOT NULL AND auth_key IS NOT NULL)),
    CHECK (kind <> 'fcm' OR fcm_token IS NOT NULL)
);
COMMENT ON TABLE notify.push_subscriptions IS 'browser (Web Push) and mobile (FCM) devices of a user';
CREATE INDEX push_subscriptions_user_active_idx ON notify.push_subscriptions (user_id) WHERE is_active;
CREATE UNIQUE INDEX push_subscriptions_endpoint_idx ON notify.push_subscriptions (endpoint) WHERE endpoint IS NOT NULL;

CREATE TABLE notify.notification_deliveries (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    notification_id     uuid NOT NULL REFERENCES notify.notifications (id) ON DELETE CASCADE,
    user_id             uuid NOT NULL REFERENCES notify.recipients (user_id) ON DELETE CASCADE,
    channel             text NOT NULL CHECK (channel IN ('in_app', 'push', 'email')),
    status              text NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'held', 'sent', 'delivered', 'failed', 'bounced',
                                          'skipped', 'suppressed', 'cancelled')),
    subscription_id     uuid REFERENCES notify.push_subscriptions (id) ON DELETE SET NULL,
    reason              text,
    error_message       text,
    attempts            integer NOT NULL DEFAULT 0,
    provider_message_id text,
    scheduled_for       timestamptz,
    sent_at             timestamptz,
    delivered_at        timestamptz,
    failed_at           timestamptz,
    created_at          timestamptz NOT NULL DEFAULT notify.now(),
    updated_at          timestamptz NOT NULL DEFAULT notify.now()
);
COMMENT ON TABLE notify.notification_deliveries IS 'the ledger: one row per notification per channel (per device for push)';
CREATE INDEX notification_deliveries_notification_idx ON notify.notification_deliveries (notification_id);
CREATE INDEX notification_deliveries_user_idx ON notify.notification_deliveries (user_id);
CREATE INDEX notification_deliveries_open_idx ON notify.notification_deliveries (channel, status)
    WHERE status IN ('pending', 'held', 'failed');

CREATE TABLE notify.notification_preferences (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id           uuid NOT NULL REFERENCES notify.recipients (user_id) ON DELETE CASCADE,
    notification_type text REFERENCES notify.notification_types (name) ON DELETE CASCADE,
    push_enabled      boolean NOT NULL DEFAULT true,
    email_enabled     boolean NOT NULL DEFAULT true,
    in_app_enabled    boolean NOT NULL DEFAULT true CHECK (in_app_enabled),
    digest_frequency  text CHECK (digest_frequency IN ('instant', 'daily', 'weekly', 'never')),
    digest_time       time,
    digest_day        integer CHECK (digest_day BETWEEN 1 AND 7),
    quiet_hours_start time,
    quiet_hours_end   time,
    quiet_hours_days  jsonb NOT NULL DEFAULT '[1,2,3,4,5]' CHECK (jsonb_typeof(quiet_hours_days) = 'array'),
    created_at        timestamptz NOT NULL DEFAULT notify.now(),
    updated_at        timestamptz NOT NULL DEFAULT notify.now(),
    UNIQUE NULLS NOT DISTINCT (user_id, notification_type)
);
COMMENT ON TABLE notify.notification_preferences IS 'per user, per type (NULL type: the user''s global switches)';

CREATE TABLE notify.org_notification_preferences (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id            uuid NOT NULL,
    notification_type text REFERENCES notify.notification_types (name) ON DELETE CASCADE,
    push_enabled      boolean,
    email_enabled     boolean,
    digest_frequency  text CHECK (digest_frequency IN ('instant', 'daily', 'weekly', 'never')),
    push_locked       boolean NOT NULL DEFAULT false,
    email_locked      boolean NOT NULL DEFAULT false,
    created_at        timestamptz NOT NULL DEFAULT notify.now(),
    updated_at        timestamptz NOT NULL DEFAULT notify.now(),
    UNIQUE NULLS NOT DISTINCT (org_id, notification_type)
);
COMMENT ON TABLE notify.org_notification_preferences IS 'an org''s defaults per type, and channels its admins lock on or off';

CREATE TABLE notify.notification_templates (
    id                     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name                   text NOT NULL CHECK (name ~ '^[a-z][a-z0-9_.-]{0,99}$'),
    type                   text NOT NULL REFERENCES notify.notification_types (name),
    language               text NOT NULL DEFAULT 'en' CHECK (language ~ '^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$'),
    version                integer NOT NULL DEFAULT 1 CHECK (version >= 1),
    title_template         text NOT NULL,
    body_template          text NOT NULL,
    push_title_template    text,
    push_body_template     text,
    email_subject_template text,
    email_html_template    text,
    email_text_template    text,
    default_priority       text NOT NULL DEFAULT 'normal'
                           CHECK (default_priority IN ('critical', 'high', 'normal', 'low')),
    default_channels       text[] NOT NULL DEFAULT ARRAY['in_app', 'push']
                           CHECK (default_channels <@ ARRAY['in_app', 'push', 'email']),
    variables              jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(variables) = 'object'),
    is_active              boolean NOT NULL DEFAULT true,
    created_at             timestamptz NOT NULL DEFAULT notify.now(),
    updated_at             timestamptz NOT NULL DEFAULT notify.now(),
    UNIQUE (name, language, version)
);
COMMENT ON TABLE notify.notification_templates IS 'Jinja2 templates per name, language and version, per channel';

CREATE TABLE notify.email_digests (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id          uuid NOT NULL REFERENCES notify.recipients (user_id) ON DELETE CASCADE,
    frequency        text NOT NULL CHECK (frequency IN ('daily', 'weekly')),
    period_start     timestamptz NOT NULL,
    scheduled_for    timestamptz NOT NULL,
    sent_at          timestamptz,
    notification_ids uuid[] NOT NULL DEFAULT '{}',
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed', 'skipped')),
    error_message    text,
    created_at       timestamptz NOT NULL DEFAULT notify.now(),
    UNIQUE (user_id, frequency, period_start)
);
COMMENT ON TABLE notify.email_digests IS 'one digest per user per period; the unique key makes it exactly one';
CREATE INDEX email_digests_scheduled_idx ON notify.email_digests (scheduled_for) WHERE status = 'pending';

CREATE TABLE notify.notification_analytics (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    notification_id   uuid REFERENCES notify.notifications (id) ON DELETE SET NULL,
    notification_type text NOT NULL,
    channel           text NOT NULL CHECK (channel IN ('in_app', 'push', 'email')),
    event             text NOT NULL
                      CHECK (event IN ('sent', 'delivered', 'opened', 'clicked', 'bounced', 'failed', 'complained')),
    user_id           uuid REFERENCES notify.recipients (user_id) ON DELETE SET NULL,
    org_id            uuid,
    device_id         uuid,
    metadata          jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    created_at        timestamptz NOT NULL DEFAULT notify.now()
);
COMMENT ON TABLE notify.notification_analytics IS 'delivery, open and click events per notification and channel';
CREATE INDEX notification_analytics_notification_idx ON notify.notification_analytics (notification_id);
CREATE INDEX notification_analytics_created_idx ON notify.notification_analytics (created_at);
CREATE INDEX notification_analytics_org_idx ON notify.notification_analytics (org_id, created_at);

CREATE TABLE notify.retention_policies (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    notification_type text REFERENCES notify.notification_types (name) ON DELETE CASCADE,
    max_age           interval NOT NULL CHECK (max_age > interval '0'),
    max_read_per_user integer CHECK (max_read_per_user >= 0),
    UNIQUE NULLS NOT DISTINCT (notification_type)
);
COMMENT ON TABLE notify.retention_policies IS 'how long notifications are kept, per type (NULL type: the default)';

INSERT INTO notify.retention_policies (notification_type, max_age, max_read_per_user) VALUES (NULL, '90 days', 1000);
