-- Cross-county moves the province completed, so a late copy from the county a person left (its
-- next-year carry, or a stale resend) is recognised as settled rather than held as a new move.
CREATE TABLE completed_moves (
    id TEXT NOT NULL, year BIGINT NOT NULL, from_county TEXT NOT NULL, to_county TEXT NOT NULL,
    from_household TEXT NOT NULL, at BIGINT NOT NULL,
    PRIMARY KEY (id, year, from_county, to_county)
);
