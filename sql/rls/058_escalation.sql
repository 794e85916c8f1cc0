-- Grants and policies of escalation chains (after 010_reset dropped them all).

-- Every notify role reads the chains; DBAs (admins without an org) write them, through notify.set_escalation.
GRANT SELECT ON notify.escalation_chains
    TO notify_service, notify_authenticated, notify_admin, notify_worker, notify_definer;
GRANT INSERT, UPDATE, DELETE ON notify.escalation_chains TO notify_admin;
CREATE POLICY "every notify role reads the escalation chains" ON notify.escalation_chains FOR SELECT
    TO notify_service, notify_authenticated, notify_admin, notify_worker, notify_definer USING (true);
CREATE POLICY "DBAs manage the escalation chains" ON notify.escalation_chains FOR ALL
    TO notify_admin USING (notify.current_org_id() IS NULL) WITH CHECK (notify.current_org_id() IS NULL);

GRANT EXECUTE ON FUNCTION notify.set_escalation(text, jsonb) TO notify_admin;
GRANT EXECUTE ON FUNCTION notify.escalations() TO notify_service, notify_admin;
GRANT EXECUTE ON FUNCTION notify_private.escalation_steps(jsonb) TO notify_admin, notify_definer;
-- Inlined into the decisions of a send (the insert trigger, a bulk send's seqs) and its planning.
GRANT EXECUTE ON FUNCTION notify_private.escalation_wanted(jsonb, text, text[]), notify_private.escalation_step(jsonb, text),
    notify_private.step_reason(text, text)
    TO notify_definer;
-- The worker's claim cancels a step seen or read since its last attempt.
GRANT EXECUTE ON FUNCTION notify_private.step_cancelled(text, timestamptz, timestamptz) TO notify_worker, notify_definer;
