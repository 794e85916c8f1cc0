-- Push devices over REST (notifyd.rest.push_api): saved, listed and removed as the caller, so RLS decides.

-- vapid_key_for_subscribers --
-- The unretired VAPID key with public key $1, or the current key when $1 is NULL (run as notify_worker)
SELECT k.id, k.public_key
FROM notify.vapid_keys AS k
WHERE k.retired_at IS NULL
  AND CASE WHEN $1::text IS NULL THEN k.id = (SELECT c.id FROM notify.current_vapid_key() AS c)
           ELSE k.public_key = $1::text END

-- save_push_subscription --
-- Saves the caller's device (keys and token encrypted by notifyd); the same device again moves to the caller
SELECT s.id, s.user_id, s.kind, s.is_active, s.created_at, s.device_info
FROM notify.save_push_subscription(kind => $1, endpoint => $2, p256dh_key => $3, auth_key => $4, fcm_token => $5,
                                   token_hash => $6, vapid_key_id => $7, device_info => $8) AS s

-- delete_push_subscription --
-- Removes one of the caller's devices, by id ($1) or by endpoint hash ($2); RLS leaves others' devices out
DELETE FROM notify.push_subscriptions AS s
WHERE s.id = $1::uuid OR s.token_hash = $2::bytea
RETURNING s.id, s.kind

-- list_push_subscriptions --
-- The caller's devices, newest first; of a Web Push endpoint only its origin (scheme://host[:port])
SELECT s.id, s.kind, s.is_active, s.device_info, s.created_at, s.last_used_at, s.failure_count,
       s.deactivated_reason,
       substring(s.endpoint FROM '^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]+') AS endpoint_origin
FROM notify.push_subscriptions AS s  -- RLS: the caller's own
ORDER BY s.created_at DESC, s.id

-- move_push_subscription --
-- Moves live Web Push device $1 of user $2, still at endpoint hash $3, to a new endpoint; NULL when gone (as notify_worker)
SELECT notify_private.move_push_subscription(id => $1, user_id => $2, old_token_hash => $3, endpoint => $4,
                                            p256dh_key => $5, auth_key => $6, token_hash => $7, vapid_key_id => $8)
