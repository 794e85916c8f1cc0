-- Circuit breakers per provider (notify_private.provider_circuits): where new e-mail goes, and what providers answered.
--
-- closed: the provider takes new attempts. `circuit.failures_to_open` timeouts or 5xx answers in a row open
-- it: new attempts go to the fallback. `circuit.probe_after` later one caller's batch probes the provider
-- (half_open); its success closes the circuit, a failure opens it again. An attempt that timed out stays
-- with its provider whatever the circuit says (the ledger's provider column pins it): the provider may have
-- taken it, and only its idempotency key keeps a retry from sending it twice.

CREATE OR REPLACE FUNCTION notify_private.circuit_route(main text, fallback text) RETURNS text
    LANGUAGE plpgsql
    SET search_path = ''
AS $$
DECLARE
    wait constant interval := (notify.setting('circuit.probe_after') #>> '{}')::interval;
    probing boolean;
    current_state text;
BEGIN
    -- One caller per probe_after gets the probe; a probe whose answer never came is followed by another.
    UPDATE notify_private.provider_circuits AS c SET state = 'half_open', probe_at = pg_catalog.now(), updated_at = pg_catalog.now()
    WHERE c.provider = circuit_route.main
      AND ((c.state = 'open' AND c.opened_at + wait <= pg_catalog.now())
           OR (c.state = 'half_open' AND c.probe_at + wait <= pg_catalog.now()))
    RETURNING true INTO probing;
    IF probing THEN
        RETURN circuit_route.main;
    END IF;
    SELECT c.state INTO current_state FROM notify_private.provider_circuits AS c WHERE c.provider = circuit_route.main;
    RETURN CASE WHEN coalesce(current_state, 'closed') = 'closed' THEN circuit_route.main ELSE circuit_route.fallback END;
END
$$;
COMMENT ON FUNCTION notify_private.circuit_route(text, text)
    IS 'the provider new attempts use now: main while its circuit is closed (or for the one half-open probe), else fallback';

CREATE OR REPLACE FUNCTION notify_private.circuit_record(provider text, successes integer, timeouts integer,
                                                         server_errors integer) RETURNS text
    LANGUAGE plpgsql
    SET search_path = ''
AS $$
DECLARE
    threshold constant integer := notify.setting('circuit.failures_to_open')::integer;
    failed constant integer := circuit_record.timeouts + circuit_record.server_errors;
    new_state text;
BEGIN
    INSERT INTO notify_private.provider_circuits AS c (provider) VALUES (circuit_record.provider)
    ON CONFLICT ON CONSTRAINT provider_circuits_pkey DO NOTHING;
    UPDATE notify_private.provider_circuits AS c
    SET state = CASE WHEN failed > 0 AND (c.state <> 'closed' OR c.failures + failed >= threshold) THEN 'open'
                     WHEN failed = 0 AND circuit_record.successes > 0 THEN 'closed'
                     ELSE c.state END,
        opened_at = CASE WHEN failed > 0 AND (c.state <> 'closed' OR c.failures + failed >= threshold)
                         THEN pg_catalog.now() ELSE c.opened_at END,
        failures = CASE WHEN failed = 0 AND circuit_record.successes > 0 THEN 0 ELSE c.failures + failed END,
        timeouts = c.timeouts + circuit_record.timeouts,
        server_errors = c.server_errors + circuit_record.server_errors,
        updated_at = pg_catalog.now()
    WHERE c.provider = circuit_record.provider
    RETURNING c.state INTO new_state;
    RETURN new_state;
END
$$;
COMMENT ON FUNCTION notify_private.circuit_record(text, integer, integer, integer)
    IS 'records a batch''s answers from a provider (successes, timeouts, 5xx) and moves its circuit; returns its state';

CREATE OR REPLACE FUNCTION notify.provider_circuits() RETURNS jsonb
    LANGUAGE sql STABLE
    SECURITY DEFINER
    SET search_path = ''
AS $$
    SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'provider', c.provider, 'state', c.state, 'failures', c.failures, 'opened_at', c.opened_at,
               'timeouts', c.timeouts, 'server_errors', c.server_errors) ORDER BY c.provider), '[]'::jsonb)
    FROM notify_private.provider_circuits AS c
$$;
ALTER FUNCTION notify.provider_circuits() OWNER TO notify_definer;
COMMENT ON FUNCTION notify.provider_circuits()
    IS 'each provider''s circuit (closed, open, half_open), failures in a row, and its error counters';
