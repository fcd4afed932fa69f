-- 0005: Splunk HEC indexer acknowledgement, chosen per token at mint (token mint --hec-acks).

ALTER TABLE tenant_inbox_tokens ADD COLUMN hec_acks INTEGER NOT NULL DEFAULT 0 CHECK (hec_acks IN (0, 1));
