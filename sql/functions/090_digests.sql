-- Digests: which users are due for their daily or weekly digest e-mail, claiming
-- exactly one digest per user and period, and the worker's side of sending it.
--
-- The rules:
--   * A user is considered when they have e-mail held by the planner ('held', reason "for the daily
--     digest" / "for the weekly digest") that no digest carries yet; users with nothing held get no
--     digest row at all.
--   * Periods are local to the recipient's time zone: a day from local midnight, a week from local
--     Monday midnight (period_start). The digest is due at digest_time on that day (daily) or on
--     digest_day of that week (weekly); time and day come from the type's preference row, else the
--     user's global row, else digest.default_time / digest.default_weekday. A digest carrying several
--     types goes at the earliest of their times.
--   * DST: a local time that does not exist or exists twice is read as PostgreSQL reads it (the later
--     reading, as quiet hours do); the period key is local midnight, so each local day has one digest.
--   * Exactly one digest per (user, frequency, period_start): the unique key of notify.email_digests;
--     a second worker's claim of the same period does nothing.
--   * Held e-mail whose notification was read, deleted or expired before the digest is skipped with
--     that reason; a period left with nothing is recorded as a skipped digest and sends nothing.

CREATE OR REPLACE FUNCTION notify_private.digest_period(
    frequency text, zone text, local_time time, weekday integer, at timestamptz
) RETURNS TABLE (period_start timestamptz, scheduled_for timestamptz)
    LANGUAGE sql STABLE
    SET search_path = ''
AS $$
    SELECT p.first_day::timestamp AT TIME ZONE digest_period.zone,
           (p.first_day + CASE WHEN digest_period.frequency = 'weekly' THEN digest_period.weekday - 1 ELSE 0 END
            + digest_period.local_time) AT TIME ZONE digest_period.zone
    FROM (SELECT l.day - CASE WHEN digest_period.frequency = 'weekly'
                              THEN EXTRACT(isodow FROM l.day)::integer - 1 ELSE 0 END AS first_day
          FROM (SELECT (digest_period.at AT TIME ZONE digest_period.zone)::date AS day) AS l) AS p
$$;
COMMENT ON FUNCTION notify_private.digest_period(text, text, time, integer, timestamptz)
    IS 'the local day or week (from Monday) containing `at` in a time zone, and when its digest is due';

CREATE OR REPLACE FUNCTION notify_private.due_digests(at timestamptz, max_count integer)
    RETURNS TABLE (user_id uuid, frequency text, period_start timestamptz, scheduled_for timestamptz)
    LANGUAGE sql STABLE
    SET search_path = ''
AS $$
    WITH held AS (
        SELECT DISTINCT d.user_id, n.type,
               CASE d.reason WHEN 'for the daily digest' THEN 'daily' ELSE 'weekly' END AS frequency
        FROM notify.notification_deliveries AS d
        JOIN notify.notifications AS n ON n.id = d.notification_id
        WHERE d.channel = 'email' AND d.status = 'held' AND d.digest_id IS NULL
          AND d.reason IN ('for the daily digest', 'for the weekly digest')
          AND (n.send_at IS NULL OR n.send_at <= due_digests.at)
    ), scheduled AS (
        SELECT h.user_id, h.frequency, s.period_start, pg_catalog.min(s.scheduled_for) AS scheduled_for
        FROM held AS h
        JOIN notify.recipients AS r ON r.user_id = h.user_id
        LEFT JOIN notify.notification_preferences AS t ON t.user_id = h.user_id AND t.notification_type = h.type
        LEFT JOIN notify.notification_preferences AS g ON g.user_id = h.user_id AND g.notification_type IS NULL
        CROSS JOIN LATERAL notify_private.digest_period(
            h.frequency, r.timezone,
            coalesce(t.digest_time, g.digest_time, (notify.setting('digest.default_time') #>> '{}')::time),
            coalesce(t.digest_day, g.digest_day, notify.setting('digest.default_weekday')::integer),
            due_digests.at) AS s
        GROUP BY h.user_id, h.frequency, s.period_start
    )
    SELECT s.user_id, s.frequency, s.period_start, s.scheduled_for
    FROM scheduled AS s
    WHERE s.scheduled_for <= due_digests.at
      AND NOT EXISTS (SELECT 1 FROM notify.email_digests AS e
                      WHERE e.user_id = s.user_id AND e.frequency = s.frequency AND e.period_start = s.period_start)
    ORDER BY s.scheduled_for, s.user_id
    LIMIT due_digests.max_count
$$;
COMMENT ON FUNCTION notify_private.due_digests(timestamptz, integer)
    IS 'users whose daily or weekly digest is due at `at` and not claimed yet: the period and when it was due';

CREATE OR REPLACE FUNCTION notify_private.claim_digest(
    user_id uuid, frequency text, period_start timestamptz, scheduled_for timestamptz DEFAULT notify.now()
) RETURNS notify.email_digests
    LANGUAGE plpgsql
    SET search_path = ''
AS $$
#variable_conflict use_column
DECLARE
    claimed notify.email_digests;
    held_reason constant text := format('for the %s digest', claim_digest.frequency);
    items uuid[];
    address record;
    skip_reason text;
BEGIN
    IF claim_digest.frequency IS DISTINCT FROM 'daily' AND claim_digest.frequency IS DISTINCT FROM 'weekly' THEN
        RAISE EXCEPTION 'frequency must be daily or weekly, got "%"', claim_digest.frequency
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- The unique key decides: another worker's claim of this period (committed or not) wins.
    INSERT INTO notify.email_digests AS e (user_id, frequency, period_start, scheduled_for)
    VALUES (claim_digest.user_id, claim_digest.frequency, claim_digest.period_start, claim_digest.scheduled_for)
    ON CONFLICT (user_id, frequency, period_start) DO NOTHING
    RETURNING e.* INTO claimed;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;

    -- Read in-app (or deleted, expired) before the digest: left out, and said so.
    UPDATE notify.notification_deliveries AS d
    SET status = 'skipped', updated_at = notify.now(),
        reason = format('%s before the %s digest',
                        CASE WHEN n.read_at IS NOT NULL THEN 'read' WHEN n.deleted_at IS NOT NULL THEN 'deleted'
                             ELSE 'expired' END, claim_digest.frequency)
    FROM notify.notifications AS n
    WHERE n.id = d.notification_id AND d.user_id = claim_digest.user_id AND d.channel = 'email'
      AND d.status = 'held' AND d.digest_id IS NULL AND d.reason = held_reason
      AND (n.read_at IS NOT NULL OR n.deleted_at IS NOT NULL OR n.expires_at <= notify.now());

    WITH attached AS (
        UPDATE notify.notification_deliveries AS d
        SET digest_id = claimed.id, updated_at = notify.now()
        FROM notify.notifications AS n
        WHERE n.id = d.notification_id AND d.user_id = claim_digest.user_id AND d.channel = 'email'
          AND d.status = 'held' AND d.digest_id IS NULL AND d.reason = held_reason
          AND (n.send_at IS NULL OR n.send_at <= notify.now())
        RETURNING d.notification_id, n.created_at
    )
    SELECT pg_catalog.array_agg(a.notification_id ORDER BY a.created_at, a.notification_id) INTO items
    FROM attached AS a;

    SELECT r.email, s.reason AS suppression INTO address
    FROM notify.recipients AS r
    LEFT JOIN notify.email_suppressions AS s ON s.email = lower(r.email)
    WHERE r.user_id = claim_digest.user_id;
    skip_reason := CASE WHEN items IS NULL THEN 'nothing new since the last digest'
                        WHEN address.email IS NULL THEN 'no e-mail address'
                        WHEN address.suppression IS NOT NULL THEN format('the address %s', address.suppression) END;

    IF skip_reason IS NOT NULL THEN
        UPDATE notify.notification_deliveries AS d
        SET status = CASE WHEN address.suppression IS NOT NULL THEN 'suppressed' ELSE 'skipped' END,
            reason = format('the %s digest %s was skipped: %s', claim_digest.frequency, claimed.id, skip_reason),
            updated_at = notify.now()
        WHERE d.digest_id = claimed.id;
        UPDATE notify.email_digests AS e
        SET status = 'skipped', reason = skip_reason, notification_ids = coalesce(items, '{}'),
            updated_at = notify.now()
        WHERE e.id = claimed.id
        RETURNING e.* INTO claimed;
        RETURN claimed;
    END IF;

    UPDATE notify.email_digests AS e SET notification_ids = items, updated_at = notify.now()
    WHERE e.id = claimed.id
    RETURNING e.* INTO claimed;
    -- Its sending job commits with the claim, so a digest claimed is a digest sent (or failed).
    PERFORM notify_private.defer_jobs(pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(
        'queue', 'email', 'task', 'send_digest', 'priority', 1,
        'args', pg_catalog.jsonb_build_object('digest_id', claimed.id))));
    RETURN claimed;
END
$$;
COMMENT ON FUNCTION notify_private.claim_digest(uuid, text, timestamptz, timestamptz)
    IS 'claims one user''s digest of one period (NULL if claimed already), attaches its held e-mail, defers its job or skips it';

CREATE OR REPLACE FUNCTION notify_private.claim_due_digests(at timestamptz, max_count integer)
    RETURNS SETOF notify.email_digests
    LANGUAGE sql
    SET search_path = ''
AS $$
    SELECT c.*
    FROM notify_private.due_digests(claim_due_digests.at, claim_due_digests.max_count) AS due
    CROSS JOIN LATERAL notify_private.claim_digest(due.user_id, due.frequency, due.period_start, due.scheduled_for) AS c
    WHERE c.id IS NOT NULL
$$;
COMMENT ON FUNCTION notify_private.claim_due_digests(timestamptz, integer)
    IS 'claims up to max_count digests due at `at`; returns those this call claimed (pending or skipped)';

-- Its result gained the provider an earlier attempt is pinned to (as claim_deliveries' did): a changed result
-- type needs the old function gone first.
DROP FUNCTION IF EXISTS notify_private.start_digest(uuid);
CREATE OR REPLACE FUNCTION notify_private.start_digest(digest_id uuid)
    RETURNS TABLE (id uuid, frequency text, period_start timestamptz, attempts integer, recipient jsonb, items jsonb,
                   provider text)
    LANGUAGE sql
    SET search_path = ''
AS $$
    WITH started AS (
        UPDATE notify.email_digests AS e
        SET attempts = e.attempts + 1, sending_since = notify.now(), updated_at = notify.now()
        WHERE e.id = start_digest.digest_id AND e.status = 'pending'
        RETURNING e.*
    )
    SELECT s.id, s.frequency, s.period_start, s.attempts,
           pg_catalog.jsonb_build_object('user_id', r.user_id, 'email', r.email, 'locale', r.locale,
                                         'timezone', r.timezone, 'suppression', sup.reason,
                                         'default_language', notify.setting('templates.default_language') #>> '{}'),
           (SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                       'id', n.id, 'type', n.type, 'title', n.title, 'body', n.body, 'data', n.data,
                       'created_at', n.created_at) ORDER BY n.created_at, n.id), '[]'::jsonb)
            FROM notify.notifications AS n WHERE n.id = ANY (s.notification_ids)),
           -- The held e-mail it carries names the provider an unanswered attempt went to (finish_digest).
           (SELECT d.provider FROM notify.notification_deliveries AS d
            WHERE d.digest_id = s.id AND d.provider IS NOT NULL LIMIT 1)
    FROM started AS s
    JOIN notify.recipients AS r ON r.user_id = s.user_id
    LEFT JOIN notify.email_suppressions AS sup ON sup.email = lower(r.email)
$$;
COMMENT ON FUNCTION notify_private.start_digest(uuid)
    IS 'starts an attempt on a pending digest and returns its recipient, items and pinned provider (nothing if not pending)';

-- It gained the provider (resend, smtp) that took the digest or may have: a new argument needs the old one gone.
DROP FUNCTION IF EXISTS notify_private.finish_digest(uuid, text, text, text);
CREATE OR REPLACE FUNCTION notify_private.finish_digest(
    digest_id uuid, outcome text, error text DEFAULT NULL, provider_message_id text DEFAULT NULL,
    provider text DEFAULT NULL
) RETURNS TABLE (status text, attempts integer)
    LANGUAGE plpgsql
    SET search_path = ''
AS $$
#variable_conflict use_column
DECLARE
    max_attempts constant integer := notify.setting('delivery.max_attempts')::integer;
    finished notify.email_digests;
BEGIN
    IF finish_digest.outcome IS NULL OR finish_digest.outcome NOT IN ('sent', 'retry', 'failed', 'skipped') THEN
        RAISE EXCEPTION 'a digest outcome is one of sent, retry, failed, skipped' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE notify.email_digests AS e SET
        status = CASE finish_digest.outcome
            WHEN 'sent' THEN 'sent' WHEN 'skipped' THEN 'skipped'
            WHEN 'retry' THEN CASE WHEN e.attempts < max_attempts THEN 'pending' ELSE 'failed' END
            ELSE 'failed' END,
        reason = CASE
            WHEN finish_digest.outcome = 'skipped' THEN finish_digest.error
            WHEN finish_digest.outcome = 'retry' AND e.attempts >= max_attempts
                THEN format('gave up after %s attempts', e.attempts)
            WHEN finish_digest.outcome = 'failed' THEN 'the provider refused it'
            ELSE e.reason END,
        error_message = CASE WHEN finish_digest.outcome IN ('sent', 'skipped') THEN NULL ELSE finish_digest.error END,
        provider_message_id = coalesce(finish_digest.provider_message_id, e.provider_message_id),
        sending_since = NULL,
        sent_at = CASE WHEN finish_digest.outcome = 'sent' THEN notify.now() ELSE e.sent_at END,
        updated_at = notify.now()
    WHERE e.id = finish_digest.digest_id AND e.status = 'pending'
    RETURNING e.* INTO finished;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    -- The digest has no provider column: the e-mail it carries keeps it, as the ledger does for instant e-mail
    -- (a sent one names who took it; a retry names a provider only when its answer never came: pinned there).
    IF finish_digest.provider IS NOT NULL THEN
        UPDATE notify.notification_deliveries AS d SET provider = finish_digest.provider, updated_at = notify.now()
        WHERE d.digest_id = finished.id AND d.status = 'held';
    END IF;
    IF finished.status <> 'pending' THEN
        -- Each held e-mail says which digest it went out in (or why not), for notify.explain.
        WITH done AS (
            UPDATE notify.notification_deliveries AS d SET
                status = finished.status,
                reason = CASE finished.status
                    WHEN 'sent' THEN format('in the %s digest %s', finished.frequency, finished.id)
                    ELSE format('the %s digest %s %s: %s', finished.frequency, finished.id,
                                CASE finished.status WHEN 'failed' THEN 'failed' ELSE 'was skipped' END,
                                finished.reason) END,
                error_message = finished.error_message,
                attempts = finished.attempts,
                provider_message_id = finished.provider_message_id,
                sent_at = finished.sent_at,
                failed_at = CASE WHEN finished.status = 'failed' THEN notify.now() END,
                updated_at = notify.now()
            WHERE d.digest_id = finished.id AND d.status = 'held'
            RETURNING d.notification_id, d.user_id
        )
        INSERT INTO notify.notification_analytics
            (notification_id, notification_type, channel, event, user_id, org_id, metadata)
        SELECT done.notification_id, n.type, 'email', finished.status, done.user_id, r.org_id,
               pg_catalog.jsonb_build_object('digest_id', finished.id, 'frequency', finished.frequency)
        FROM done
        JOIN notify.notifications AS n ON n.id = done.notification_id
        JOIN notify.recipients AS r ON r.user_id = done.user_id
        WHERE finished.status IN ('sent', 'failed');
    END IF;
    RETURN QUERY SELECT finished.status, finished.attempts;
END
$$;
COMMENT ON FUNCTION notify_private.finish_digest(uuid, text, text, text, text)
    IS 'records what the provider answered for a digest (sent|retry|failed|skipped) on it and on the e-mail it carries';

CREATE OR REPLACE VIEW notify.last_digests WITH (security_invoker = true) AS
    SELECT e.user_id, e.frequency, pg_catalog.max(e.sent_at) AS last_sent_at,
           pg_catalog.count(*) AS digests_sent
    FROM notify.email_digests AS e
    WHERE e.status = 'sent'
    GROUP BY e.user_id, e.frequency;
COMMENT ON VIEW notify.last_digests IS 'when each user last got their daily and weekly digest and how many they got';

CREATE OR REPLACE FUNCTION notify.unsubscribe_digests(user_id uuid) RETURNS void
    LANGUAGE sql
    SECURITY DEFINER
    SET search_path = ''
AS $$
    -- The global row says 'never' (a new one sets only that: every other switch stays inherited).
    INSERT INTO notify.notification_preferences AS p (user_id, notification_type, digest_frequency)
    VALUES (unsubscribe_digests.user_id, NULL, 'never')
    ON CONFLICT (user_id, notification_type) DO UPDATE SET digest_frequency = 'never', updated_at = notify.now();
    -- A type row asking for a digest would outrank it: it inherits the global 'never' instead.
    UPDATE notify.notification_preferences AS p SET digest_frequency = NULL, updated_at = notify.now()
    WHERE p.user_id = unsubscribe_digests.user_id AND p.notification_type IS NOT NULL
      AND p.digest_frequency IN ('daily', 'weekly');
    -- E-mail already held for a digest no digest claimed yet will not go out either.
    UPDATE notify.notification_deliveries AS d
    SET status = 'skipped', reason = 'digest e-mails were unsubscribed', updated_at = notify.now()
    WHERE d.user_id = unsubscribe_digests.user_id AND d.channel = 'email' AND d.status = 'held'
      AND d.digest_id IS NULL AND d.reason IN ('for the daily digest', 'for the weekly digest');
$$;
ALTER FUNCTION notify.unsubscribe_digests(uuid) OWNER TO notify_definer;
COMMENT ON FUNCTION notify.unsubscribe_digests(uuid)
    IS 'no more digest e-mails for a user (the digest''s unsubscribe link; notifyd checked its signed token)';
