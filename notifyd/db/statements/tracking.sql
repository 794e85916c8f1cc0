-- Tracking (notifyd.rest.tracking_api as notify_worker; the WebSocket ack in notifyd.realtime.session) and the analytics report.

-- record_tracked_event --
-- Records event $4 of delivery $1 (notification $2, user $3) once, metadata $5; NULL when the delivery is gone
SELECT notify_private.record_event($1, $2, $3, $4, $5::jsonb)

-- ws_ack --
-- Records that user $2's WebSocket client received notification $1 (in-app delivered) once; NULL if not theirs
SELECT notify_private.record_event(notify_private.in_app_delivery($1, $2), $1, $2, 'delivered',
                                   '{"source": "websocket"}')

-- analytics --
-- Delivery, open and click counts and rates from $1 to $2 per bucket $3, type and channel, as the caller sees them
SELECT * FROM notify.analytics($1, $2, $3)

-- take_push_action --
-- Takes action $3 of notification $2 as its user $1 (a service worker's action button); NULL when deleted
SELECT notify_private.take_action(user_id => $1, notification_id => $2, action => $3)
