-- Topics and broadcasts over REST (notifyd.rest.topics_api): each runs as the caller, so RLS decides.

-- my_topics --
-- The caller's topic subscriptions, by topic (run as the user)
SELECT s.topic, s.muted, s.created_at
FROM notify.topic_subscriptions AS s
WHERE s.user_id = notify.current_user_id()
ORDER BY s.topic

-- my_topic --
-- The caller's subscription to topic $1, if any (run as the user)
SELECT s.topic, s.muted, s.created_at
FROM notify.topic_subscriptions AS s
WHERE s.user_id = notify.current_user_id() AND s.topic = $1

-- subscribe --
-- Subscribes user $1 to topic $2; true if new (run as the caller)
SELECT notify.subscribe(user_id => $1, topic => $2)

-- mute_topic --
-- Mutes ($3 true) or unmutes user $1's subscription to topic $2 (run as the caller)
SELECT notify.mute_topic(user_id => $1, topic => $2, muted => $3)

-- unsubscribe --
-- Unsubscribes user $1 from topic $2; true if they were subscribed (run as the caller)
SELECT notify.unsubscribe(user_id => $1, topic => $2)

-- send_topic --
-- Sends one notification to every unmuted follower of topic $1 the caller may reach; returns the batch id or NULL
SELECT notify.send_topic(topic => $1, type => $2, title => $3, body => $4, priority => $5, data => $6,
                         channels => $7, template => $8, template_vars => $9, idempotency_key => $10,
                         expires_at => $11, send_at => $12, group_key => $13)

-- broadcast_preview --
-- How many users a broadcast to org $1 (topic $5, language $6, time zone $7) reaches, per channel (run as the admin)
SELECT notify.broadcast_preview(org_id => $1, type => $2, priority => $3, channels => $4, topic => $5,
                                locale => $6, timezone => $7)

-- broadcast --
-- An admin's broadcast to org $13 (NULL: every org), narrowed by topic $14, language $15, time zone $16; returns the batch id or NULL
SELECT notify.broadcast(type => $1, title => $2, body => $3, priority => $4, data => $5, channels => $6,
                        template => $7, template_vars => $8, idempotency_key => $9, expires_at => $10,
                        send_at => $11, group_key => $12, org_id => $13, topic => $14, locale => $15,
                        timezone => $16)
