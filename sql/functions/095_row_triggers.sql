-- Row triggers: notifications from the host application's own tables, declared by one CREATE TRIGGER.
--
--   CREATE TRIGGER ticket_assigned AFTER INSERT OR UPDATE OF assignee_id ON app.tickets
--       FOR EACH ROW EXECUTE FUNCTION notify.on_row_change('task', 'task_assigned', 'assignee_id');
--
-- Arguments: type, template, the column holding the recipient's uuid, then any of
--   'priority=<critical|high|normal|low>'  default: the template's default_priority, else normal
--   'group_key=<column>'                   that column's value is the group_key (push Topic, FCM tag;
--                                          template notifications never fold, see 020_triggers.sql)
--   'idempotent=true'                      key "<table> <primary key> <column>=<uuid>": the same row
--                                          handed to the same user again (re-insert, A→B→A) sends nothing
-- template_vars = to_jsonb(NEW) plus "old": the changed columns' previous values ({} on INSERT).
--
-- SECURITY DEFINER (notify_definer): the host role that writes the row needs no notify grant, and can
-- send nothing but what the trigger declares: the trigger's arguments are fixed by whoever attached it
-- (CREATE TRIGGER needs EXECUTE on this function, which no role holds unless a DBA grants it; firing
-- needs none), and without EXECUTE nobody calls it directly either.

CREATE OR REPLACE FUNCTION notify.on_row_change() RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = ''
AS $$
DECLARE
    tbl constant text := format('%I.%I', TG_TABLE_SCHEMA, TG_TABLE_NAME);
    row_vars constant jsonb := pg_catalog.to_jsonb(NEW);
    old_vars jsonb := '{}';
    user_column text;
    option_name text;
    option_value text;
    priority text;
    group_column text;
    idempotent boolean := false;
    raw_user text;
    recipient uuid;
    primary_key jsonb;
    key text;
