-- 0001: the migration ledger and the inbox token table.
-- Times are epoch seconds (REAL). signing_secret is Fernet ciphertext, never the secret itself.

CREATE TABLE schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE tenant_inbox_tokens (
    fingerprint    TEXT PRIMARY KEY
                   CHECK (length(fingerprint) = 64 AND fingerprint NOT GLOB '*[^0-9a-f]*'),
    tenant_id      TEXT NOT NULL CHECK (tenant_id <> ''),
    template_id    TEXT NOT NULL CHECK (template_id <> ''),
    label          TEXT,
    signing_secret BLOB,
    created_at     REAL NOT NULL,
    rotated_at     REAL,
    revoked_at     REAL
);

CREATE INDEX tenant_inbox_tokens_by_tenant ON tenant_inbox_tokens (tenant_id, created_at);
