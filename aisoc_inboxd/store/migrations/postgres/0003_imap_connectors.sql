-- 0003: IMAP mailbox connectors (the spec's Email Inbox connector), row-level secured by tenant like
-- tenant_inbox_tokens. password is Fernet ciphertext (the store's secret key), never the password.

CREATE TABLE tenant_imap_connectors (
    uid           text PRIMARY KEY CHECK (uid ~ '^[0-9a-f]{16}$'),
    tenant_id     text NOT NULL CHECK (tenant_id <> ''),
    host          text NOT NULL CHECK (host <> ''),
    port          integer NOT NULL DEFAULT 993 CHECK (port BETWEEN 1 AND 65535),
    username      text NOT NULL CHECK (username <> ''),
    password      bytea NOT NULL,
    mailbox       text NOT NULL DEFAULT 'INBOX' CHECK (mailbox <> ''),
    max_messages  integer NOT NULL DEFAULT 50 CHECK (max_messages > 0),
    use_ssl       boolean NOT NULL DEFAULT true,
    poll_interval double precision NOT NULL DEFAULT 60 CHECK (poll_interval > 0),
    template_id   text NOT NULL DEFAULT 'email-forwarded' CHECK (template_id <> ''),
    label         text,
    created_at    timestamptz NOT NULL
);

CREATE INDEX tenant_imap_connectors_by_tenant ON tenant_imap_connectors (tenant_id, created_at);

ALTER TABLE tenant_imap_connectors ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_imap_connectors FORCE ROW LEVEL SECURITY;

CREATE POLICY tenant_isolation ON tenant_imap_connectors
    USING (tenant_id = current_setting('aisoc.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('aisoc.tenant_id', true));

-- Only aisoc_imap_connectors_to_poll() sets this, for the duration of its one read.
CREATE POLICY poller_reads_all ON tenant_imap_connectors FOR SELECT
    USING (current_setting('aisoc.imap_poll', true) = 'all');

-- The poller: every connector of every tenant, read-only; it cannot insert, change or delete any.
CREATE FUNCTION aisoc_imap_connectors_to_poll() RETURNS SETOF tenant_imap_connectors
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
AS $$
BEGIN
    PERFORM set_config('aisoc.imap_poll', 'all', true);
    RETURN QUERY SELECT * FROM tenant_imap_connectors c ORDER BY c.created_at, c.uid;
    PERFORM set_config('aisoc.imap_poll', '', true);
END
$$;

DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION aisoc_imap_connectors_to_poll() SET search_path = pg_catalog, %I, pg_temp',
                   current_schema());
END
$$;

REVOKE ALL ON FUNCTION aisoc_imap_connectors_to_poll() FROM PUBLIC;
