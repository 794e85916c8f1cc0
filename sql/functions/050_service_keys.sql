-- Service keys: how a service authenticates, made and revoked by a DBA, checked by notifyd (callable from SQL alone).

CREATE OR REPLACE FUNCTION notify.create_service_key(name text) RETURNS text
    LANGUAGE plpgsql
    SET search_path = ''
AS $$
DECLARE
    -- Two v4 uuids from the CSPRNG behind gen_random_uuid(): 244 random bits.
    new_key constant text := 'nsk_' || pg_catalog.replace(pg_catalog.gen_random_uuid()::text, '-', '')
                                     || pg_catalog.replace(pg_catalog.gen_random_uuid()::text, '-', '');
BEGIN
    IF notify.current_org_id() IS NOT NULL THEN
        RAISE EXCEPTION 'only a DBA (an admin without an org_id claim) manages service keys'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    INSERT INTO notify.service_keys AS k (name, key_hash)
    VALUES (create_service_key.name, pg_catalog.sha256(pg_catalog.convert_to(new_key, 'UTF8')))
    ON CONFLICT ON CONSTRAINT service_keys_pkey DO UPDATE
        SET key_hash = EXCLUDED.key_hash, created_at = notify.now(), revoked_at = NULL;
    RETURN new_key;
END
$$;
COMMENT ON FUNCTION notify.create_service_key(text)
    IS 'creates (or rotates) the key of a service and returns it, once; only its sha256 is stored';

CREATE OR REPLACE FUNCTION notify.revoke_service_key(name text) RETURNS boolean
    LANGUAGE plpgsql
    SET search_path = ''
AS $$
BEGIN
    IF notify.current_org_id() IS NOT NULL THEN
        RAISE EXCEPTION 'only a DBA (an admin without an org_id claim) manages service keys'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    UPDATE notify.service_keys AS k SET revoked_at = notify.now()
    WHERE k.name = revoke_service_key.name AND k.revoked_at IS NULL;
    RETURN FOUND;
END
$$;
COMMENT ON FUNCTION notify.revoke_service_key(text)
    IS 'revokes a service''s key at once; false if it had no live key';

CREATE OR REPLACE FUNCTION notify.check_service_key(name text, key text) RETURNS boolean
    LANGUAGE sql STABLE
    SECURITY DEFINER
    SET search_path = ''
AS $$
    SELECT EXISTS (
        SELECT 1 FROM notify.service_keys AS k
        WHERE k.name = check_service_key.name AND k.revoked_at IS NULL
          AND k.key_hash = pg_catalog.sha256(pg_catalog.convert_to(check_service_key.key, 'UTF8')))
$$;
ALTER FUNCTION notify.check_service_key(text, text) OWNER TO notify_definer;
COMMENT ON FUNCTION notify.check_service_key(text, text)
    IS 'whether key is the live key of the named service (notifyd asks before it knows the caller)';

-- Guessing is bounded per client address: after max_failures wrong keys in the window that began with the
-- first of them, every attempt from that address is refused until the window ends, a right key too (else its
-- answer would still tell a guess right from wrong). A right key writes nothing: the success path only reads.
CREATE OR REPLACE FUNCTION notify.authenticate_service(
    name text, key text, client text, max_failures integer, failure_window interval,
    OUT valid boolean, OUT retry_after integer)
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = ''
AS $$
DECLARE
    at constant timestamptz := notify.now();
    window_ends timestamptz;
BEGIN
    SELECT f.window_started_at + authenticate_service.failure_window INTO window_ends
    FROM notify_private.service_key_failures AS f
    WHERE f.client = authenticate_service.client AND f.failures >= authenticate_service.max_failures
      AND f.window_started_at + authenticate_service.failure_window > at;
    IF FOUND THEN
        valid := false;
        retry_after := greatest(1, ceil(extract(epoch FROM window_ends - at)))::integer;
        RETURN;
    END IF;
    valid := notify.check_service_key(authenticate_service.name, authenticate_service.key);
    IF valid THEN
        RETURN;
    END IF;
    INSERT INTO notify_private.service_key_failures AS f (client, window_started_at, failures)
    VALUES (authenticate_service.client, at, 1)
    ON CONFLICT ON CONSTRAINT service_key_failures_pkey DO UPDATE SET
        failures = CASE WHEN f.window_started_at + authenticate_service.failure_window <= at THEN 1
                        ELSE f.failures + 1 END,
        window_started_at = CASE WHEN f.window_started_at + authenticate_service.failure_window <= at THEN at
                                 ELSE f.window_started_at END;
    -- Forget the windows that ended (the table holds the addresses of one window). SKIP LOCKED: another
    -- attempt may be counting one of them, and waiting for it could deadlock.
    DELETE FROM notify_private.service_key_failures AS f
    WHERE f.client IN (SELECT o.client FROM notify_private.service_key_failures AS o
                       WHERE o.window_started_at <= at - authenticate_service.failure_window
                       FOR UPDATE SKIP LOCKED);
END
$$;
ALTER FUNCTION notify.authenticate_service(text, text, text, integer, interval) OWNER TO notify_definer;
COMMENT ON FUNCTION notify.authenticate_service(text, text, text, integer, interval)
    IS 'checks a service key for notifyd, counting wrong ones per client address: retry_after set while it is refused';
