-- 0001: the migration ledger and the inbox token table, row-level secured by tenant.
-- signing_secret is Fernet ciphertext, never the secret itself.

CREATE TABLE schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tenant_inbox_tokens (
    fingerprint    text PRIMARY KEY CHECK (fingerprint ~ '^[0-9a-f]{64}$'),
    tenant_id      text NOT NULL CHECK (tenant_id <> ''),
    template_id    text NOT NULL CHECK (template_id <> ''),
    label          text,
    signing_secret bytea,
    created_at     timestamptz NOT NULL,
    rotated_at     timestamptz,
    revoked_at     timestamptz
);

CREATE INDEX tenant_inbox_tokens_by_tenant ON tenant_inbox_tokens (tenant_id, created_at);

-- FORCE: the daemon may connect as the table owner, and the owner must be held to the policies too.
ALTER TABLE tenant_inbox_tokens ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_inbox_tokens FORCE ROW LEVEL SECURITY;

-- Every tenant-scoped statement runs after set_config('aisoc.tenant_id', <tenant>, true); without it
-- current_setting() is NULL or '' and no row matches.
CREATE POLICY tenant_isolation ON tenant_inbox_tokens
    USING (tenant_id = current_setting('aisoc.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('aisoc.tenant_id', true));

-- Only aisoc_inbox_resolve_token() sets this, for the duration of its one lookup: it exposes one
-- active row, found by its full fingerprint, and never a list.
CREATE POLICY resolve_active_by_fingerprint ON tenant_inbox_tokens FOR SELECT
    USING (fingerprint = current_setting('aisoc.resolve_fingerprint', true)
           AND rotated_at IS NULL AND revoked_at IS NULL);

-- The ingest path: the one active token with this fingerprint, or no row. STRICT: NULL finds nothing.
CREATE FUNCTION aisoc_inbox_resolve_token(fp text) RETURNS SETOF tenant_inbox_tokens
    LANGUAGE plpgsql VOLATILE STRICT SECURITY DEFINER
AS $$
BEGIN
    PERFORM set_config('aisoc.resolve_fingerprint', fp, true);
    RETURN QUERY
        SELECT * FROM tenant_inbox_tokens t
        WHERE t.fingerprint = fp AND t.rotated_at IS NULL AND t.revoked_at IS NULL;
    PERFORM set_config('aisoc.resolve_fingerprint', '', true);
END
$$;

-- A SECURITY DEFINER function must not follow the caller's search_path: pin it to this schema, with
-- pg_temp last so a caller's temporary table cannot shadow tenant_inbox_tokens.
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION aisoc_inbox_resolve_token(text) SET search_path = pg_catalog, %I, pg_temp',
                   current_schema());
END
$$;

REVOKE ALL ON FUNCTION aisoc_inbox_resolve_token(text) FROM PUBLIC;
