-- Grants of preferences (after 010_reset dropped them all).

-- End users: their own preferences. The three functions are SECURITY DEFINER (notify_definer) and
-- touch only the caller's rows; the definer needs the helpers, and the planner's
-- effective_preferences (granted in 060_delivery_planning.sql).
GRANT EXECUTE ON FUNCTION notify.preferences(), notify.set_preference(text, jsonb),
    notify.set_global_preferences(jsonb)
    TO notify_authenticated;
GRANT EXECUTE ON FUNCTION notify_private.require_user(), notify_private.preference_keys(text),
    notify_private.preference_changes(jsonb, text), notify_private.org_locks(uuid, text),
    notify_private.preference_item(uuid, text), notify_private.global_preferences(uuid),
    notify_private.save_preferences(uuid, text, jsonb)
    TO notify_definer;
