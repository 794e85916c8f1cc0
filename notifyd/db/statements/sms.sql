-- The SMS routes' SQL (notifyd.rest.sms_api).

-- upsert_recipient --
-- Creates or updates recipient $1 as the caller (RLS decides): e-mail, locale, time zone, org, phone (E.164)
SELECT notify.upsert_recipient_v2($1, $2, $3, $4, $5, $6)

-- recipient --
-- Recipient $1 as the caller may read it, with whether its number opted out of SMS
SELECT r.user_id, r.email, r.locale, r.timezone, r.org_id, r.phone, r.sms_opted_out_at IS NOT NULL AS sms_opted_out
FROM notify.recipients AS r
WHERE r.user_id = $1

-- record_sms_reply --
-- Applies a STOP or START reply from number $1 (text $2) to its recipients (as notify_worker); how many changed
SELECT notify_private.record_sms_reply($1, $2)
