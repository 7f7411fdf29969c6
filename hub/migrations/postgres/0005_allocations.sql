-- Signed allocations (规模分解): what this hub received from its parent (region = this hub), what
-- it issued to its children, and what a child prefecture filed with it (备案), each kept as the
-- whole chain from the province down: a JSON array of {statement, signature}, the last one this
-- row's. A 微调 is a new allocation (a higher serial), so the unverifiable `quota_adjustments`
-- statements, which no county ever read, are gone.
CREATE TABLE allocations (
    digest TEXT PRIMARY KEY,
    region TEXT NOT NULL,
    year BIGINT NOT NULL,
    serial BIGINT NOT NULL,
    chain TEXT NOT NULL,
    at BIGINT NOT NULL
);
DROP TABLE quota_adjustments;
