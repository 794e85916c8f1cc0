-- What every request runs first (notifyd.db).

-- become_caller --
-- Switches the transaction to the caller's role and claims, so RLS decides what it sees
SELECT set_config('role', $1, true), set_config('request.jwt.claims', $2, true)

-- database_alive --
-- Answers 1 while the database is reachable
SELECT 1
