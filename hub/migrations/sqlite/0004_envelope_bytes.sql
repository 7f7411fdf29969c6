-- The accepted envelope itself (signed, compressed; about 12 bytes a record): the audit entry of a
-- change set names its hash, and records it created exactly as sent are not copied into the
-- entry again. `jianka-hub audit verify` checks the stored bytes against that hash.
ALTER TABLE envelopes ADD COLUMN bytes BLOB;