BEGIN
    IF TG_WHEN <> 'AFTER' OR TG_LEVEL <> 'ROW' OR TG_OP NOT IN ('INSERT', 'UPDATE') THEN
        RAISE EXCEPTION 'trigger % on %: notify.on_row_change runs AFTER INSERT OR UPDATE ... FOR EACH ROW, not % % %',
            TG_NAME, tbl, TG_WHEN, TG_OP, TG_LEVEL
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF TG_NARGS < 3 OR TG_NARGS > 6 OR TG_ARGV[0] = '' OR TG_ARGV[1] = '' OR TG_ARGV[2] = '' THEN
        RAISE EXCEPTION 'trigger % on %: notify.on_row_change takes (type, template, user column [, option ...]), got % arguments',
            TG_NAME, tbl, TG_NARGS
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'e.g. notify.on_row_change(''task'', ''task_assigned'', ''assignee_id'', ''priority=high'')';
    END IF;
    user_column := TG_ARGV[2];
    IF NOT row_vars ? user_column THEN
        RAISE EXCEPTION 'trigger % on %: table % has no column "%"', TG_NAME, tbl, tbl, user_column
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    FOR i IN 3 .. TG_NARGS - 1 LOOP
        option_name := split_part(TG_ARGV[i], '=', 1);
        option_value := substr(TG_ARGV[i], length(option_name) + 2);
        IF strpos(TG_ARGV[i], '=') = 0 OR option_value = '' THEN
            RAISE EXCEPTION 'trigger % on %: option "%" must be name=value', TG_NAME, tbl, TG_ARGV[i]
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'the options are priority=<critical|high|normal|low>, group_key=<column>, idempotent=true';
        ELSIF option_name = 'priority' AND priority IS NULL AND option_value IN ('critical', 'high', 'normal', 'low') THEN
            priority := option_value;
        ELSIF option_name = 'group_key' AND group_column IS NULL AND row_vars ? option_value THEN
            group_column := option_value;
        ELSIF option_name = 'group_key' AND group_column IS NULL THEN
            RAISE EXCEPTION 'trigger % on %: table % has no column "%" (group_key)', TG_NAME, tbl, tbl, option_value
                USING ERRCODE = 'invalid_parameter_value';
        ELSIF option_name = 'idempotent' AND option_value IN ('true', 'false') THEN
            idempotent := option_value::boolean;
        ELSE
            RAISE EXCEPTION 'trigger % on %: bad or repeated option "%"', TG_NAME, tbl, TG_ARGV[i]
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'the options are priority=<critical|high|normal|low>, group_key=<column>, idempotent=true';
        END IF;
    END LOOP;

    -- Only a change of the recipient column sends: UPDATE OF fires even when the value stays.
    IF TG_OP = 'UPDATE' AND row_vars -> user_column IS NOT DISTINCT FROM pg_catalog.to_jsonb(OLD) -> user_column THEN
        RETURN NULL;
    END IF;
    raw_user := row_vars ->> user_column;
    IF raw_user IS NULL THEN
        RETURN NULL;
    END IF;
    BEGIN
        recipient := raw_user::uuid;
    EXCEPTION WHEN invalid_text_representation THEN
        RAISE EXCEPTION 'trigger % on %: column "%" holds "%", which is not a user uuid', TG_NAME, tbl, user_column,
            left(raw_user, 100)
            USING ERRCODE = 'invalid_text_representation';
    END;

    IF TG_OP = 'UPDATE' THEN
        IF row_vars ? 'old' THEN
            RAISE EXCEPTION 'trigger % on %: template_vars.old holds the previous values, but % has a column "old"',
                TG_NAME, tbl, tbl
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        SELECT coalesce(pg_catalog.jsonb_object_agg(o.key, o.value), '{}') INTO old_vars
        FROM pg_catalog.jsonb_each(pg_catalog.to_jsonb(OLD)) AS o
        WHERE o.value IS DISTINCT FROM row_vars -> o.key;
    END IF;

    SELECT pg_catalog.jsonb_object_agg(a.attname, row_vars -> a.attname::text) INTO primary_key
    FROM pg_catalog.pg_index AS i
    JOIN pg_catalog.pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
    WHERE i.indrelid = TG_RELID AND i.indisprimary;
    IF idempotent THEN
        IF primary_key IS NULL THEN
            RAISE EXCEPTION 'trigger % on %: idempotent=true needs a primary key on %', TG_NAME, tbl, tbl
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        key := format('%s %s %s=%s', tbl, primary_key, user_column, recipient);
        -- Keys are at most 255 characters; a long one is replaced by its digest, still one per row and user.
        IF length(key) > 255 THEN
            key := 'row ' || pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(key, 'UTF8')), 'hex');
        END IF;
    END IF;

    IF priority IS NULL THEN
        SELECT t.default_priority INTO priority
        FROM notify.notification_templates AS t
        WHERE t.name = TG_ARGV[1] AND t.is_active
        ORDER BY t.version DESC,
                 coalesce(t.language = (SELECT s.value #>> '{}' FROM notify.settings AS s
                                        WHERE s.key = 'templates.default_language'), false) DESC
        LIMIT 1;
    END IF;

    -- An INSERT, not notify.send: the key stands for the row and user, whose values change, so the
    -- row handed again sends nothing instead of being refused as a key reused with another request.
    INSERT INTO notify.notifications (user_id, type, template_id, template_vars, priority, data, group_key, idempotency_key)
    VALUES (
        recipient, TG_ARGV[0], TG_ARGV[1], row_vars || pg_catalog.jsonb_build_object('old', old_vars),
        coalesce(priority, 'normal'),
        pg_catalog.jsonb_build_object('source', pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
            'table', tbl, 'key', primary_key, 'column', user_column))),
        CASE WHEN group_column IS NOT NULL THEN row_vars ->> group_column END,
        key);
    RETURN NULL;
END
$$;
ALTER FUNCTION notify.on_row_change() OWNER TO notify_definer;
COMMENT ON FUNCTION notify.on_row_change()
    IS 'AFTER INSERT OR UPDATE row trigger for host tables: on_row_change(type, template, user_column [, ''priority=…'', ''group_key=<column>'', ''idempotent=true'']) sends the template to the uuid in user_column when it changes';
