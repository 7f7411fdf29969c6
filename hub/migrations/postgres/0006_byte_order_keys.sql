-- Record keys and the text columns the indexes hold compare byte by byte (COLLATE "C"): the order
-- SQLite and the hub's own code use, without the locale's string collation on every index
-- comparison (it was a fifth of the server's work in a province's consolidation). On a database
-- created with C.UTF-8 the order is unchanged (code-point order is byte order in UTF-8); under
-- another locale, a forward in progress during the upgrade may page differently within one
-- revision, so upgrade between forwards.
ALTER TABLE records
    ALTER COLUMN k TYPE TEXT COLLATE "C",
    ALTER COLUMN id TYPE TEXT COLLATE "C",
    ALTER COLUMN region TYPE TEXT COLLATE "C",
    ALTER COLUMN hh TYPE TEXT COLLATE "C";
