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
-- Gives a demo user an address and a phone number, so e-mail and SMS have somewhere to go (the local sinks)
SELECT notify.upsert_recipient_v2($1, $2, phone => $3)

-- dev_instant_email --
-- A demo user who takes e-mail at once instead of in the daily digest; once only, so a later choice in the
-- demo's Preferences stays
INSERT INTO notify.notification_preferences (user_id, notification_type, digest_frequency)
VALUES ($1, NULL, 'instant')
ON CONFLICT (user_id, notification_type) DO NOTHING
