-- Action buttons: a user pressing one of the actions their notification offers.

-- The REST route acts for the caller (notify.take_action); the service worker's action buttons
-- (notifyd.tracking_api, as notify_worker) for the user its receipt token names.
CREATE OR REPLACE FUNCTION notify_private.take_action(user_id uuid, notification_id uuid, action text) RETURNS jsonb
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = ''
AS $$
DECLARE
    target record;
    offered jsonb;
    recorded notify.notification_actions;
BEGIN
    -- The user's own, live notification only: definer rights never widen what a user sees.
    SELECT n.id, n.user_id, n.type, n.data, n.batch_id INTO target
    FROM notify.notifications AS n
    WHERE n.id = take_action.notification_id AND n.created_at >= notify_private.created_from(take_action.notification_id) AND n.created_at < notify_private.created_before(take_action.notification_id) AND n.user_id = take_action.user_id
      AND n.deleted_at IS NULL
    FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    offered := target.data -> 'actions';
    IF jsonb_typeof(offered) = 'array'
       AND EXISTS (SELECT 1 FROM jsonb_array_elements(offered) AS a(item)
                   WHERE jsonb_typeof(a.item) = 'object' AND a.item ? 'action')
       AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(offered) AS a(item)
                       WHERE jsonb_typeof(a.item) = 'object' AND a.item ->> 'action' = take_action.action) THEN
        RAISE EXCEPTION 'notification % offers no action "%"', target.id, take_action.action
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'the actions a notification offers are the "action" fields of its data.actions';
    END IF;
    INSERT INTO notify.notification_actions AS a (notification_id, user_id, type, action, batch_id)
    VALUES (target.id, target.user_id, target.type, take_action.action, target.batch_id)
    RETURNING a.* INTO recorded;
    UPDATE notify.notifications AS n
    SET action_taken = recorded.action, action_taken_at = recorded.taken_at
    WHERE n.id = target.id AND n.created_at >= notify_private.created_from(target.id) AND n.created_at < notify_private.created_before(target.id);
    PERFORM pg_catalog.pg_notify('notify_actions', recorded.id::text);
    RETURN jsonb_build_object('id', recorded.id, 'notification_id', recorded.notification_id,
                              'action', recorded.action, 'taken_at', recorded.taken_at);
END
$$;
ALTER FUNCTION notify_private.take_action(uuid, uuid, text) OWNER TO notify_definer;
COMMENT ON FUNCTION notify_private.take_action(uuid, uuid, text)
    IS 'records that a user pressed an action button of their own live notification: notification_actions row, action_taken, NOTIFY notify_actions';

CREATE OR REPLACE FUNCTION notify.take_action(notification_id uuid, action text) RETURNS jsonb
    LANGUAGE sql
    SECURITY DEFINER
    SET search_path = ''
AS $$
    SELECT notify_private.take_action(notify.current_user_id(), take_action.notification_id, take_action.action)
$$;
ALTER FUNCTION notify.take_action(uuid, text) OWNER TO notify_definer;
COMMENT ON FUNCTION notify.take_action(uuid, text)
    IS 'records that the caller pressed an action button: notification_actions row, action_taken, NOTIFY notify_actions';
