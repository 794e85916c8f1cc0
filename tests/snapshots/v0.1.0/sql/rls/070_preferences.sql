-- Grants of preferences and org policy (after 010_reset dropped them all).

-- End users: their own preferences. The three functions are SECURITY DEFINER (notify_definer) and
-- touch only the caller's rows; the definer needs the helpers, and the planner's
-- effective_preferences (granted in 060_delivery.sql).
GRANT EXECUTE ON FUNCTION notify.preferences(), notify.set_preference(text, jsonb),
    notify.set_global_preferences(jsonb)
    TO notify_authenticated;
GRANT EXECUTE ON FUNCTION notify_private.require_user(), notify_private.preference_keys(text),
    notify_private.preference_changes(jsonb, text), notify_private.org_locks(uuid, text),
    notify_private.preference_item(uuid, text), notify_private.global_preferences(uuid),
    notify_private.save_preferences(uuid, text, jsonb)
    TO notify_definer;

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
