-- 0008_templates: rendered per-channel text of template notifications, and the default templates.
-- Landed migrations never change: add a new numbered file instead.

-- Jinja2 runs in notifyd, not in PostgreSQL: a template notification sent from SQL waits (held) until
-- notifyd stores its rendering here; REST renders before its insert.
ALTER TABLE notify.notifications
    ADD COLUMN rendered jsonb
        CONSTRAINT "rendered must be a JSON object" CHECK (jsonb_typeof(rendered) = 'object'),
    ADD COLUMN render_error text;
COMMENT ON COLUMN notify.notifications.rendered
    IS 'a template''s per-channel text: {"push": {"title", "body"}, "email": {"subject", "html", "text"}}; NULL until rendered';
COMMENT ON COLUMN notify.notifications.render_error IS 'why its template could not be rendered (it then stays held)';

-- The worker reads the newest active version per name and language.
CREATE INDEX notification_templates_latest_idx
    ON notify.notification_templates (name, language, version DESC) WHERE is_active;

INSERT INTO notify.settings (key, value, kind, description) VALUES
    ('templates.default_language', '"en"', 'text',
     'language of a template used when neither the recipient''s locale nor its language has one');

INSERT INTO notify.notification_templates
    (name, type, language, title_template, body_template, push_title_template, push_body_template,
     email_subject_template, email_html_template, email_text_template, default_priority, default_channels, variables)
