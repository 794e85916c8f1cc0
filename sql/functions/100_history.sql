-- Notification history: the caller's notifications with read status and delivery status per
-- channel, filtered by creation time, type, read status and delivery status, newest first, by keyset.
--
-- The rules:
--   * History is what the notification center would show over all time: the rows of notify.inbox. RLS
--     and the user_id = current_user_id() condition keep it to the caller's own rows.
--   * from_time is inclusive, to_time exclusive (so consecutive ranges never count a row twice).
--   * read_status is 'read' or 'unread'. with_delivery_status is a delivery status (pending, held, sent,
--     delivered, failed, bounced, skipped, suppressed, cancelled) that the notification shows on some
--     channel, or on on_channel when given; on_channel alone: notifications with a delivery on it. A
--     channel shows its furthest-along delivery (notify.delivery_status), so a push that reached one of
--     two devices is 'sent', not 'failed'.
--   * (after_created_at, after_id) is the last row of the previous page; max_rows NULL means all rows.
--   * notify.history is plain SQL without SET options so that PostgreSQL inlines it into the caller's
--     query: a page (or an export batch) after a keyset starts there in the (user_id, created_at, id) index
--     and stops at max_rows instead of computing the whole history first.

CREATE OR REPLACE FUNCTION notify.check_history_filters(
    from_time timestamptz, to_time timestamptz, read_status text, with_delivery_status text, on_channel text,
    max_rows integer
) RETURNS boolean
    LANGUAGE plpgsql IMMUTABLE
    SET search_path = ''
AS $$
BEGIN
    IF from_time >= to_time THEN
        RAISE EXCEPTION 'from must be before to' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF read_status NOT IN ('read', 'unread') THEN
        RAISE EXCEPTION 'status must be read or unread' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF with_delivery_status NOT IN ('pending', 'held', 'sent', 'delivered', 'failed', 'bounced', 'skipped',
                                    'suppressed', 'cancelled') THEN
        RAISE EXCEPTION 'delivery_status must be pending, held, sent, delivered, failed, bounced, skipped, '
                        'suppressed or cancelled' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT on_channel = ANY (notify.channels()) THEN
        RAISE EXCEPTION 'channel must be one of %', pg_catalog.array_to_string(notify.channels(), ', ')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF max_rows < 1 THEN
        RAISE EXCEPTION 'max_rows must be at least 1' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN true;
END
$$;
COMMENT ON FUNCTION notify.check_history_filters(timestamptz, timestamptz, text, text, text, integer)
    IS 'true when notify.history''s filters make sense; otherwise raises 22023 naming the bad one';

CREATE OR REPLACE FUNCTION notify.history(
    from_time timestamptz DEFAULT NULL,
    to_time timestamptz DEFAULT NULL,
    of_type text DEFAULT NULL,
    read_status text DEFAULT NULL,
    with_delivery_status text DEFAULT NULL,
    on_channel text DEFAULT NULL,
    after_created_at timestamptz DEFAULT NULL,
    after_id uuid DEFAULT NULL,
    max_rows integer DEFAULT NULL
) RETURNS TABLE (
    id uuid, type text, priority text, title text, body text, data jsonb, status text, read_at timestamptz,
    created_at timestamptz, expires_at timestamptz, group_key text, group_count integer, action_taken text,
    action_taken_at timestamptz, delivery_status jsonb
)
    LANGUAGE sql STABLE
AS $$
    SELECT n.id, n.type, n.priority, n.title, n.body, n.data,
           CASE WHEN n.read_at IS NULL THEN 'unread' ELSE 'read' END,
           n.read_at, n.created_at, n.expires_at, n.group_key, n.group_count, n.action_taken, n.action_taken_at,
           notify.delivery_status(n.id)
    FROM notify.inbox AS n
    WHERE notify.check_history_filters(history.from_time, history.to_time, history.read_status,
                                       history.with_delivery_status, history.on_channel, history.max_rows)
      AND n.user_id = notify.current_user_id()
      AND (history.from_time IS NULL OR n.created_at >= history.from_time)
      AND (history.to_time IS NULL OR n.created_at < history.to_time)
      AND (history.of_type IS NULL OR n.type = history.of_type)
      AND (history.read_status IS NULL OR (n.read_at IS NULL) = (history.read_status = 'unread'))
      AND (history.with_delivery_status IS NULL AND history.on_channel IS NULL
           OR EXISTS (SELECT 1 FROM pg_catalog.jsonb_each_text(notify.delivery_status(n.id)) AS s(channel, status)
                      WHERE (history.on_channel IS NULL OR s.channel = history.on_channel)
                        AND (history.with_delivery_status IS NULL OR s.status = history.with_delivery_status)))
      AND (history.after_id IS NULL OR (n.created_at, n.id) < (history.after_created_at, history.after_id))
    ORDER BY n.created_at DESC, n.id DESC
    LIMIT history.max_rows
$$;
COMMENT ON FUNCTION notify.history(timestamptz, timestamptz, text, text, text, text, timestamptz, uuid, integer)
    IS 'the caller''s notification history, newest first, with read status and delivery status per channel';
