-- Quiet hours: when a user's non-critical push waits, and until when.
--
-- The rules, as notify_private.quiet_hours_end applies them:
--   * Which windows: those of the user's most specific preference row for the type (the row for the
--     type, else the global row, as notify_private.effective_preferences picks it): the window
--     quiet_hours_start/quiet_hours_end/quiet_hours_days plus every window of quiet_hours_windows.
--     A per-type row replaces the global row's windows; it does not add to them.
--   * Times are wall-clock times in the recipient's time zone (notify.recipients.timezone).
--   * days are the ISO weekdays (1 = Monday) on which a window STARTS: 22:00-08:00 on days 1-5
--     covers Saturday 03:00, because it started on Friday, and not Monday 03:00.
--   * end <= start spans midnight into the next day; start = end is no window at all (not 24 hours);
--     quiet_hours_start and quiet_hours_end are both set or both NULL.
--   * A window on local date d runs over the instants [(d + start) AT TIME ZONE tz,
--     (d or d + 1 + end) AT TIME ZONE tz): quiet includes its start and excludes its end.
--   * DST: PostgreSQL's rule reads a local time that does not exist or exists twice as the LATER of
--     its two readings. In a spring-forward gap it takes the offset before the change (New York,
--     8 March 2026: 02:30 is 02:30 EST = 03:30 EDT); in a fall-back overlap it is the second
--     occurrence (1 November 2026: 01:30 is 01:30 EST, an hour after 01:30 EDT). So a 22:00-01:30
--     window lasts an hour longer that night, and one that starts or ends in the gap moves by the
--     gap; a window lying mostly inside the gap can come out empty that one night (02:30-03:10 in
--     New York on 8 March 2026 ends at 03:10 EDT, before it starts at 03:30 EDT).
--   * Quiet hours end where the quiet stretch ends: overlapping and touching windows chain. A stretch
--     longer than 7 days (windows covering the whole week) never ends: 'infinity'.

-- plpgsql, not sql: PostgreSQL 15 parses and plans a SQL function's body at every call (every send).
CREATE OR REPLACE FUNCTION notify_private.quiet_hours_end(user_id uuid, type text, at timestamptz)
    RETURNS timestamptz
    LANGUAGE plpgsql STABLE
    SET search_path = ''
AS $$
BEGIN
    RETURN (WITH RECURSIVE preference AS (
        SELECT p.quiet_hours_start, p.quiet_hours_end, p.quiet_hours_days, p.quiet_hours_windows, r.timezone,
               (quiet_hours_end.at AT TIME ZONE r.timezone)::date AS local_day
        FROM notify.notification_preferences AS p
        JOIN notify.recipients AS r ON r.user_id = p.user_id
        WHERE p.user_id = quiet_hours_end.user_id
          AND (p.notification_type = quiet_hours_end.type OR p.notification_type IS NULL)
          AND pg_catalog.isfinite(quiet_hours_end.at)
        ORDER BY p.notification_type NULLS LAST
        LIMIT 1
    ), windows AS (
        SELECT q.timezone, q.local_day, q.quiet_hours_start AS starts, q.quiet_hours_end AS ends,
               q.quiet_hours_days AS days
        FROM preference AS q
        UNION ALL
        SELECT q.timezone, q.local_day, (w.item ->> 'start')::time, (w.item ->> 'end')::time, w.item -> 'days'
        FROM preference AS q
        CROSS JOIN LATERAL pg_catalog.jsonb_array_elements(q.quiet_hours_windows) AS w(item)
    ), occurrences AS (
        -- Windows started from two days before `at` (the one that may contain it, with room for a
        -- fall-back night) to 8 days after (enough to see a stretch outlast a week).
        SELECT o.starts_at, o.ends_at
        FROM windows AS w
        CROSS JOIN LATERAL (SELECT w.local_day + k AS day FROM pg_catalog.generate_series(-2, 8) AS k) AS d
        CROSS JOIN LATERAL (
            SELECT (d.day + w.starts) AT TIME ZONE w.timezone AS starts_at,
                   (d.day + (w.ends <= w.starts)::integer + w.ends) AT TIME ZONE w.timezone AS ends_at
        ) AS o
        WHERE w.starts <> w.ends
          AND w.days @> pg_catalog.to_jsonb(EXTRACT(isodow FROM d.day)::integer)
          AND o.starts_at < o.ends_at
    ), stretch (ends_at) AS (
        SELECT pg_catalog.max(o.ends_at) FROM occurrences AS o
        WHERE o.starts_at <= quiet_hours_end.at AND quiet_hours_end.at < o.ends_at
        UNION ALL
        SELECT (SELECT pg_catalog.max(o.ends_at) FROM occurrences AS o
                WHERE o.starts_at <= s.ends_at AND s.ends_at < o.ends_at)
        FROM stretch AS s
        WHERE s.ends_at IS NOT NULL
    )
    SELECT CASE WHEN pg_catalog.max(s.ends_at) > quiet_hours_end.at + interval '7 days' THEN 'infinity'
                ELSE pg_catalog.max(s.ends_at) END
    FROM stretch AS s);
END
$$;
COMMENT ON FUNCTION notify_private.quiet_hours_end(uuid, text, timestamptz)
    IS 'NULL when `at` is outside the user''s quiet hours for the type, else when the quiet stretch ends';

CREATE OR REPLACE FUNCTION notify.quiet_hours_end(type text DEFAULT NULL, at timestamptz DEFAULT notify.now())
    RETURNS timestamptz
    LANGUAGE plpgsql STABLE
    SECURITY DEFINER
    SET search_path = ''
