-- Grants and policies of the audit log (after 010_reset dropped them all).

-- notifyd's REST layer audits the 401/403 answers it gives (as notify_worker).
GRANT EXECUTE ON FUNCTION notify_private.audit(text, jsonb, text, uuid) TO notify_worker, notify_definer;
GRANT EXECUTE ON FUNCTION notify_private.audit_hash(text), notify_private.mask_pii(text) TO notify_definer;

-- The audit log: written only through notify_private.audit; read by admins; nobody updates or deletes.
GRANT SELECT ON notify.audit_log TO notify_admin;
GRANT INSERT ON notify.audit_log TO notify_definer;
GRANT SELECT ON notify_private.audit_key TO notify_definer;
CREATE POLICY "DBAs read every audit row, org admins their org's" ON notify.audit_log FOR SELECT
    TO notify_admin USING (notify.current_org_id() IS NULL OR org_id = notify.current_org_id());
CREATE POLICY "definer functions append audit rows" ON notify.audit_log FOR INSERT
    TO notify_definer WITH CHECK (true);
