-- Grants of SMS (after 010_reset dropped them all).

-- Twilio's inbound webhook has no user: notifyd checks its signature and records the reply as the worker role.
GRANT EXECUTE ON FUNCTION notify_private.record_sms_reply(text, text) TO notify_worker;
GRANT EXECUTE ON FUNCTION notify_private.sms_reply_kind(text) TO notify_definer;
