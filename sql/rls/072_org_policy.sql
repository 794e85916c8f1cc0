-- Grants of an org's policy (after 010_reset dropped them all).

-- Org admins and DBAs: org defaults, locks and figures, run as the caller so that RLS
-- ("admins manage their org's defaults", "admins read the deliveries of their org", ...) holds.
-- The private helpers they call check and format only; they read nothing RLS would hide.
GRANT EXECUTE ON FUNCTION notify.org_preferences(uuid), notify.set_org_preference(uuid, text, jsonb),
    notify.org_delivery_stats(uuid, timestamptz, timestamptz)
    TO notify_admin;
GRANT USAGE ON SCHEMA notify_private TO notify_admin;
GRANT EXECUTE ON FUNCTION notify_private.require_org(uuid), notify_private.org_item(uuid, text),
    notify_private.preference_keys(text), notify_private.preference_changes(jsonb, text)
    TO notify_admin;
