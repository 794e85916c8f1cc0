-- Grants of the console's dead-letter batches (after 010_reset dropped them all).

GRANT EXECUTE ON FUNCTION notify.retry_deliveries(uuid[]), notify.discard_deliveries(uuid[]) TO notify_admin;
-- The batch runs as its owner, which hands each delivery to the one-at-a-time retry.
GRANT EXECUTE ON FUNCTION notify.retry_delivery(uuid), notify_private.named_deliveries(uuid[], text) TO notify_definer;

-- The processes' own figures: written through notify_private.report_figures; only a DBA reads them (they are
-- the service's, no org's).
GRANT EXECUTE ON FUNCTION notify_private.report_figures(text, text, jsonb) TO notify_worker;
GRANT SELECT, INSERT, UPDATE, DELETE ON notify.process_figures TO notify_definer;
GRANT SELECT ON notify.process_figures TO notify_admin;
CREATE POLICY "definer functions keep every process's figures" ON notify.process_figures FOR ALL
    TO notify_definer USING (true) WITH CHECK (true);
CREATE POLICY "DBAs read every process's figures" ON notify.process_figures FOR SELECT
    TO notify_admin USING (notify.current_org_id() IS NULL);

-- The policy page's changes run as the admin: RLS keeps them to DBAs.
GRANT EXECUTE ON FUNCTION notify.set_setting(text, jsonb), notify.set_retention(text, interval, integer)
    TO notify_admin;
