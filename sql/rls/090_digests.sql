-- Grants of digests (after 010_reset dropped them all); email_digests' own policies are in 030_policies.

GRANT EXECUTE ON FUNCTION notify_private.digest_period(text, text, time, integer, timestamptz),
    notify_private.due_digests(timestamptz, integer),
    notify_private.claim_digest(uuid, text, timestamptz, timestamptz),
    notify_private.claim_due_digests(timestamptz, integer),
    notify_private.start_digest(uuid),
    notify_private.finish_digest(uuid, text, text, text, text)
    TO notify_worker;
-- claim_digest defers the digest's sending job in the claiming transaction.
GRANT EXECUTE ON FUNCTION notify_private.defer_jobs(jsonb) TO notify_worker;

GRANT SELECT ON notify.last_digests TO notify_authenticated, notify_admin, notify_worker;
-- The digest's one-click unsubscribe (notifyd.email_api, as notify_worker); admins may do it for a user.
GRANT EXECUTE ON FUNCTION notify.unsubscribe_digests(uuid) TO notify_worker, notify_admin;