AS $$
BEGIN
    IF notify.current_user_id() IS NULL THEN
        RAISE EXCEPTION 'quiet_hours_end answers for the calling user: request.jwt.claims has no user sub'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'a DBA asks about any user with notify_private.quiet_hours_end(user_id, type, at)';
    END IF;
    IF quiet_hours_end.type IS NOT NULL THEN
        PERFORM notify.require_type(quiet_hours_end.type);
    END IF;
    -- Definer rights read only the caller's own preference row and time zone.
    RETURN notify_private.quiet_hours_end(notify.current_user_id(), quiet_hours_end.type, quiet_hours_end.at);
END
$$;
ALTER FUNCTION notify.quiet_hours_end(text, timestamptz) OWNER TO notify_definer;
COMMENT ON FUNCTION notify.quiet_hours_end(text, timestamptz)
    IS 'am I in quiet hours? NULL if not, else when they end, for the calling user and a type (NULL: the global row)';

CREATE OR REPLACE FUNCTION notify_private.are_weekdays(days jsonb) RETURNS boolean
    LANGUAGE sql IMMUTABLE
    SET search_path = ''
AS $$
    -- CASE, not AND: jsonb_array_elements fails on anything but an array.
    SELECT CASE WHEN pg_catalog.jsonb_typeof(are_weekdays.days) = 'array'
                THEN NOT EXISTS (SELECT 1 FROM pg_catalog.jsonb_array_elements(are_weekdays.days) AS d(day)
                                 WHERE d.day::text !~ '^[1-7]$')
                ELSE false END
$$;
COMMENT ON FUNCTION notify_private.are_weekdays(jsonb)
    IS 'whether a JSON value is an array of ISO weekdays, integers 1 to 7';

CREATE OR REPLACE FUNCTION notify_private.check_quiet_hours() RETURNS trigger
    LANGUAGE plpgsql
    -- Definer rights: the users, admins and functions writing preferences cannot reach notify_private.
    SECURITY DEFINER
    SET search_path = ''
AS $$
DECLARE
    weekdays constant text := 'a list of ISO weekdays 1 (Monday) to 7 (Sunday)';
    window_shape constant text := '{"start": "HH:MM", "end": "HH:MM", "days": [1, 2, 3, 4, 5]}';
    quiet_window jsonb;
    item_index bigint;
    field text;
BEGIN
    IF (NEW.quiet_hours_start IS NULL) <> (NEW.quiet_hours_end IS NULL) THEN
        RAISE EXCEPTION 'quiet_hours_start and quiet_hours_end are set together: both or neither'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT notify_private.are_weekdays(NEW.quiet_hours_days) THEN
        RAISE EXCEPTION 'quiet_hours_days must be %, got %', weekdays, NEW.quiet_hours_days
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF pg_catalog.jsonb_typeof(NEW.quiet_hours_windows) IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'quiet_hours_windows must be a JSON array of windows %, got %', window_shape,
            NEW.quiet_hours_windows USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- The planner reads every window of a user for each notification: keep it a short list.
    IF pg_catalog.jsonb_array_length(NEW.quiet_hours_windows) > 14 THEN
        RAISE EXCEPTION 'quiet_hours_windows holds at most 14 windows, got %',
            pg_catalog.jsonb_array_length(NEW.quiet_hours_windows) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR quiet_window, item_index IN
        SELECT w.item, w.n - 1
        FROM pg_catalog.jsonb_array_elements(NEW.quiet_hours_windows) WITH ORDINALITY AS w(item, n)
    LOOP
        IF pg_catalog.jsonb_typeof(quiet_window) <> 'object'
           OR (SELECT pg_catalog.array_agg(k ORDER BY k) FROM pg_catalog.jsonb_object_keys(quiet_window) AS k)
              IS DISTINCT FROM ARRAY['days', 'end', 'start'] THEN
            RAISE EXCEPTION 'quiet_hours_windows[%] must be %, got %', item_index, window_shape, quiet_window
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        FOREACH field IN ARRAY ARRAY['start', 'end'] LOOP
            IF pg_catalog.jsonb_typeof(quiet_window -> field) <> 'string'
               OR quiet_window ->> field !~ '^([01][0-9]|2[0-3]):[0-5][0-9]$' THEN
                RAISE EXCEPTION 'quiet_hours_windows[%].% must be a time "HH:MM" from 00:00 to 23:59, got %',
                    item_index, field, quiet_window -> field USING ERRCODE = 'invalid_parameter_value';
            END IF;
        END LOOP;
        IF NOT notify_private.are_weekdays(quiet_window -> 'days') THEN
            RAISE EXCEPTION 'quiet_hours_windows[%].days must be %, got %', item_index, weekdays, quiet_window -> 'days'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END LOOP;
    RETURN NEW;
END
$$;
ALTER FUNCTION notify_private.check_quiet_hours() OWNER TO notify_definer;
COMMENT ON FUNCTION notify_private.check_quiet_hours()
    IS 'refuses quiet hours the planner could not read, naming the field: times, weekdays, window shape';

CREATE OR REPLACE TRIGGER notification_preferences_check_quiet_hours
    BEFORE INSERT OR UPDATE OF quiet_hours_start, quiet_hours_end, quiet_hours_days, quiet_hours_windows
    ON notify.notification_preferences
    FOR EACH ROW EXECUTE FUNCTION notify_private.check_quiet_hours();
COMMENT ON TRIGGER notification_preferences_check_quiet_hours ON notify.notification_preferences IS 'refuses quiet hours the planner could not read';
