-- Grants of templates (after 010_reset dropped them all).

-- The insert trigger and the planner run as notify_definer; notifyd's worker renders.
GRANT EXECUTE ON FUNCTION notify_private.require_template(text), notify_private.supplied_rendering()
    TO notify_definer;
GRANT EXECUTE ON FUNCTION notify_private.templates_to_render(uuid[]),
    notify_private.store_rendering(uuid, text, text, jsonb, jsonb, jsonb, text), notify_private.render_failed(uuid, text, jsonb, jsonb, text),
    notify_private.queue_dispatch(timestamptz), notify_private.defer_jobs(jsonb)
    TO notify_worker;
GRANT EXECUTE ON FUNCTION notify.template_languages(text) TO notify_service, notify_admin, notify_worker;
