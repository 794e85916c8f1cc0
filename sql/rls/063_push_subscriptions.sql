-- Grants of push subscriptions (after 010_reset dropped them all).

GRANT EXECUTE ON FUNCTION notify.save_push_subscription(text, text, text, text, text, bytea, uuid, jsonb)
    TO notify_authenticated;
-- POST push/resubscribe has no user: notifyd moves the device its subscription token names.
GRANT EXECUTE ON FUNCTION notify_private.move_push_subscription(uuid, uuid, bytea, text, text, text, bytea, uuid)
    TO notify_worker;
