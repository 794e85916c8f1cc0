-- Escalation chains (notifyd.rest.escalation_api), as the calling admin.

-- escalations --
-- Every type's escalation chain: [{type, steps, updated_at, updated_by}]
SELECT notify.escalations()

-- set_escalation --
-- Sets the escalation chain of type $1 to the steps $2 ([] removes it); the chain as stored
SELECT notify.set_escalation($1, $2::jsonb)
