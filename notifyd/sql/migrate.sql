-- The migration runner's own SQL (notifyd.migrate).

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
