-- Notification history and its export (notifyd.rest.history_api); each runs as the caller, so RLS decides.

-- history --
-- The caller's history through notify.history: $1..$6 filters, $7/$8 the keyset cursor, $9 the row limit (NULL: all)
SELECT h.id, h.type, h.priority, h.title, h.body, h.data, h.status, h.read_at, h.created_at, h.expires_at,
       h.group_key, h.group_count, h.action_taken, h.action_taken_at, h.delivery_status
FROM notify.history(from_time => $1, to_time => $2, of_type => $3, read_status => $4, with_delivery_status => $5,
                    on_channel => $6, after_created_at => $7, after_id => $8, max_rows => $9) AS h
