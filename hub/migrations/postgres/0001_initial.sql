-- Hub schema, PostgreSQL. Append-only: never edit a released migration; add a new file.
CREATE TABLE meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
-- Children this hub enrolled (townships of a county, counties of a province).
CREATE TABLE certs (
    key_id TEXT PRIMARY KEY,
    subject TEXT NOT NULL,
    cert TEXT NOT NULL,
    revoked BIGINT NOT NULL DEFAULT 0,
    revoked_reason TEXT,
    equivocating BIGINT NOT NULL DEFAULT 0
);
-- Per-origin change-set stream: next expected seq and the hash the next envelope must chain to.
CREATE TABLE streams (origin TEXT PRIMARY KEY, next_seq BIGINT NOT NULL, last_hash TEXT NOT NULL);
CREATE TABLE envelopes (
    origin TEXT NOT NULL, seq BIGINT NOT NULL, hash TEXT NOT NULL, received_at BIGINT NOT NULL,
    ops BIGINT NOT NULL, PRIMARY KEY (origin, seq)
);
CREATE TABLE equivocations (
    id BIGSERIAL PRIMARY KEY, origin TEXT NOT NULL, seq BIGINT NOT NULL,
    stored_hash TEXT NOT NULL, offered_hash TEXT NOT NULL, at BIGINT NOT NULL
);
CREATE TABLE uploads (origin TEXT NOT NULL, seq BIGINT NOT NULL, total BIGINT NOT NULL, data BYTEA NOT NULL, PRIMARY KEY (origin, seq));
-- One row per record; fields as JSON {name: [value, version, writer region]}.
CREATE TABLE records (
    k TEXT PRIMARY KEY, kind BIGINT NOT NULL, year BIGINT NOT NULL, id TEXT NOT NULL,
    region TEXT NOT NULL, hh TEXT NOT NULL, fields TEXT NOT NULL, deleted BIGINT NOT NULL DEFAULT 0,
    rev BIGINT NOT NULL
);
CREATE INDEX records_scope ON records (year, region);
CREATE INDEX records_hh ON records (year, hh);
CREATE INDEX records_rev ON records (rev);
CREATE TABLE quarantine (
    id BIGSERIAL PRIMARY KEY, origin TEXT NOT NULL, seq BIGINT NOT NULL, k TEXT NOT NULL,
    reason TEXT NOT NULL, message TEXT NOT NULL, payload TEXT NOT NULL, at BIGINT NOT NULL
);
CREATE TABLE feedback (id BIGSERIAL PRIMARY KEY, region TEXT NOT NULL, item TEXT NOT NULL);
CREATE INDEX feedback_region ON feedback (region, id);
CREATE TABLE conflicts (
    id BIGSERIAL PRIMARY KEY, kind TEXT NOT NULL, k TEXT NOT NULL, field TEXT NOT NULL,
    current_value TEXT NOT NULL, current_by TEXT NOT NULL, proposed_value TEXT NOT NULL, proposed_by TEXT NOT NULL,
    proposal TEXT NOT NULL, status TEXT NOT NULL, resolution TEXT, at BIGINT NOT NULL
);
CREATE TABLE quota_use (scope TEXT NOT NULL, year BIGINT NOT NULL, people BIGINT NOT NULL, PRIMARY KEY (scope, year));
CREATE TABLE quota_adjustments (
    id BIGSERIAL PRIMARY KEY, statement TEXT NOT NULL, signature TEXT NOT NULL, at BIGINT NOT NULL
);
CREATE TABLE audit (
    seq BIGINT PRIMARY KEY, at BIGINT NOT NULL, key_id TEXT NOT NULL, action TEXT NOT NULL, subject TEXT NOT NULL,
    old TEXT NOT NULL, new TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL
);
CREATE TABLE signoffs (
    county TEXT NOT NULL, year BIGINT NOT NULL, period TEXT NOT NULL, body TEXT NOT NULL, received_at BIGINT NOT NULL,
    PRIMARY KEY (county, year, period)
);
CREATE TABLE years (year BIGINT PRIMARY KEY, state TEXT NOT NULL, snapshot TEXT);
CREATE TABLE reopenings (
    id BIGSERIAL PRIMARY KEY, year BIGINT NOT NULL, region TEXT NOT NULL, reason TEXT NOT NULL, at BIGINT NOT NULL
);
