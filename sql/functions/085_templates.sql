-- Templates: Jinja2 runs in notifyd, so a template notification sent from SQL is held until notifyd renders it.

CREATE OR REPLACE FUNCTION notify_private.require_template(name text) RETURNS text
    LANGUAGE plpgsql STABLE
    SET search_path = ''
AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM notify.notification_templates AS t
                   WHERE t.name = require_template.name AND t.is_active) THEN
        RAISE EXCEPTION 'template "%" does not exist in any language', require_template.name
            USING ERRCODE = 'invalid_parameter_value', COLUMN = 'template_id';
    END IF;
    RETURN require_template.name;
END
$$;
COMMENT ON FUNCTION notify_private.require_template(text)
    IS 'the name of a template that is active in some language; SQLSTATE 22023 otherwise';

CREATE OR REPLACE FUNCTION notify.template_languages(name text) RETURNS jsonb
    LANGUAGE sql STABLE
    SET search_path = ''
AS $$
    SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(t.*) ORDER BY t.language), '[]'::jsonb)
    FROM (SELECT DISTINCT ON (t.language) t.*
          FROM notify.notification_templates AS t
          WHERE t.name = template_languages.name AND t.is_active
          ORDER BY t.language, t.version DESC) AS t
$$;
COMMENT ON FUNCTION notify.template_languages(text)
    IS 'the newest active version of a template in each of its languages, as a JSON array of rows';

CREATE OR REPLACE FUNCTION notify_private.supplied_rendering() RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path = ''
AS $$
DECLARE
    supplied constant text := nullif(pg_catalog.current_setting('notify.rendered', true), '');
BEGIN
    -- notify.send has no parameter for it: REST renders first and hands the result over for one insert.
    PERFORM pg_catalog.set_config('notify.rendered', '', true);
    RETURN supplied::jsonb;
END
$$;
COMMENT ON FUNCTION notify_private.supplied_rendering()
    IS 'takes {"rendered", "sealed"} that notifyd''s REST put in the transaction-local setting notify.rendered (once)';

CREATE OR REPLACE FUNCTION notify_private.templates_to_render(notification_ids uuid[])
    RETURNS TABLE (id uuid, template_id text, template_vars jsonb, data jsonb, locale text,
                   default_language text, templates jsonb)
    LANGUAGE sql STABLE
    SET search_path = ''
AS $$
    -- The newest active version of the notification's template in each language; notifyd picks the language.
    SELECT n.id, n.template_id, n.template_vars, n.data, r.locale,
           notify.setting('templates.default_language') #>> '{}',
           notify.template_languages(n.template_id)
    FROM notify.notifications AS n
    JOIN notify.recipients AS r ON r.user_id = n.user_id
    WHERE n.id = ANY (templates_to_render.notification_ids)
      AND n.rendered IS NULL AND n.render_error IS NULL AND n.template_id IS NOT NULL
$$;
COMMENT ON FUNCTION notify_private.templates_to_render(uuid[])
    IS 'the unrendered template notifications among these, with the recipient''s locale and the template in every language';

CREATE OR REPLACE FUNCTION notify_private.store_rendering(
    notification_id uuid, title text, body text, rendered jsonb,
    data jsonb DEFAULT NULL, template_vars jsonb DEFAULT NULL, sealed text DEFAULT NULL  -- NULL: unchanged
) RETURNS boolean
    LANGUAGE plpgsql
    SET search_path = ''
AS $$
DECLARE
    target notify.notifications;
    due timestamptz;
