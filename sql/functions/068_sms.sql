-- SMS: a number's STOP and START replies (Twilio's inbound webhook), and an opt-out that ends with its number.

-- The keywords carriers and Twilio treat as opting out of, and back into, a sender's messages.
CREATE OR REPLACE FUNCTION notify_private.sms_reply_kind(body text) RETURNS text
    LANGUAGE sql IMMUTABLE
AS $$
    SELECT CASE pg_catalog.upper(pg_catalog.btrim(sms_reply_kind.body, E' \t\r\n.!'))
        WHEN 'STOP' THEN 'stop' WHEN 'STOPALL' THEN 'stop' WHEN 'UNSUBSCRIBE' THEN 'stop' WHEN 'CANCEL' THEN 'stop'
        WHEN 'END' THEN 'stop' WHEN 'QUIT' THEN 'stop' WHEN 'OPTOUT' THEN 'stop' WHEN 'REVOKE' THEN 'stop'
        WHEN 'START' THEN 'start' WHEN 'YES' THEN 'start' WHEN 'UNSTOP' THEN 'start'
    END
$$;
COMMENT ON FUNCTION notify_private.sms_reply_kind(text)
    IS 'stop, start or NULL: what an SMS reply''s text asks for (the carriers'' opt-out and opt-in keywords)';

CREATE OR REPLACE FUNCTION notify_private.record_sms_reply(phone text, body text) RETURNS integer
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = ''
AS $$
DECLARE
    kind constant text := notify_private.sms_reply_kind(record_sms_reply.body);
    changed integer;
BEGIN
    IF kind IS NULL THEN
        RETURN 0;
    END IF;
    -- Every recipient with the number: a shared phone opts out for all of them, as the carrier does.
    UPDATE notify.recipients AS r
    SET sms_opted_out_at = CASE kind WHEN 'stop' THEN coalesce(r.sms_opted_out_at, notify.now()) END,
        updated_at = notify.now()
    WHERE r.phone = record_sms_reply.phone
      AND (r.sms_opted_out_at IS NULL) = (kind = 'stop');
    GET DIAGNOSTICS changed = ROW_COUNT;
    RETURN changed;
END
$$;
ALTER FUNCTION notify_private.record_sms_reply(text, text) OWNER TO notify_definer;
COMMENT ON FUNCTION notify_private.record_sms_reply(text, text)
    IS 'applies a STOP (opt-out) or START (opt back in) reply from a number to its recipients; how many changed';

CREATE OR REPLACE FUNCTION notify_private.new_number_not_opted_out() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = ''
AS $$
BEGIN
    -- The STOP was the old number's: a new number has said nothing yet.
    NEW.sms_opted_out_at := NULL;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION notify_private.new_number_not_opted_out()
    IS 'clears a recipient''s SMS opt-out when their phone number changes';

CREATE OR REPLACE TRIGGER recipients_new_number BEFORE UPDATE OF phone ON notify.recipients
    FOR EACH ROW WHEN (NEW.phone IS DISTINCT FROM OLD.phone)
    EXECUTE FUNCTION notify_private.new_number_not_opted_out();
COMMENT ON TRIGGER recipients_new_number ON notify.recipients IS 'a new phone number starts without the old one''s opt-out';
