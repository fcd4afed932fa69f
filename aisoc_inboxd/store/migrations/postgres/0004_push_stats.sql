-- 0004: push stats per token (the console's Push tab): requests, error replies and the last request
-- time per token per one-minute bucket. Every daemon instance adds its counts into the same rows
-- (INSERT … ON CONFLICT DO UPDATE adds), so instances sharing this database add up. Row-level secured
-- by tenant like tenant_inbox_tokens: instances write with the token's tenant context set.

CREATE TABLE tenant_inbox_push_stats (
    tenant_id    text NOT NULL CHECK (tenant_id <> ''),
    fingerprint  text NOT NULL CHECK (fingerprint ~ '^[0-9a-f]{64}$'),
    bucket_start timestamptz NOT NULL,
    template_id  text NOT NULL CHECK (template_id <> ''),
    requests     bigint NOT NULL CHECK (requests >= 0),
    errors       bigint NOT NULL CHECK (errors >= 0 AND errors <= requests),
    last_seen    timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, fingerprint, bucket_start)
);

CREATE INDEX tenant_inbox_push_stats_by_bucket ON tenant_inbox_push_stats (bucket_start);

ALTER TABLE tenant_inbox_push_stats ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_inbox_push_stats FORCE ROW LEVEL SECURITY;

CREATE POLICY tenant_isolation ON tenant_inbox_push_stats
    USING (tenant_id = current_setting('aisoc.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('aisoc.tenant_id', true));

-- Only the two functions below set aisoc.push_stats, each for the duration of its one statement
-- (the sweeper reads too: a DELETE's WHERE is held to the SELECT policies).
CREATE POLICY functions_read_all ON tenant_inbox_push_stats FOR SELECT
    USING (current_setting('aisoc.push_stats', true) IN ('read', 'sweep'));
CREATE POLICY sweeper_deletes_old ON tenant_inbox_push_stats FOR DELETE
    USING (current_setting('aisoc.push_stats', true) = 'sweep');

-- The status page: every token's totals since a time, across tenants; read-only, counts only.
CREATE FUNCTION aisoc_push_stats_since(since timestamptz)
    RETURNS TABLE (tenant_id text, fingerprint text, template_id text, requests bigint, errors bigint,
                   last_seen timestamptz)
    LANGUAGE plpgsql VOLATILE STRICT SECURITY DEFINER
AS $$
BEGIN
    PERFORM set_config('aisoc.push_stats', 'read', true);
    RETURN QUERY
        SELECT s.tenant_id, s.fingerprint, max(s.template_id),
               coalesce(sum(s.requests) FILTER (WHERE s.bucket_start >= since), 0)::bigint,
               coalesce(sum(s.errors) FILTER (WHERE s.bucket_start >= since), 0)::bigint,
               max(s.last_seen)
        FROM tenant_inbox_push_stats s
        GROUP BY s.tenant_id, s.fingerprint;
    PERFORM set_config('aisoc.push_stats', '', true);
END
$$;

-- The sweeper: buckets older than a time, except each token's newest (which keeps its last-seen
-- time after its 24 hours); it can delete nothing newer and read nothing.
CREATE FUNCTION aisoc_push_stats_sweep(before timestamptz) RETURNS bigint
    LANGUAGE plpgsql VOLATILE STRICT SECURITY DEFINER
AS $$
DECLARE
    deleted bigint;
BEGIN
    PERFORM set_config('aisoc.push_stats', 'sweep', true);
    DELETE FROM tenant_inbox_push_stats s
        WHERE s.bucket_start < before
          AND s.bucket_start < (SELECT max(n.bucket_start) FROM tenant_inbox_push_stats n
                                WHERE n.tenant_id = s.tenant_id AND n.fingerprint = s.fingerprint);
    GET DIAGNOSTICS deleted = ROW_COUNT;
    PERFORM set_config('aisoc.push_stats', '', true);
    RETURN deleted;
END
$$;

DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION aisoc_push_stats_since(timestamptz) SET search_path = pg_catalog, %I, pg_temp',
                   current_schema());
    EXECUTE format('ALTER FUNCTION aisoc_push_stats_sweep(timestamptz) SET search_path = pg_catalog, %I, pg_temp',
                   current_schema());
END
$$;

REVOKE ALL ON FUNCTION aisoc_push_stats_since(timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION aisoc_push_stats_sweep(timestamptz) FROM PUBLIC;
