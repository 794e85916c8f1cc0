-- Who is calling and which policy values are in force: the inputs of every RLS policy and function.

CREATE OR REPLACE FUNCTION notify.current_claims() RETURNS jsonb
    LANGUAGE sql STABLE
    SET search_path = ''
AS $$
    SELECT coalesce(nullif(pg_catalog.current_setting('request.jwt.claims', true), '')::jsonb, '{}'::jsonb)
$$;
COMMENT ON FUNCTION notify.current_claims() IS 'the caller''s JWT claims from request.jwt.claims (PostgREST convention), {} when unset';

CREATE OR REPLACE FUNCTION notify.current_user_id() RETURNS uuid
    LANGUAGE sql STABLE
    SET search_path = ''
AS $$
    -- A service's sub is any name: only a uuid-shaped sub is an end user.
    SELECT CASE WHEN c.sub ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                THEN c.sub::uuid END
    FROM (SELECT notify.current_claims() ->> 'sub' AS sub) AS c
$$;
COMMENT ON FUNCTION notify.current_user_id() IS 'the end user making the request: the sub claim as uuid, NULL if none';

CREATE OR REPLACE FUNCTION notify.current_org_id() RETURNS uuid
    LANGUAGE sql STABLE
    SET search_path = ''
AS $$
    SELECT CASE WHEN c.org ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                THEN c.org::uuid END
    FROM (SELECT notify.current_claims() ->> 'org_id' AS org) AS c
$$;
COMMENT ON FUNCTION notify.current_org_id() IS 'the org_id claim as uuid; NULL for a DBA, whose admin rights span every org';

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
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'the types are the rows of notify.notification_types; a DBA adds new ones there';
    END IF;
    RETURN require_type.type;
END
$$;
COMMENT ON FUNCTION notify.require_type(text) IS 'the type if it is a row of notify.notification_types, else a clear error';
