-- Notifications from your own tables, as a DBA reads it: a tickets table of the host application,
-- the one CREATE TRIGGER line, an UPDATE by the application's role, and the notification it made.
SELECT plan(9);

-- The host application: its table and its role, which holds no notify role at all.
CREATE SCHEMA app;
CREATE TABLE app.tickets (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_title  text NOT NULL,
    assigned_by text,
    assignee_id uuid
);
CREATE ROLE pgtap_tickets_app;
GRANT USAGE ON SCHEMA app TO pgtap_tickets_app;
GRANT SELECT, INSERT, UPDATE ON app.tickets TO pgtap_tickets_app;
SELECT notify.upsert_recipient_v2('00000000-0000-4000-8000-0000000000d1', 'ada@example.com');
INSERT INTO notify.notification_templates (name, type, title_template, body_template, default_priority)
VALUES ('ticket_assigned', 'task', '{{ assigned_by }} assigned you "{{ task_title }}"', 'Ticket #{{ id }}', 'high');

-- The DBA's line: type, template, the column with the recipient's uuid (options may follow).
CREATE TRIGGER ticket_assigned AFTER INSERT OR UPDATE OF assignee_id ON app.tickets
    FOR EACH ROW EXECUTE FUNCTION notify.on_row_change('task', 'ticket_assigned', 'assignee_id');

-- The application works as usual.
SET ROLE pgtap_tickets_app;
INSERT INTO app.tickets (task_title, assigned_by) VALUES ('Fix the login', 'Grace');
UPDATE app.tickets SET assignee_id = '00000000-0000-4000-8000-0000000000d1', assigned_by = 'Grace'
WHERE task_title = 'Fix the login';
UPDATE app.tickets SET task_title = 'Fix the login page' WHERE task_title = 'Fix the login';
UPDATE app.tickets SET assignee_id = assignee_id;
RESET ROLE;

SELECT is((SELECT count(*) FROM notify.notifications)::int, 1,
    'one notification: the INSERT had no assignee, the later UPDATEs left assignee_id as it was');
SELECT results_eq(
    $$SELECT user_id, type, template_id, priority FROM notify.notifications$$,
    $$VALUES ('00000000-0000-4000-8000-0000000000d1'::uuid, 'task', 'ticket_assigned', 'high')$$,
    'it goes to the uuid in assignee_id, with the trigger''s type and template and the template''s default priority');
SELECT is((SELECT template_vars FROM notify.notifications),
    jsonb_build_object('id', (SELECT id FROM app.tickets), 'task_title', 'Fix the login', 'assigned_by', 'Grace',
                       'assignee_id', '00000000-0000-4000-8000-0000000000d1', 'old', '{"assignee_id": null}'::jsonb),
    'template_vars: the row as the UPDATE left it, and under "old" the previous values of the columns it changed');
SELECT is((SELECT data FROM notify.notifications),
    jsonb_build_object('source', jsonb_build_object('table', 'app.tickets', 'key', jsonb_build_object('id', (SELECT id FROM app.tickets)),
                                                    'column', 'assignee_id')),
    'data.source says which row of which table sent it');
SELECT bag_eq(
    $$SELECT d.channel FROM notify.delivery_decisions AS d$$,
    $$VALUES ('in_app'), ('push'), ('email')$$,
    'the planner decided every channel, as for any notify.send');
SELECT is((SELECT notify.explain(id) ->> 'rule' FROM notify.notifications),
    'high: in-app and push at once; e-mail instant or by digest, as the user prefers; webhooks and chat (held '
    'for quiet hours) to the user''s and org''s endpoints and connections',
    'notify.explain tells why');

-- Mistakes fail the application's write with a clear error (SQLSTATE class 22) naming table and column.
CREATE TRIGGER by_title AFTER UPDATE OF task_title ON app.tickets
    FOR EACH ROW EXECUTE FUNCTION notify.on_row_change('task', 'ticket_assigned', 'task_title');
CREATE TRIGGER by_owner AFTER UPDATE OF assigned_by ON app.tickets
    FOR EACH ROW EXECUTE FUNCTION notify.on_row_change('task', 'ticket_assigned', 'owner_id');
SET ROLE pgtap_tickets_app;
SELECT throws_ok($$UPDATE app.tickets SET task_title = 'not a uuid'$$, '22P02',
    'trigger by_title on app.tickets: column "task_title" holds "not a uuid", which is not a user uuid',
    'a value that is no uuid');
SELECT throws_ok($$UPDATE app.tickets SET assigned_by = 'Linus'$$, '22023',
    'trigger by_owner on app.tickets: table app.tickets has no column "owner_id"',
    'a column the table does not have');
RESET ROLE;
SELECT is(has_function_privilege('pgtap_tickets_app', 'notify.on_row_change()', 'EXECUTE'), false,
    'the application''s role cannot attach the function itself: only who holds EXECUTE (a DBA) declares what is sent');

SELECT * FROM finish();
