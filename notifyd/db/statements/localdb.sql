-- What the README commands run to find or make their database (notifyd.db.localdb).

-- database_exists --
-- Whether a database of that name exists on the server
SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1

-- create_database_statement --
-- The CREATE DATABASE statement for a name, quoted by the server (it takes no parameters)
SELECT format('CREATE DATABASE %I', $1::text)
