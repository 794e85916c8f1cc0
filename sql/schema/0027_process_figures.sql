-- 0027_process_figures: what each serve and worker process reports about itself every few seconds (open
-- sockets, commit → fan-out latency, LISTEN reconnects, provider errors and circuit state), so that the operator
-- console shows them summed over every process; each process's /metrics only knows its own.
-- Landed migrations never change: add a new numbered file instead.

CREATE TABLE notify.process_figures (
    process     text PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('serve', 'worker')),
    reported_at timestamptz NOT NULL DEFAULT now(),
    samples     jsonb NOT NULL CHECK (jsonb_typeof(samples) = 'array')
);
COMMENT ON TABLE notify.process_figures
    IS 'the latest Prometheus samples each serve and worker process reported, for figures summed over processes';
COMMENT ON COLUMN notify.process_figures.process IS 'the process: kind@host:pid';
COMMENT ON COLUMN notify.process_figures.kind IS 'serve or worker';
COMMENT ON COLUMN notify.process_figures.reported_at IS 'when the process last reported (a stopped process stops reporting)';
COMMENT ON COLUMN notify.process_figures.samples
    IS 'its samples: [{name, labels, value}], counters and histogram buckets cumulative since the process started';
ALTER TABLE notify.process_figures ENABLE ROW LEVEL SECURITY;
