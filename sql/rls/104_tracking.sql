-- Grants of tracking (after 010_reset dropped them all).

-- The tracking routes and the WebSocket ack record as notify_worker (notifyd.db.as_worker).
GRANT EXECUTE ON FUNCTION notify_private.record_event(uuid, uuid, uuid, text, jsonb),
    notify_private.in_app_delivery(uuid, uuid)
    TO notify_worker;