BEGIN
    -- Its real-time event goes now (a new seq), at send_at, or, past the in-app rate limit, when its
    -- token frees up (spent now: the sender's transaction could not, the text did not exist yet).
    UPDATE notify.notifications AS n
    SET title = left(btrim(store_rendering.title), 255), body = left(store_rendering.body, 10000),
        rendered = store_rendering.rendered,
        data = coalesce(store_rendering.data, n.data),
        template_vars = coalesce(store_rendering.template_vars, n.template_vars),
        sealed = coalesce(store_rendering.sealed, n.sealed),
        held_until = CASE
            WHEN n.send_at > notify.now() THEN n.send_at
            WHEN n.priority <> 'critical' AND (n.channels IS NULL OR 'in_app' = ANY (n.channels))
                THEN nullif(notify_private.take_token(n.user_id, 'in_app', refuse => false, notification_id => n.id),
                            notify.now()) END
    WHERE n.id = store_rendering.notification_id AND n.created_at >= notify_private.created_from(store_rendering.notification_id) AND n.created_at < notify_private.created_before(store_rendering.notification_id) AND n.rendered IS NULL AND n.render_error IS NULL
    RETURNING n.* INTO target;
    IF NOT FOUND THEN
        RETURN false;  -- rendered already (a retried job), or failed
    END IF;
    UPDATE notify.notification_deliveries AS d
    SET status = CASE WHEN target.held_until IS NULL THEN 'sent' ELSE 'pending' END,
        reason = CASE WHEN target.held_until IS NULL THEN NULL
                      WHEN target.held_until = target.send_at THEN 'scheduled for send_at'
                      ELSE format('in-app rate limit (%s per hour): its real-time event waits for a token',
                                  notify.setting('rate_limit.in_app_per_hour')) END,
        scheduled_for = target.held_until,
        sent_at = CASE WHEN target.held_until IS NULL THEN notify.now() END,
        queued_at = NULL,
        updated_at = notify.now()
    WHERE d.notification_id = target.id AND d.channel = 'in_app' AND d.status = 'pending';
    -- Planning kept them from the dispatcher until now (queued_at); they go back to it.
    UPDATE notify.notification_deliveries AS d
    SET reason = CASE WHEN d.reason = 'waiting for its template to be rendered' THEN NULL ELSE d.reason END,
        queued_at = NULL, updated_at = notify.now()
    WHERE d.notification_id = target.id AND d.status = 'pending' AND d.channel <> 'in_app';
    SELECT pg_catalog.min(coalesce(d.scheduled_for, '-infinity')) INTO due
    FROM notify.notification_deliveries AS d
    WHERE d.notification_id = target.id AND d.status = 'pending';
    IF due IS NOT NULL THEN
        PERFORM notify_private.queue_dispatch(due);
    END IF;
    RETURN true;
END
$$;
COMMENT ON FUNCTION notify_private.store_rendering(uuid, text, text, jsonb, jsonb, jsonb, text)
    IS 'stores a template notification''s rendered text (and its masked fields), releases its real-time event and starts its deliveries';

CREATE OR REPLACE FUNCTION notify_private.render_failed(
    notification_id uuid, error text,
    data jsonb DEFAULT NULL, template_vars jsonb DEFAULT NULL, sealed text DEFAULT NULL  -- NULL: unchanged
) RETURNS boolean
    LANGUAGE plpgsql
    SET search_path = ''
AS $$
BEGIN
    -- It stays held: never shown with placeholders. Its deliveries are dead letters with the reason.
    -- Its sensitive fields are masked and sealed even so: a failed rendering keeps nothing in clear.
    UPDATE notify.notifications AS n
    SET render_error = left(render_failed.error, 1000),
        data = coalesce(render_failed.data, n.data),
        template_vars = coalesce(render_failed.template_vars, n.template_vars),
        sealed = coalesce(render_failed.sealed, n.sealed)
    WHERE n.id = render_failed.notification_id AND n.rendered IS NULL AND n.render_error IS NULL;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    UPDATE notify.notification_deliveries AS d
    SET status = 'failed', reason = 'template error: ' || left(render_failed.error, 500),
        failed_at = notify.now(), updated_at = notify.now()
    WHERE d.notification_id = render_failed.notification_id AND d.status = 'pending';
    RETURN true;
END
$$;
COMMENT ON FUNCTION notify_private.render_failed(uuid, text, jsonb, jsonb, text)
    IS 'marks a template notification that cannot be rendered: render_error, and its deliveries failed with the reason';
