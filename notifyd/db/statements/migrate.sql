-- The migration runner's own SQL (notifyd.db.migrate).

-- migration_lock --
-- Serializes migrations of this database (released at commit)
SELECT pg_advisory_xact_lock(7263480115)

-- migration_ledger --
-- Creates the table that records which files of sql/schema ran
CREATE SCHEMA IF NOT EXISTS notify_private;
COMMENT ON SCHEMA notify_private IS 'notifyd internals: trigger functions and helpers nobody calls directly';
CREATE TABLE IF NOT EXISTS notify_private.migrations (
    name       text PRIMARY KEY,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE notify_private.migrations IS 'which sql/schema files and which Procrastinate schema version ran';

-- applied_migrations --
-- Every applied migration with its checksum
SELECT name, checksum FROM notify_private.migrations

-- record_migration --
-- Records one applied migration
INSERT INTO notify_private.migrations (name, checksum) VALUES ($1, $2)
    ON CONFLICT (name) DO UPDATE SET checksum = EXCLUDED.checksum, applied_at = now()

-- create_procrastinate_schema --
-- The schema Procrastinate's tables live in, apart from the host's public schema
CREATE SCHEMA IF NOT EXISTS procrastinate

-- set_local_search_path --
-- Points unqualified names at one schema until the end of the transaction
SELECT set_config('search_path', $1, true)

-- ledger_exists --
-- Whether the database has a migration ledger at all (read from the catalog: needs no privilege)
SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = 'notify_private' AND c.relname = 'migrations')

-- read_ledger_as_worker --
-- Reads the ledger as notify_worker (granted SELECT on it) when the login holds that role; a no-op otherwise
SELECT CASE WHEN pg_catalog.pg_has_role(current_user, 'notify_worker', 'MEMBER')
            THEN pg_catalog.set_config('role', 'notify_worker', true) END

-- login_privileges --
-- What the login role may do beyond the notify roles: each of these bypasses row-level security
SELECT r.rolsuper AS superuser, r.rolbypassrls AS bypassrls,
       pg_catalog.pg_has_role(current_user, d.datdba, 'MEMBER') AS owner
FROM pg_catalog.pg_roles r, pg_catalog.pg_database d
WHERE r.rolname = current_user AND d.datname = pg_catalog.current_database()

-- extension_available --
-- Whether the extension $1 is installed or can be, and the server's major version
SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = $1) AS available,
       current_setting('server_version_num')::integer / 10000 AS major
