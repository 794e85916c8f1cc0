-- Grants of the providers' circuit breakers (after 010_reset dropped them all).

GRANT SELECT, INSERT, UPDATE ON notify_private.provider_circuits TO notify_worker;
GRANT SELECT ON notify_private.provider_circuits TO notify_definer;
GRANT EXECUTE ON FUNCTION notify_private.circuit_route(text, text), notify_private.circuit_record(text, integer, integer, integer)
    TO notify_worker;
-- notify.explain shows the circuits to whoever may explain a notification: states, no personal data.
GRANT EXECUTE ON FUNCTION notify.provider_circuits()
    TO notify_service, notify_authenticated, notify_admin, notify_worker;
