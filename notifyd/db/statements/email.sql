-- The unsubscribe pages and the Resend webhook (notifyd.rest.email_api); each runs as notify_worker.

-- unsubscribe_target --
-- What an unsubscribe token names: the type's description and whether its e-mail is on; no row if the user or type is gone
SELECT t.description,
       coalesce(p.email_enabled, true) AS email_enabled
FROM notify.notification_types AS t
JOIN notify.recipients AS r ON r.user_id = $1
LEFT JOIN notify.notification_preferences AS p ON p.user_id = r.user_id AND p.notification_type = t.name
WHERE t.name = $2

-- unsubscribe_email --
-- Turns e-mail of type $2 off for user $1
SELECT notify.unsubscribe_email($1, $2)

-- record_email_event --
-- Applies a Resend event (provider message id, event, svix-id, detail) once; false if redelivered or for no delivery of ours
SELECT notify.record_email_event($1, $2, $3, $4::jsonb)

-- digest_unsubscribe_target --
-- What a digest-level unsubscribe token names: whether the user's digests are off already; no row if the user is gone
SELECT coalesce(g.digest_frequency = 'never', false) AS digests_off
FROM notify.recipients AS r
LEFT JOIN notify.notification_preferences AS g ON g.user_id = r.user_id AND g.notification_type IS NULL
WHERE r.user_id = $1

-- unsubscribe_digests --
-- No more digest e-mails for user $1
SELECT notify.unsubscribe_digests($1)
