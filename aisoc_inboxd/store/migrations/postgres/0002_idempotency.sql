-- 0002: X-AiSOC-Idempotency-Key claims and the replies they got, per token fingerprint, shared by
-- every daemon instance; and token invalidation pushed to every instance with NOTIFY.
--
-- The idempotency table is not row-level secured: it is written only by the ingest path, keyed by a
-- fingerprint the caller already resolved, and holds no secret (replies are {"accepted", "template"}).
-- status/body are NULL while the claiming request runs; expires_at is the claim's lease until then,
-- and 24 h after the reply afterwards.

CREATE TABLE inbox_idempotency_keys (
    fingerprint text NOT NULL,
    key         text NOT NULL,
    status      integer,
    body        text,
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (fingerprint, key)
);

CREATE INDEX inbox_idempotency_keys_by_expiry ON inbox_idempotency_keys (expires_at);

-- Whoever retires a token (this daemon's CLI or admin API, or the console writing SQL directly),
-- every daemon instance hears the fingerprint on channel aisoc_inbox_invalidate at commit and drops
-- it from its cache at once instead of waiting out the TTL.
CREATE FUNCTION aisoc_inbox_notify_retired() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    IF (NEW.rotated_at IS NOT NULL AND OLD.rotated_at IS NULL)
       OR (NEW.revoked_at IS NOT NULL AND OLD.revoked_at IS NULL) THEN
        PERFORM pg_notify('aisoc_inbox_invalidate', NEW.fingerprint);
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER tenant_inbox_tokens_notify_retired
    AFTER UPDATE ON tenant_inbox_tokens
    FOR EACH ROW EXECUTE FUNCTION aisoc_inbox_notify_retired();
