-- Who is calling and which policy values are in force: the inputs of every RLS policy and function.

-- The one list of channels: checks, orders and messages read it (Python's Channel in notifyd/core/models.py and
-- the console's CHANNELS spell the same list; tests/test_catalog.py holds them and every channel CHECK to it).
CREATE OR REPLACE FUNCTION notify.channels() RETURNS text[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT ARRAY['in_app', 'push', 'email', 'webhook', 'chat', 'sms']
$$;
COMMENT ON FUNCTION notify.channels() IS 'every delivery channel, in the order lists, summaries and messages show them';

CREATE OR REPLACE FUNCTION notify.current_claims() RETURNS jsonb
    LANGUAGE sql STABLE
    SET search_path = ''
AS $$
    SELECT coalesce(nullif(pg_catalog.current_setting('request.jwt.claims', true), '')::jsonb, '{}'::jsonb)
$$;
COMMENT ON FUNCTION notify.current_claims() IS 'the caller''s JWT claims from request.jwt.claims (PostgREST convention), {} when unset';

-- A claim that is present but malformed is an error, never NULL: NULL means "no such caller" to the
-- policies, and for org_id it means a DBA, whose rights span every org. The one accepted uuid form is
-- 8-4-4-4-12 hex digits in either case, as notifyd's own check (notifyd/auth.py) reads it.
CREATE OR REPLACE FUNCTION notify.current_user_id() RETURNS uuid
    LANGUAGE plpgsql STABLE
    SET search_path = ''
AS $$
DECLARE
    claims jsonb := notify.current_claims();
    sub jsonb := claims -> 'sub';
BEGIN
    IF sub IS NULL THEN
        RETURN NULL;
    END IF;
    IF pg_catalog.jsonb_typeof(sub) <> 'string' THEN
        RAISE EXCEPTION 'the sub claim of request.jwt.claims must be a string'
            USING ERRCODE = 'invalid_authorization_specification';
    END IF;
    IF (sub #>> '{}') ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
        RETURN (sub #>> '{}')::uuid;
    END IF;
    -- A service's or a DBA's sub is a name; a user's is their uuid.
    IF claims ->> 'role' = 'authenticated' OR pg_catalog.current_setting('role') = 'notify_authenticated' THEN
        RAISE EXCEPTION 'the sub claim of a user token must be a uuid (8-4-4-4-12 hex digits)'
            USING ERRCODE = 'invalid_authorization_specification';
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION notify.current_user_id()
    IS 'the end user making the request: the sub claim as uuid, NULL if absent or a name; a malformed sub is an error (28000)';

CREATE OR REPLACE FUNCTION notify.current_org_id() RETURNS uuid
    LANGUAGE plpgsql STABLE
    SET search_path = ''
AS $$
DECLARE
    org jsonb := notify.current_claims() -> 'org_id';
BEGIN
    IF org IS NULL THEN
        RETURN NULL;
    END IF;
    IF pg_catalog.jsonb_typeof(org) = 'string'
       AND (org #>> '{}') ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
        RETURN (org #>> '{}')::uuid;
    END IF;
    RAISE EXCEPTION 'the org_id claim must be a uuid string (8-4-4-4-12 hex digits); only a DBA''s token omits it'
        USING ERRCODE = 'invalid_authorization_specification',
              HINT = 'a malformed org_id is refused, never read as absent: absent means a DBA, whose admin rights span every org';
END
$$;
COMMENT ON FUNCTION notify.current_org_id()
    IS 'the org_id claim as uuid; NULL (absent) for a DBA, whose admin rights span every org; a malformed org_id is an error (28000)';

CREATE OR REPLACE FUNCTION notify.setting(key text) RETURNS jsonb
    LANGUAGE plpgsql STABLE
    SET search_path = ''
AS $$
DECLARE
    setting_value jsonb;
BEGIN
    SELECT s.value INTO setting_value FROM notify.settings AS s WHERE s.key = setting.key;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown setting "%"', setting.key
            USING ERRCODE = 'invalid_parameter_value', HINT = 'the settings are the rows of notify.settings';
    END IF;
    RETURN setting_value;
END
$$;
COMMENT ON FUNCTION notify.setting(text) IS 'a policy value from notify.settings; an unknown key is an error, never NULL';

-- Replaces 0001's definition (functions are re-applied on every migrate). No SET clause and no
-- subquery (the settings table is read through notify.setting, only when a session pinned the clock),
-- so PostgreSQL inlines it: every send reads the clock a dozen times (column defaults, triggers, the
-- planner), and a SQL function that is not inlined is parsed and planned anew at each call.
CREATE OR REPLACE FUNCTION notify.now() RETURNS timestamptz
    LANGUAGE sql STABLE
AS $$
    SELECT CASE
        WHEN coalesce(pg_catalog.current_setting('notify.clock', true), '') = '' THEN pg_catalog.now()
        WHEN notify.setting('clock.pinnable') = 'true'::jsonb THEN pg_catalog.current_setting('notify.clock')::timestamptz
        ELSE pg_catalog.now()
    END
$$;
COMMENT ON FUNCTION notify.now() IS 'the current time of notifyd: now(), or notify.clock when clock.pinnable is on';

-- No SET clause: PostgreSQL inlines this into the policies that use it (names are qualified).
CREATE OR REPLACE FUNCTION notify.in_admin_scope(user_id uuid) RETURNS boolean
    LANGUAGE sql STABLE
AS $$
    SELECT notify.current_org_id() IS NULL
        OR EXISTS (SELECT 1 FROM notify.recipients AS r
                   WHERE r.user_id = in_admin_scope.user_id AND r.org_id = notify.current_org_id())
$$;
COMMENT ON FUNCTION notify.in_admin_scope(uuid) IS 'whether the calling admin may see this user: a DBA sees all, an org admin their org';

CREATE OR REPLACE FUNCTION notify.require_type(type text) RETURNS text
    LANGUAGE plpgsql STABLE
    SET search_path = ''
AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM notify.notification_types AS t WHERE t.name = require_type.type) THEN
        RAISE EXCEPTION 'unknown notification type "%"', require_type.type
            USING ERRCODE = 'invalid_parameter_value', COLUMN = 'type',
                  HINT = 'the types are the rows of notify.notification_types; a DBA adds new ones there';
    END IF;
    RETURN require_type.type;
END
$$;
COMMENT ON FUNCTION notify.require_type(text) IS 'the type if it is a row of notify.notification_types, else a clear error';
