-- 0014_service_key_failures: wrong service keys counted per client address, shared by every serve process.
-- Landed migrations never change: add a new numbered file instead.

CREATE TABLE notify_private.service_key_failures (
    client            text PRIMARY KEY CHECK (length(client) BETWEEN 1 AND 255),
    window_started_at timestamptz NOT NULL,
    failures          integer NOT NULL CHECK (failures > 0)
);
COMMENT ON TABLE notify_private.service_key_failures IS
    'wrong X-Internal-Service-Key attempts per client address in the window that began with the first of them';
CREATE INDEX service_key_failures_window_idx ON notify_private.service_key_failures (window_started_at);
COMMENT ON INDEX notify_private.service_key_failures_window_idx IS 'finds the windows that ended, to forget them';
