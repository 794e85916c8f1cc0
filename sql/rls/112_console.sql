-- Grants of the console's dead-letter batches (after 010_reset dropped them all).

GRANT EXECUTE ON FUNCTION notify.retry_deliveries(uuid[]), notify.discard_deliveries(uuid[]) TO notify_admin;
-- The batch runs as its owner, which hands each delivery to the one-at-a-time retry.
GRANT EXECUTE ON FUNCTION notify.retry_delivery(uuid) TO notify_definer;
