-- VAPID keys: the key pairs Web Push subscriptions are made with, and their rotation.

CREATE OR REPLACE FUNCTION notify.current_vapid_key() RETURNS notify.vapid_keys
    LANGUAGE sql STABLE
    SET search_path = ''
AS $$
    SELECT k.* FROM notify.vapid_keys AS k WHERE k.retired_at IS NULL ORDER BY k.created_at DESC, k.id LIMIT 1
$$;
COMMENT ON FUNCTION notify.current_vapid_key() IS 'the VAPID key new subscribers get: the newest unretired one';

CREATE OR REPLACE FUNCTION notify.add_vapid_key(public_key text, private_key_encrypted text) RETURNS uuid
    LANGUAGE sql
    SET search_path = ''
AS $$
    WITH added AS (
        INSERT INTO notify.vapid_keys AS k (public_key, private_key_encrypted)
        VALUES (add_vapid_key.public_key, add_vapid_key.private_key_encrypted)
        ON CONFLICT (public_key) DO NOTHING
        RETURNING k.id
    )
    SELECT id FROM added
    UNION ALL
    SELECT k.id FROM notify.vapid_keys AS k WHERE k.public_key = add_vapid_key.public_key
    LIMIT 1
$$;
COMMENT ON FUNCTION notify.add_vapid_key(text, text)
    IS 'adds a VAPID key pair (private key encrypted by notifyd); it becomes the current key; the same key again is a no-op';

CREATE OR REPLACE FUNCTION notify.vapid_rotation_due() RETURNS boolean
    LANGUAGE sql STABLE
    SET search_path = ''
AS $$
    SELECT coalesce((SELECT k.created_at FROM notify.current_vapid_key() AS k)
                    <= notify.now() - (notify.setting('vapid.rotate_after') #>> '{}')::interval, true)
$$;
COMMENT ON FUNCTION notify.vapid_rotation_due() IS 'whether the current VAPID key is older than vapid.rotate_after (or there is none)';

CREATE OR REPLACE FUNCTION notify.retire_vapid_keys() RETURNS integer
    LANGUAGE sql
    SET search_path = ''
AS $$
    WITH retired AS (
        UPDATE notify.vapid_keys AS k SET retired_at = notify.now()
        WHERE k.retired_at IS NULL
          AND k.id IS DISTINCT FROM (SELECT c.id FROM notify.current_vapid_key() AS c)
          AND NOT EXISTS (SELECT 1 FROM notify.push_subscriptions AS s WHERE s.vapid_key_id = k.id AND s.is_active)
        RETURNING 1
    )
    SELECT pg_catalog.count(*)::integer FROM retired
$$;
COMMENT ON FUNCTION notify.retire_vapid_keys() IS 'retires every VAPID key but the current one that no active subscription uses';
