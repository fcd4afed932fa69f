-- 0005: Splunk HEC indexer acknowledgement, chosen per token at mint (token mint --hec-acks).
-- aisoc_inbox_resolve_token() returns SETOF tenant_inbox_tokens, so it returns the new column too.

ALTER TABLE tenant_inbox_tokens ADD COLUMN hec_acks boolean NOT NULL DEFAULT false;