VALUES
    ('task_assigned', 'task', 'en',
     '{{ assigned_by }} assigned you "{{ task_title }}"', 'You are now responsible for "{{ task_title }}".',
     'New task: {{ task_title }}', '{{ assigned_by }} assigned it to you.',
     'Task assigned: {{ task_title }}',
     '<p><strong>{{ assigned_by }}</strong> assigned you the task <em>{{ task_title }}</em>.</p>',
     '{{ assigned_by }} assigned you the task "{{ task_title }}".',
     'normal', ARRAY['in_app', 'push', 'email'],
     '{"task_title": "the task''s title", "assigned_by": "who assigned it"}'),
    ('task_assigned', 'task', 'de',
     '{{ assigned_by }} hat Ihnen „{{ task_title }}“ zugewiesen', 'Sie sind jetzt für „{{ task_title }}“ zuständig.',
     'Neue Aufgabe: {{ task_title }}', '{{ assigned_by }} hat sie Ihnen zugewiesen.',
     'Aufgabe zugewiesen: {{ task_title }}',
     '<p><strong>{{ assigned_by }}</strong> hat Ihnen die Aufgabe <em>{{ task_title }}</em> zugewiesen.</p>',
     '{{ assigned_by }} hat Ihnen die Aufgabe „{{ task_title }}“ zugewiesen.',
     'normal', ARRAY['in_app', 'push', 'email'],
     '{"task_title": "Titel der Aufgabe", "assigned_by": "wer sie zugewiesen hat"}'),
    ('mention', 'user', 'en',
     '{{ actor }} mentioned you in {{ where }}', '{{ excerpt }}', NULL, NULL, NULL, NULL, NULL,
     'normal', ARRAY['in_app', 'push'],
     '{"actor": "who mentioned the user", "where": "where", "excerpt": "the text around the mention"}'),
    ('mention', 'user', 'de',
     '{{ actor }} hat Sie in {{ where }} erwähnt', '{{ excerpt }}', NULL, NULL, NULL, NULL, NULL,
     'normal', ARRAY['in_app', 'push'],
     '{"actor": "wer erwähnt hat", "where": "wo", "excerpt": "der Text um die Erwähnung"}'),
    ('security_login', 'security', 'en',
     'New sign-in from {{ device }}', 'Someone signed in to your account from {{ device }} in {{ location }}.',
     'New sign-in', '{{ device }} in {{ location }}',
     'New sign-in to your account',
     '<p>Someone signed in to your account from <strong>{{ device }}</strong> in {{ location }}.</p><p>If this was not you, change your password now.</p>',
     'Someone signed in to your account from {{ device }} in {{ location }}. If this was not you, change your password now.',
     'critical', ARRAY['in_app', 'push', 'email'],
     '{"device": "browser or device", "location": "approximate place"}'),
    ('security_login', 'security', 'de',
     'Neue Anmeldung von {{ device }}', 'Jemand hat sich von {{ device }} in {{ location }} angemeldet.',
     'Neue Anmeldung', '{{ device }} in {{ location }}',
     'Neue Anmeldung bei Ihrem Konto',
     '<p>Jemand hat sich von <strong>{{ device }}</strong> in {{ location }} bei Ihrem Konto angemeldet.</p><p>Waren Sie das nicht, ändern Sie jetzt Ihr Passwort.</p>',
     'Jemand hat sich von {{ device }} in {{ location }} bei Ihrem Konto angemeldet. Waren Sie das nicht, ändern Sie jetzt Ihr Passwort.',
     'critical', ARRAY['in_app', 'push', 'email'],
     '{"device": "Browser oder Gerät", "location": "ungefährer Ort"}'),
    ('invoice_ready', 'billing', 'en',
     'Invoice {{ invoice_number }} is ready', 'Amount due: {{ amount }}.', NULL, NULL,
     'Your invoice {{ invoice_number }}', '<p>Invoice <strong>{{ invoice_number }}</strong> is ready. Amount due: {{ amount }}.</p>',
     'Invoice {{ invoice_number }} is ready. Amount due: {{ amount }}.',
     'normal', ARRAY['in_app', 'email'], '{"invoice_number": "the invoice number", "amount": "amount with currency"}'),
    ('invoice_ready', 'billing', 'de',
     'Rechnung {{ invoice_number }} ist bereit', 'Fälliger Betrag: {{ amount }}.', NULL, NULL,
     'Ihre Rechnung {{ invoice_number }}', '<p>Rechnung <strong>{{ invoice_number }}</strong> ist bereit. Fälliger Betrag: {{ amount }}.</p>',
     'Rechnung {{ invoice_number }} ist bereit. Fälliger Betrag: {{ amount }}.',
     'normal', ARRAY['in_app', 'email'], '{"invoice_number": "Rechnungsnummer", "amount": "Betrag mit Währung"}'),
    ('system_maintenance', 'system', 'en',
     'Maintenance on {{ starts_at }}', 'The service will be unavailable for {{ duration }} from {{ starts_at }}.',
     NULL, NULL, NULL, NULL, NULL, 'high', ARRAY['in_app', 'push', 'email'],
     '{"starts_at": "when it starts", "duration": "how long"}'),
    ('system_maintenance', 'system', 'de',
     'Wartung am {{ starts_at }}', 'Der Dienst ist ab {{ starts_at }} für {{ duration }} nicht erreichbar.',
     NULL, NULL, NULL, NULL, NULL, 'high', ARRAY['in_app', 'push', 'email'],
     '{"starts_at": "Beginn", "duration": "Dauer"}'),
    ('workflow_transition', 'workflow', 'en',
     '{{ item }} moved to {{ to_phase }}', '{{ item }} moved from {{ from_phase }} to {{ to_phase }}.',
     NULL, NULL, NULL, NULL, NULL, 'normal', ARRAY['in_app', 'push'],
     '{"item": "the spec or ticket", "from_phase": "its former phase", "to_phase": "its new phase"}'),
    ('workflow_transition', 'workflow', 'de',
     '{{ item }} ist jetzt in {{ to_phase }}', '{{ item }} ging von {{ from_phase }} nach {{ to_phase }}.',
     NULL, NULL, NULL, NULL, NULL, 'normal', ARRAY['in_app', 'push'],
     '{"item": "Spezifikation oder Ticket", "from_phase": "vorherige Phase", "to_phase": "neue Phase"}'),
    ('agent_finished', 'agent', 'en',
     '{{ agent_name }} finished', '{{ agent_name }} finished: {{ outcome }}.',
     NULL, NULL, NULL, NULL, NULL, 'normal', ARRAY['in_app', 'push'],
     '{"agent_name": "the agent", "outcome": "what it reported"}'),
    ('agent_finished', 'agent', 'de',
     '{{ agent_name }} ist fertig', '{{ agent_name }} ist fertig: {{ outcome }}.',
     NULL, NULL, NULL, NULL, NULL, 'normal', ARRAY['in_app', 'push'],
     '{"agent_name": "der Agent", "outcome": "sein Ergebnis"}');
