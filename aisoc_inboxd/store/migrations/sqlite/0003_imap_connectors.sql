-- 0003: IMAP mailbox connectors (the spec's Email Inbox connector). Times are epoch seconds (REAL).
-- password is Fernet ciphertext (the store's secret key), never the password.

CREATE TABLE tenant_imap_connectors (
    uid           TEXT PRIMARY KEY CHECK (length(uid) = 16 AND uid NOT GLOB '*[^0-9a-f]*'),
    tenant_id     TEXT NOT NULL CHECK (tenant_id <> ''),
    host          TEXT NOT NULL CHECK (host <> ''),
    port          INTEGER NOT NULL DEFAULT 993 CHECK (port BETWEEN 1 AND 65535),
    username      TEXT NOT NULL CHECK (username <> ''),
    password      BLOB NOT NULL,
    mailbox       TEXT NOT NULL DEFAULT 'INBOX' CHECK (mailbox <> ''),
    max_messages  INTEGER NOT NULL DEFAULT 50 CHECK (max_messages > 0),
    use_ssl       INTEGER NOT NULL DEFAULT 1 CHECK (use_ssl IN (0, 1)),
    poll_interval REAL NOT NULL DEFAULT 60 CHECK (poll_interval > 0),
    template_id   TEXT NOT NULL DEFAULT 'email-forwarded' CHECK (template_id <> ''),
    label         TEXT,
    created_at    REAL NOT NULL
);

CREATE INDEX tenant_imap_connectors_by_tenant ON tenant_imap_connectors (tenant_id, created_at);
