-- What `notifyd dev` runs as the database owner (notifyd.dev).

-- dev_login_exists --
-- Whether the dev login role exists already (roles are cluster-wide)
SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'notifyd_dev'

-- create_dev_login --
-- The login role of the dev server: not superuser, not owner, NOINHERIT, the four roles only
CREATE ROLE notifyd_dev LOGIN NOINHERIT PASSWORD 'notifyd-dev';

-- grant_dev_login --
-- Gives the dev login role the four notify roles and nothing else
GRANT notify_service, notify_authenticated, notify_admin, notify_worker TO notifyd_dev

-- dev_recipient --
-- Gives a demo user an address, so the e-mail channel has somewhere to go (the local outbox)
SELECT notify.upsert_recipient($1, $2)
