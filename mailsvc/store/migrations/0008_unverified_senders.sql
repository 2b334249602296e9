-- Requesters whose request failed sender authentication (dmarc=fail, or not authenticated with
-- auto_mail.require_authenticated): no automatic mail goes to them on that case until an
-- authenticated mail of theirs arrives on it.
CREATE TABLE unverified_senders (
    case_id         INTEGER NOT NULL,
    address         TEXT NOT NULL,
    since           REAL NOT NULL,
    reason          TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (case_id, address)
);
