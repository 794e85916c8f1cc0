-- Preferences and org policy over REST (notifyd.rest.preferences_api): each runs as the caller, so RLS decides.

-- preferences --
-- The caller's preferences in force: {"items": [one per type], "global": {...}} (run as the user)
SELECT notify.preferences()

-- set_preference --
-- Changes the caller's preferences for type $1 with the keys of $2; returns the type's item (run as the user)
SELECT notify.set_preference(type => $1, changes => $2)

-- set_global_preferences --
-- Changes the caller's global switches with the keys of $1; returns them (run as the user)
SELECT notify.set_global_preferences(changes => $1)

-- org_preferences --
-- Org $1's defaults and locks; P0002 when outside an org admin's scope (run as the admin)
SELECT notify.org_preferences(org_id => $1)

-- set_org_preference --
-- Sets org $1's defaults and locks for type $2 (NULL: every type) with the keys of $3 (run as the admin)
SELECT notify.set_org_preference(org_id => $1, type => $2, changes => $3)

-- org_delivery_stats --
-- Org $1's notifications, deliveries and provider events in [$2, $3) (run as the admin)
SELECT notify.org_delivery_stats(org_id => $1, since => $2, until => $3)
