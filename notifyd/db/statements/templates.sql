-- Templates (notifyd.domain.templates, notifyd.rest.templates_api); the worker's run as notify_worker, the API's as the caller.

-- templates_to_render --
-- The unrendered template notifications among $1, with the recipient's locale and the template in each language
SELECT id, template_id, template_vars, data, locale, default_language, templates
FROM notify_private.templates_to_render($1::uuid[])

-- store_rendering --
-- Stores a rendering and the masked data ($5), template_vars ($6) and sealed values ($7): releases the
-- real-time event and starts the deliveries; false when rendered already
SELECT notify_private.store_rendering($1, $2, $3, $4::jsonb, $5::jsonb, $6::jsonb, $7)

-- render_failed --
-- Marks a notification whose template cannot be rendered (storing the masked data $3, template_vars $4 and
-- sealed values $5); its deliveries fail with the reason
SELECT notify_private.render_failed($1, $2, $3::jsonb, $4::jsonb, $5)

-- template_languages --
-- The newest active version of template $1 in each language (a JSON array, empty when there is none)
SELECT notify.template_languages($1)

-- latest_templates --
-- The newest version of every template in each language (active or not), by name and language
SELECT coalesce(jsonb_agg(to_jsonb(t.*) ORDER BY t.name, t.language), '[]'::jsonb)
FROM (SELECT DISTINCT ON (t.name, t.language) t.*
      FROM notify.notification_templates AS t
      ORDER BY t.name, t.language, t.version DESC) AS t

-- template_versions --
-- Every version of template $1 in every language, newest first (an empty array when there is none)
SELECT coalesce(jsonb_agg(to_jsonb(t.*) ORDER BY t.language, t.version DESC), '[]'::jsonb)
FROM notify.notification_templates AS t
WHERE t.name = $1

-- put_template --
-- Adds the next version of template $1 in language $2 (it is active; older ones stay as history)
INSERT INTO notify.notification_templates AS t
    (name, language, version, type, title_template, body_template, push_title_template, push_body_template,
     email_subject_template, email_html_template, email_text_template, default_priority, default_channels,
     variables, sensitive_fields)
SELECT $1, $2,
       coalesce((SELECT max(o.version) FROM notify.notification_templates AS o
                 WHERE o.name = $1 AND o.language = $2), 0) + 1,
       $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14
RETURNING to_jsonb(t.*)

-- default_language --
-- The language of templates used when a recipient's locale has none
SELECT notify.setting('templates.default_language') #>> '{}'
