-- The digest mailed to the team once per period: a row per period sent, written in the
-- same transaction as the mail's outbox row, so a restart never sends a period twice.
CREATE TABLE digests (
    every           TEXT NOT NULL,
    period_start    REAL NOT NULL,
    period_end      REAL NOT NULL,
    outbox_id       INTEGER REFERENCES outbox (id),
    created_at      REAL NOT NULL,
    PRIMARY KEY (every, period_end)
) WITHOUT ROWID;
