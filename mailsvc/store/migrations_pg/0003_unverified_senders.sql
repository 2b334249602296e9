-- Requesters whose request failed sender authentication: as SQLite's migration 0008.
CREATE TABLE unverified_senders (
    case_id         BIGINT NOT NULL,
    address         TEXT NOT NULL,
    since           DOUBLE PRECISION NOT NULL,
    reason          TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (case_id, address)
);
