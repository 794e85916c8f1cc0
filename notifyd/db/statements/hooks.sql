-- Webhook endpoints and chat connections over REST (notifyd.rest.hooks_api): as the caller, so RLS and the
-- functions' owner checks decide.

-- add_webhook_endpoint --
-- Registers a webhook endpoint for the caller's own notifications (secret encrypted by notifyd)
SELECT e.id, e.user_id, e.org_id, e.url, e.description, e.types, e.is_active, e.deactivated_reason,
       e.failing_since, e.last_success_at, e.previous_secret_until, e.created_at
FROM notify.add_webhook_endpoint_v1(url => $1, secret_encrypted => $2, description => $3, types => $4) AS e

-- add_org_webhook_endpoint --
-- An org admin registers a webhook endpoint for every user of their org
SELECT e.id, e.user_id, e.org_id, e.url, e.description, e.types, e.is_active, e.deactivated_reason,
       e.failing_since, e.last_success_at, e.previous_secret_until, e.created_at
FROM notify.add_org_webhook_endpoint_v1(url => $1, secret_encrypted => $2, description => $3, types => $4) AS e

-- list_webhook_endpoints --
-- The caller's endpoints (and an admin's org endpoints), newest first; never a secret
SELECT e.id, e.user_id, e.org_id, e.url, e.description, e.types, e.is_active, e.deactivated_reason,
       e.failing_since, e.last_success_at, e.previous_secret_until, e.created_at
FROM notify.webhook_endpoints AS e  -- RLS: the caller's own, an admin's org
ORDER BY e.created_at DESC, e.id

-- rotate_webhook_secret --
-- Gives the caller's endpoint $1 a new secret $2; the old one also signs until the time returned
SELECT notify.rotate_webhook_secret_v1(endpoint_id => $1, secret_encrypted => $2)

-- enable_webhook_endpoint --
-- Turns the caller's disabled endpoint back on
SELECT notify.enable_webhook_endpoint_v1(endpoint_id => $1)

-- remove_webhook_endpoint --
-- Removes one of the caller's endpoints
SELECT notify.remove_webhook_endpoint_v1(endpoint_id => $1)

-- webhook_deliveries --
-- The delivery log of the caller's endpoint $1, newest first, at most $2 rows
SELECT delivery_id AS id, notification_id, user_id, status, attempts, repeats, reason, error_message, sent_at,
       failed_at, created_at
FROM notify.webhook_deliveries_v1(endpoint_id => $1, max_rows => $2)

-- replay_webhook_delivery --
-- Sends failed delivery $2 of the caller's endpoint $1 again; the dispatcher job's id
SELECT notify.replay_webhook_delivery_v1(endpoint_id => $1, delivery_id => $2)

-- add_chat_connection --
-- Connects a Slack, Teams or Discord incoming webhook to the caller's own notifications (URL encrypted by notifyd)
SELECT c.id, c.user_id, c.org_id, c.platform, c.label, c.types, c.is_active, c.deactivated_reason, c.created_at
FROM notify.add_chat_connection_v1(platform => $1, url_encrypted => $2, label => $3, types => $4) AS c

-- add_org_chat_connection --
-- An org admin connects an org channel that gets the notifications of every user of their org
SELECT c.id, c.user_id, c.org_id, c.platform, c.label, c.types, c.is_active, c.deactivated_reason, c.created_at
FROM notify.add_org_chat_connection_v1(platform => $1, url_encrypted => $2, label => $3, types => $4) AS c

-- list_chat_connections --
-- The caller's chat connections (and an admin's org channels), newest first; never a URL
SELECT c.id, c.user_id, c.org_id, c.platform, c.label, c.types, c.is_active, c.deactivated_reason, c.created_at
FROM notify.chat_connections AS c  -- RLS: the caller's own, an admin's org
ORDER BY c.created_at DESC, c.id

-- remove_chat_connection --
-- Removes one of the caller's chat connections
SELECT notify.remove_chat_connection_v1(connection_id => $1)
