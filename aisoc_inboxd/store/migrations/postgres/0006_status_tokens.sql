-- 0006: the status page's token list across tenants: every active token (never used ones too) and
-- those rotated or revoked since a time, newest first, at most a number of rows. Read-only, and never
-- the signing secret: the function returns every column but that one.

-- Only aisoc_status_tokens() sets this, for the duration of its one statement.
CREATE POLICY status_page_reads ON tenant_inbox_tokens FOR SELECT
    USING (current_setting('aisoc.status_tokens', true) = 'read');

-- tenant '' means every tenant. STRICT: a NULL argument finds nothing.
CREATE FUNCTION aisoc_status_tokens(since timestamptz, tenant text, max_rows integer)
    RETURNS TABLE (fingerprint text, tenant_id text, template_id text, label text, created_at timestamptz,
                   rotated_at timestamptz, revoked_at timestamptz, hec_acks boolean)
    LANGUAGE plpgsql VOLATILE STRICT SECURITY DEFINER
AS $$
BEGIN
    PERFORM set_config('aisoc.status_tokens', 'read', true);
    RETURN QUERY
        SELECT t.fingerprint, t.tenant_id, t.template_id, t.label, t.created_at, t.rotated_at, t.revoked_at,
               t.hec_acks
        FROM tenant_inbox_tokens t
        WHERE (tenant = '' OR t.tenant_id = tenant)
          AND ((t.rotated_at IS NULL AND t.revoked_at IS NULL) OR t.rotated_at >= since OR t.revoked_at >= since)
        ORDER BY t.created_at DESC, t.fingerprint
        LIMIT max_rows;
    PERFORM set_config('aisoc.status_tokens', '', true);
END
$$;

DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION aisoc_status_tokens(timestamptz, text, integer) '
                   'SET search_path = pg_catalog, %I, pg_temp', current_schema());
END
$$;

REVOKE ALL ON FUNCTION aisoc_status_tokens(timestamptz, text, integer) FROM PUBLIC;
