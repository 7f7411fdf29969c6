-- The year a delivered change set is about (its header's year), so lateness counts only
-- deliveries for the year in question; NULL for change sets received before this migration.
ALTER TABLE envelopes ADD COLUMN year BIGINT;
-- The last day (YYYY-MM-DD, Asia/Shanghai) a reopening lasts; NULL for reopenings granted before
-- this migration, which end 7 days after they were granted.
ALTER TABLE reopenings ADD COLUMN until_day TEXT;
