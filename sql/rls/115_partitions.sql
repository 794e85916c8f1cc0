-- Grants of the partitioning's functions and tables (after 010_reset dropped them all).

-- Lookups by id bound created_at with these; every role that reads notifications calls them.
GRANT EXECUTE ON FUNCTION notify_private.uuid_v7_millis(uuid), notify_private.uuid_v7_time(uuid),
    notify_private.created_from(uuid),
    notify_private.created_before(uuid)
    TO notify_service, notify_authenticated, notify_admin, notify_worker, notify_definer;
-- The insert trigger (notify_definer) makes the id again from created_at.
GRANT EXECUTE ON FUNCTION notify_private.uuid_v7_at(timestamptz) TO notify_definer;
-- The lookups run as their caller: the notify_private functions need the schema too.
GRANT USAGE ON SCHEMA notify_private TO notify_authenticated, notify_admin;

-- Only the definer functions touch the keys (the insert trigger checks and records them, the delete trigger
-- and partition drops remove them).
GRANT SELECT, INSERT, DELETE ON notify_private.notification_keys TO notify_definer;
-- The cascade that stands in for the foreign keys (forget_notifications, forget_children).
GRANT DELETE ON notify.notification_deliveries, notify.notification_actions, notify.notification_folds
    TO notify_definer;
GRANT UPDATE (notification_id) ON notify.notification_analytics TO notify_definer;

-- The worker's hourly job; maintain_partitions (the table owner's) hands the children to forget_children.
GRANT EXECUTE ON FUNCTION notify_private.maintain_partitions() TO notify_worker;
DO $grant$
BEGIN
    EXECUTE format('GRANT EXECUTE ON FUNCTION notify_private.forget_children(timestamptz, timestamptz) TO %I',
                   current_user);
END
$grant$;
