-- Start from nothing: the files after this one are the whole truth about grants and policies.

DO $reset$
DECLARE
    policy record;
BEGIN
    FOR policy IN SELECT schemaname, tablename, policyname FROM pg_catalog.pg_policies
                  WHERE schemaname IN ('notify', 'notify_private')
    LOOP
        EXECUTE format('DROP POLICY %I ON %I.%I', policy.policyname, policy.schemaname, policy.tablename);
    END LOOP;
END
$reset$;

REVOKE ALL ON ALL TABLES IN SCHEMA notify, notify_private
    FROM PUBLIC, notify_service, notify_authenticated, notify_admin, notify_worker, notify_definer;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA notify, notify_private
    FROM PUBLIC, notify_service, notify_authenticated, notify_admin, notify_worker, notify_definer;
-- Trigger functions need no EXECUTE to fire, so even their owner notify_definer loses it here.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA notify, notify_private
    FROM PUBLIC, notify_service, notify_authenticated, notify_admin, notify_worker, notify_definer;
REVOKE ALL ON SCHEMA notify, notify_private
    FROM PUBLIC, notify_service, notify_authenticated, notify_admin, notify_worker, notify_definer;
ALTER DEFAULT PRIVILEGES IN SCHEMA notify, notify_private REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;

-- Procrastinate's schema (made by the migration runner) is granted in 060_delivery_planning.sql.
REVOKE ALL ON ALL TABLES IN SCHEMA procrastinate
    FROM notify_service, notify_authenticated, notify_admin, notify_worker, notify_definer;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA procrastinate
    FROM notify_service, notify_authenticated, notify_admin, notify_worker, notify_definer;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA procrastinate
    FROM notify_service, notify_authenticated, notify_admin, notify_worker, notify_definer;
REVOKE ALL ON SCHEMA procrastinate
    FROM PUBLIC, notify_service, notify_authenticated, notify_admin, notify_worker, notify_definer;
