-- 0007: who holds an idempotency claim (a random id per request), so only that request settles it:
-- its completion or release — even one made late, after its call timed out and the claim went
-- through on the server anyway — never touches a claim another request has taken since.
-- NULL for claims made before this column existed.

ALTER TABLE inbox_idempotency_keys ADD COLUMN owner text;
