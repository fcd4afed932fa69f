-- 0004: push stats per token (the console's Push tab): requests, error replies and the last request
-- time per token per one-minute bucket; the daemon and other writers add their counts into the same
-- rows (INSERT … ON CONFLICT DO UPDATE adds). Times are epoch seconds (REAL).

CREATE TABLE tenant_inbox_push_stats (
    tenant_id    TEXT NOT NULL CHECK (tenant_id <> ''),
    fingerprint  TEXT NOT NULL
                 CHECK (length(fingerprint) = 64 AND fingerprint NOT GLOB '*[^0-9a-f]*'),
    bucket_start REAL NOT NULL,
    template_id  TEXT NOT NULL CHECK (template_id <> ''),
    requests     INTEGER NOT NULL CHECK (requests >= 0),
    errors       INTEGER NOT NULL CHECK (errors >= 0 AND errors <= requests),
    last_seen    REAL NOT NULL,
    PRIMARY KEY (tenant_id, fingerprint, bucket_start)
);

CREATE INDEX tenant_inbox_push_stats_by_bucket ON tenant_inbox_push_stats (bucket_start);
