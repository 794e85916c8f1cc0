-- Grants and policies of rate limits (after 010_reset dropped them all).

-- The triggers and the planner run as notify_definer; the worker releases held events.
GRANT EXECUTE ON FUNCTION notify_private.take_token(uuid, text, boolean, uuid), notify_private.global_token_times(integer)
    TO notify_definer;
GRANT EXECUTE ON FUNCTION notify_private.token_wait_reason(text) TO notify_definer;
-- The worker spends the in-app token of a template notification when it has rendered it.
GRANT EXECUTE ON FUNCTION notify_private.take_token(uuid, text, boolean, uuid) TO notify_worker;
-- Inlined into take_token (and a bulk send's seqs): whoever calls those needs it.
GRANT EXECUTE ON FUNCTION notify_private.far_below_limit(uuid, bigint, bigint, timestamptz) TO notify_definer, notify_worker;
GRANT INSERT, UPDATE ON notify.rate_buckets TO notify_worker;
GRANT EXECUTE ON FUNCTION notify_private.release_in_app(uuid[]) TO notify_worker;
GRANT EXECUTE ON FUNCTION notify.rate_limit_status() TO notify_service, notify_admin, notify_worker;

GRANT SELECT, INSERT, UPDATE ON notify.rate_buckets TO notify_definer;
GRANT SELECT ON notify.rate_buckets TO notify_admin, notify_worker;
GRANT SELECT, UPDATE ON notify.global_rate_bucket TO notify_definer;
GRANT SELECT ON notify.global_rate_bucket TO notify_admin, notify_worker;
CREATE POLICY "definer functions spend tokens" ON notify.rate_buckets FOR ALL
    TO notify_definer USING (true) WITH CHECK (true);
CREATE POLICY "admins read the buckets of their org" ON notify.rate_buckets FOR SELECT
    TO notify_admin USING (notify.in_admin_scope(user_id));
CREATE POLICY "workers read and spend every bucket" ON notify.rate_buckets FOR ALL
    TO notify_worker USING (true) WITH CHECK (true);
CREATE POLICY "definer functions spend global tokens" ON notify.global_rate_bucket FOR ALL
    TO notify_definer USING (true) WITH CHECK (true);
CREATE POLICY "admins and workers read the global bucket" ON notify.global_rate_bucket FOR SELECT
    TO notify_admin, notify_worker USING (true);
