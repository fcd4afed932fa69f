-- 0002: X-AiSOC-Idempotency-Key claims and the replies they got, per token fingerprint.
-- status/body are NULL while the claiming request runs; expires_at is the claim's lease until then,
-- and 24 h after the reply afterwards. Times are epoch seconds (REAL).

CREATE TABLE inbox_idempotency_keys (
    fingerprint TEXT NOT NULL,
    key         TEXT NOT NULL,
    status      INTEGER,
    body        TEXT,
    expires_at  REAL NOT NULL,
    PRIMARY KEY (fingerprint, key)
);

CREATE INDEX inbox_idempotency_keys_by_expiry ON inbox_idempotency_keys (expires_at);

-- Other processes (the CLI) retire tokens in this file: the daemon polls for recent retirements.
CREATE INDEX tenant_inbox_tokens_by_rotation ON tenant_inbox_tokens (rotated_at);
CREATE INDEX tenant_inbox_tokens_by_revocation ON tenant_inbox_tokens (revoked_at);
