-- Retention, GDPR erasure and the audit log (notifyd.domain.retention, notifyd.rest.erasure_api); the job runs as notify_worker, the API as the caller.

-- apply_retention --
-- One call of the retention policies: at most $2 batches of $1 rows; {"done": false} means call again
SELECT notify.apply_retention($1, $2)

-- erase_user --
-- Erases user $1 and everything of theirs (admins; another org's user is not found); the counts per table
SELECT notify.erase_user($1)

-- audit_refusal --
-- Records a 401/403 answer of the REST API (method, path, status, token subject; masked by the database)
SELECT notify_private.audit($1, $2::jsonb)

-- maintain_partitions --
-- Makes the partitions of notify.notifications ahead and drops those past the largest retention age (what it did)
SELECT notify_private.maintain_partitions()
