-- Grants of the delivery ledger (after 010_reset dropped them all).

GRANT EXECUTE ON FUNCTION notify_private.claim_deliveries(uuid[]), notify_private.record_outcomes(jsonb)
    TO notify_worker;
GRANT EXECUTE ON FUNCTION notify.retry_delivery(uuid) TO notify_admin;
-- The one retry, for notify.retry_delivery and an endpoint owner's replay (both owned by notify_definer).
GRANT EXECUTE ON FUNCTION notify_private.retry_delivery(uuid) TO notify_definer;
GRANT SELECT ON notify.dead_letters, notify.delivery_counts TO notify_admin, notify_worker, notify_service;
-- As the caller (security_invoker): each reads the deliveries and notifications its policies show it.
GRANT SELECT ON notify.delivery_decisions
    TO notify_authenticated, notify_service, notify_admin, notify_worker, notify_definer;
GRANT SELECT ON notify.queue_depth TO notify_admin, notify_worker;
GRANT EXECUTE ON FUNCTION notify.delivery_status(uuid), notify.delivery_statuses(uuid[]), notify.delivery_decisions_of(uuid[]),
    notify.delivery_rank(text)
    TO notify_authenticated, notify_service, notify_admin, notify_worker;
GRANT EXECUTE ON FUNCTION notify.channels()
    TO notify_authenticated, notify_service, notify_admin, notify_worker, notify_definer;
