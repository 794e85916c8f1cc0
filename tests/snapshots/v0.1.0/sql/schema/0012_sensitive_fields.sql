-- 0012_sensitive_fields: fields a template marks sensitive are masked everywhere and kept only encrypted (SEC-001).
-- Landed migrations never change: add a new numbered file instead.

ALTER TABLE notify.notification_templates
    ADD COLUMN sensitive_fields text[] NOT NULL DEFAULT '{}'
        CONSTRAINT "sensitive_fields names at most 50 top-level keys of data or template_vars"
        CHECK (cardinality(sensitive_fields) <= 50 AND array_position(sensitive_fields, NULL) IS NULL);
COMMENT ON COLUMN notify.notification_templates.sensitive_fields IS
    'top-level keys of data and template_vars masked in every channel and stored only encrypted';

ALTER TABLE notify.notifications ADD COLUMN sealed text;
COMMENT ON COLUMN notify.notifications.sealed IS
    'the real values of the template''s sensitive fields, AES-256-GCM under NOTIFICATION_ENCRYPTION_KEY; data and template_vars hold masks';

-- The renderer reads data too and stores the masks and the sealed values (also when it fails): new signatures.
DROP FUNCTION IF EXISTS notify_private.store_rendering(uuid, text, text, jsonb);
DROP FUNCTION IF EXISTS notify_private.templates_to_render(uuid[]);
DROP FUNCTION IF EXISTS notify_private.render_failed(uuid, text);
